"""Scoring a model on labelled rows: every task on the rows that carry its labels, each with its own metrics.

    metrics = evaluate(model, rows)     # {"tasks": {name: {...}}, "rows": {name: n}, + the default pair's keys}
    metrics["tasks"]["topic"]["accuracy"], metrics["tasks"]["ner"]["f1"]

The encoder runs once per batch for every head. A row longer than max_length wordpieces is tagged in overlapping
windows like predict() (its sentence tasks read the first window, as in training). The first classification task's
accuracy / macro_f1 / confusion_matrix and the first tagging task's entity scores (`ner`) are also given at the top
level, under the names the default pair (topic + NER) has always used.
"""
import torch

from batching import collate, pad_ids_value, prepare_features
from precision import inference_weights, run_in_precision
from sentence_transformer import length_sorted_batches


def main_score(task, metrics):
    """The task's main score (accuracy, micro-F1, entity F1) in metrics, or None when no row carried the task."""
    return None if metrics is None else metrics[task.main_metric]


@torch.inference_mode()
def evaluate(model, rows, batch_size=64, precision="no", cache=None, accelerator=None, tune_thresholds=False):
    """Per-task metrics of model on rows (a dataset / dict of words + task columns, or prepare_features() output).

    tune_thresholds: set each multi-label task's threshold to the one with the best micro-F1 on these rows first
    (validation). accelerator: with several processes, each scores rows i % num_processes == process_index and
    the predictions are gathered; every process must call it and gets the same metrics.
    """
    features = rows if isinstance(rows, dict) and "input_ids" in rows and "values" in rows \
        else prepare_features(rows, model)  # a dict check: `in` on a datasets.Dataset would read every row
    tasks = model.tasks
    tagging = [n for n, t in tasks.items() if t.kind == "tagging"]
    n_proc, rank = (accelerator.num_processes, accelerator.process_index) if accelerator else (1, 0)
    was_training = model.training
    model.eval()
    device = model.device
    ids, values = features["input_ids"], features["values"]
    mine = list(range(rank, len(ids), n_proc))
    results = []  # (row, {task: probabilities or word tags, for the tasks the row carries})
    weights = inference_weights(model, precision, len(mine), batch_size)
    for idx, _, _ in length_sorted_batches([ids[i] for i in mine], batch_size):
        idx = [mine[j] for j in idx]
        wanted = [n for n in tasks if any(tasks[n].has_label(values[n][i]) for i in idx)]
        batch = {k: v.to(device) for k, v in collate(features, idx, pad_ids_value(model), cache).items()}
        out = run_in_precision(model, {"no": "fp32"}.get(precision, precision), device, weights,
                               input_ids=batch.get("input_ids"),
                               attention_mask=batch["attention_mask"], token_embeddings=batch.get("token_embeddings"),
                               shape_ids=batch["shape_ids"], tasks=wanted, embedding=False)
        # once per batch: tag ids of tagging tasks (a list), probabilities of sentence tasks
        decided = {n: out[n].argmax(-1).tolist() if tasks[n].kind == "tagging" else tasks[n].probabilities(out[n]).cpu()
                   for n in wanted}
        for row, i in enumerate(idx):
            pred = {}
            for n in wanted:
                task = tasks[n]
                if not task.has_label(values[n][i]):
                    continue
                if task.kind == "tagging":
                    tags = ["O"] * len(values[n][i])  # truncated words and words with no wordpiece stay 'O'
                    tag_ids = decided[n][row]
                    for t, w in zip(features["positions"][i], features["word_index"][i]):
                        tags[w] = task.labels[tag_ids[t]]
                    pred[n] = tags
                else:
                    pred[n] = decided[n][row]
            results.append((i, pred))
    # Rows cut at max_length: sentence tasks from the first window (above), tags on the whole row in overlapping
    # windows (the model's own windowed tagging; run live even beside a feature cache, which holds first windows).
    cut = [i for i in mine if len(ids[i]) >= model.encoder.max_length and features["word_index"][i]
           and features["word_index"][i][-1] + 1 < len(features["words"][i])
           and any(tasks[n].has_label(values[n][i]) for n in tagging)]
    if cut:
        runs = model._run([list(features["words"][i]) for i in cut], batch_size,
                          {"no": "fp32"}.get(precision, precision), outputs=tagging)
        whole = dict(zip(cut, runs))
        for i, pred in results:
            if i in whole:
                pred.update({n: whole[i][n] for n in pred if n in tagging})
    model.train(was_training)
    if n_proc > 1:
        results = accelerator.gather_for_metrics(results, use_gather_object=True)
    results.sort(key=lambda r: r[0])
    metrics = {"tasks": {}, "rows": {}}
    for name, task in tasks.items():  # each task on the rows that carry its labels; none: None
        pairs = [(values[name][i], pred[name]) for i, pred in results if name in pred]
        metrics["rows"][name] = len(pairs)
        gold, pred = [g for g, _ in pairs], [p for _, p in pairs]
        if pairs and tune_thresholds and task.kind == "multilabel":
            task.tune_threshold(gold, pred)
        metrics["tasks"][name] = task.metrics(gold, pred) if pairs else None
    topic, ner = model.first_task("classification"), model.first_task("tagging")
    first = (topic and metrics["tasks"][topic.name]) or {}
    metrics.update(accuracy=first.get("accuracy"), macro_f1=first.get("macro_f1"),
                   confusion_matrix=first.get("confusion_matrix"), ner=ner and metrics["tasks"][ner.name])
    return metrics
