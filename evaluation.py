"""Scoring a model on labelled rows: every task on the rows that carry its labels, each with its own metrics.

    metrics = evaluate(model, rows)     # {"tasks": {name: {...}}, "rows": {name: n}, + the default pair's keys}
    metrics["tasks"]["topic"]["accuracy"], metrics["tasks"]["ner"]["f1"]

The encoder runs once per batch for every head. A row longer than max_length wordpieces is tagged in overlapping
windows like predict() (its sentence tasks read the first window, as in training). The first classification task's
accuracy / macro_f1 / confusion_matrix and the first tagging task's entity scores (`ner`) are also given at the top
level, under the names the default pair (topic + NER) has always used.
"""
from batching import feature_rows, prepare_features
from tasks import first_of


def main_score(task, metrics):
    """The task's main score (accuracy, micro-F1, entity F1) in metrics, or None when no row carried the task."""
    return None if metrics is None else metrics[task.main_metric]


def evaluate(model, rows, batch_size=64, precision="fp32", cache=None, accelerator=None, tune_thresholds=False):
    """Per-task metrics of model on rows (a dataset / dict of words + task columns, or prepare_features() output).

    tune_thresholds: let each task settle what validation chooses (a multi-label task's threshold: the one with the
    best micro-F1 on these rows) first. accelerator: with several processes, each scores rows
    i % num_processes == process_index and the predictions are gathered; every process must call it and gets the same
    metrics.
    """
    features = rows if isinstance(rows, dict) and "input_ids" in rows and "values" in rows \
        else prepare_features(rows, model)  # a dict check: `in` on a datasets.Dataset would read every row
    tasks, values = model.tasks, features["values"]
    n_proc, rank = (accelerator.num_processes, accelerator.process_index) if accelerator else (1, 0)
    mine = list(range(rank, len(features["input_ids"]), n_proc))
    results = predictions(model, features, mine, batch_size, precision, cache)
    if n_proc > 1:
        results = accelerator.gather_for_metrics(results, use_gather_object=True)
    results.sort(key=lambda r: r[0])
    metrics = {"tasks": {}, "rows": {}}
    for name, task in tasks.items():  # each task on the rows that carry its labels; none: None
        pairs = [(values[name][i], pred[name]) for i, pred in results if name in pred]
        metrics["rows"][name] = len(pairs)
        gold, pred = [g for g, _ in pairs], [p for _, p in pairs]
        if pairs and tune_thresholds:
            task.tune(gold, pred)
        metrics["tasks"][name] = task.metrics(gold, pred) if pairs else None
    topic, ner = first_of(tasks, "classification"), first_of(tasks, "tagging")
    first = (topic and metrics["tasks"][topic.name]) or {}
    metrics.update(accuracy=first.get("accuracy"), macro_f1=first.get("macro_f1"),
                   confusion_matrix=first.get("confusion_matrix"), ner=ner and metrics["tasks"][ner.name])
    return metrics


def predictions(model, features, rows, batch_size, precision, cache=None):
    """[(row, {task: its decision (Task.row_prediction)})] for the given rows, each task only where the row carries
    its labels. Rows carrying the same tasks run together through the model's batch runner (the heads a row does not
    need are not run). A row longer than max_length wordpieces keeps its sentence tasks' first-window decision and
    is tagged on the whole row in overlapping windows (model.run_words; run live even beside a feature cache, which
    holds first windows)."""
    tasks, values, words = model.tasks, features["values"], features["words"]
    carried = {}
    for i in rows:
        carried.setdefault(tuple(n for n in tasks if tasks[n].has_label(values[n][i])), []).append(i)
    results = []
    for names, idx in carried.items():
        outs = model.run(feature_rows(features, idx), names, batch_size, precision, cache=cache and [cache[i] for i in idx])
        results += [(i, {n: tasks[n].row_prediction(out[n], features["word_index"][i], len(words[i])) for n in names})
                    for i, out in zip(idx, outs)]
    per_word = [n for n in tasks if tasks[n].reads_words]
    cut = [k for k, (i, pred) in enumerate(results) if len(features["input_ids"][i]) >= model.encoder.max_length
           and features["word_index"][i] and features["word_index"][i][-1] + 1 < len(words[i])
           and any(n in pred for n in per_word)]
    if cut:
        runs = model.run_words([list(words[results[k][0]]) for k in cut], per_word, batch_size, precision)
        for k, run in zip(cut, runs):
            results[k][1].update({n: run[n] for n in results[k][1] if n in per_word})
    return results
