"""One experiment, as main.py runs it: the labelled data with validation carved from train, one model trained on it
(fresh, or on from a saved model), its validation-selected checkpoint evaluated once on the test split, and
results.json, model/ (with its model card) and the plots written. `recipe` is main.py's flags read once (recipe.Recipe).

    data = load_data(recipe)                                   # (train, val, test, tasks)
    results, model = run_experiment(recipe, data, "outputs/x") # None on the other processes of a DDP run
    results, model = run_schedule(recipe, data, "outputs/x")   # the same, under --schedule (one or two stages)
    results, model = run_distillation(recipe, data, "outputs/x")  # --distil-from DIR: a smaller student of a saved model
    results, model = run_with_teachers(recipe, data, "outputs/x") # --teachers NAME=DIR ...: tasks distilled from teachers
"""
import json
import os
import time

from accelerate.utils import set_seed

from atomic_io import write_text_atomic
from conll import load_ner_files, sentence_texts
from create_ner_dataset import combine_rows, create_dataset
from data_sources import clean_applies
from distillation import (
    check_teacher_classes,
    load_teachers,
    make_student,
    parse_teachers,
    teacher_record,
    teachers_record,
)
from distributed import distributed_state
from errors import InputError
from evaluation import main_score
from multi_task_sentence_transformer import MultiTaskSentenceTransformer
from plots import plot_confusion
from precision import resolve_mixed_precision
from run_info import run_info
from serving import VALIDATION_TEXTS
from sts_benchmark import sts_pairs, sts_spearman
from task_data import distil_rows, load_distil_texts, load_task_source, merge_rows, sources
from tasks import ClassificationTask, TaggingTask
from trainer_sentence_transformer import MultiTaskTrainer, evaluate


def load_data(recipe):
    """(train, val, test, tasks): every task's rows, with validation carved from train, and the Task objects.

    The default pair (topic, ner) comes from the cached silver dataset of --dataset: validation is carved (stratified)
    from its rows, and the same fraction of the --ner-data sentences joins it as NER-only rows; the rest of the gold
    sentences join train; the test split is the data's own (or carved). Every other task's source is split alone
    (task_data.load_task_source) and its rows join each split with only that source's columns."""
    d = recipe.data
    specs = recipe.tasks.specs()
    tasks, parts = {}, []
    if any(s.builtin for s in specs):
        train, val, test, pair = default_pair(recipe)
        tasks.update(pair)
        parts.append((train, val, test))
    clean = new_model_clean(recipe, tasks)  # every source's text as the model will clean it at prediction time
    for group, (source, source_specs) in enumerate(sources(specs).items(), start=1):
        part = load_task_source(source, source_specs, d.text_column, clean, d.test_fraction, d.val_fraction,
                                d.seed, group)
        for task in part.tasks:
            task.dropout = recipe.model.dropout
            tasks[task.name] = task
        parts.append((part.train, part.val, part.test))
        what = ", ".join(t.summary() for t in part.tasks)
        print(f"data: {source}: {what}: {len(part.train['words'])} train / {len(part.val['words'])} validation / "
              f"{len(part.test['words'])} test rows")
    ordered = [tasks[s.name] for s in specs]
    extra = []
    student = None if d.distil_texts or not recipe.distillation.distil_from else student_texts(d.data_root)
    if d.distil_texts:  # unlabelled rows: train only, their own group, the teachers' targets only
        extra = [load_distil_texts(d.distil_texts, d.text_column, clean, group=len(parts))]
        print(f"data: --distil-texts: {len(extra[0]['words'])} unlabelled training rows (teachers' outputs only)")
    elif student:
        texts, source = student
        extra = [distil_rows(texts, clean, group=len(parts))]
        print(f"data: a student learns its teacher's outputs on {len(texts)} more texts too: sentences of {source} "
              "(unlabelled; --distil-texts FILE gives others)")
    if len(parts) == 1 and specs[0].builtin and not extra:
        return (*parts[0], ordered)  # the default pair alone: the dataset as it is
    train = merge_rows([p[0] for p in parts] + extra, ordered)
    return (train, *(merge_rows([p[k] for p in parts], ordered) for k in (1, 2)), ordered)


# A student (--distil-from) given no --distil-texts learns its teacher's outputs on this many sentences of the data
# root's CoNLL-2003 train file as well, where it has one (only the words; never the test or validation text): news
# text beyond the teacher's own training rows. Measured (docs/distillation.md, a student at the default flags): they
# took the 3-layer student's CoNLL-2003 F1 from 0.037 below its teacher's to 0.004 below, STS-B up 0.4 point, topic
# accuracy down 0.2.
STUDENT_TEXTS = ("conll2003/train.txt", 5000)


def student_texts(data_root):
    """(texts, where they come from) a student reads beside its rows (STUDENT_TEXTS), or None where the data root has
    no such file."""
    relative, n = STUDENT_TEXTS
    path = os.path.join(data_root, relative) if data_root else None
    if not path or not os.path.isfile(path):
        return None
    return sentence_texts(path, n), relative


def default_pair(recipe):
    """(train, val, test, {"topic": task, "ner": task}) of the default pair: --dataset's cached silver rows (labelled
    once under DDP), validation carved, --ner-data's gold sentences joined."""
    start, d, dropout = time.perf_counter(), recipe.data, recipe.model.dropout
    with distributed_state().main_process_first():  # under DDP, one process labels and the others read the cache
        limits = d.row_limits()
        ds, tags = create_dataset(d.dataset, max_train_rows=limits[0], max_test_rows=limits[1], seed=d.seed,
                                  spacy_model=d.spacy_model,
                                  dropped_types=d.dropped_types(), clean=d.clean_mode(), n_process=d.label_processes,
                                  text_column=d.text_column, label_column=d.label_column,
                                  test_fraction=d.test_fraction, ner_types=d.ner_types)
    names = ds["train"].features["label"].names
    n_val, n_labels = int(d.val_fraction * len(ds["train"])), len(names)
    if n_val < n_labels or len(ds["train"]) - n_val < n_labels:
        raise InputError(f"--val-fraction {d.val_fraction} of {len(ds['train'])} train rows gives {n_val} "
                         f"validation rows; each split needs at least one row per class ({n_labels}): use more "
                         "rows (--max-train-rows) or another --val-fraction.")
    split = ds["train"].train_test_split(test_size=d.val_fraction, stratify_by_column="label", seed=d.seed)
    train, val = split["train"], split["test"]
    gold_note = ""
    if d.ner_data:
        gold = load_ner_files(list(d.ner_data), ner_types=d.ner_types, dropped_types=d.dropped_types(),
                              label_names=names)
        gold = gold.train_test_split(test_size=d.val_fraction, seed=d.seed)
        train, val = combine_rows(train, gold["train"]), combine_rows(val, gold["test"])
        gold_note = f" (+ {len(gold['train'])} / {len(gold['test'])} gold NER-only sentences from --ner-data)"
    pair = {"topic": ClassificationTask("topic", names, column="label", dropout=dropout),
            "ner": TaggingTask("ner", tags, column="ner_tags", dropout=dropout)}
    print(f"data: {len(train)} train / {len(val)} validation / {len(ds['test'])} test rows{gold_note}, "
          f"{n_labels} classes, {len(tags)} BIO tags ({time.perf_counter() - start:.0f}s)")
    return train, val, ds["test"], pair


def new_model_clean(recipe, tasks):
    """Whether the model cleans text as AG News' was (create_ner_dataset's rule, from --dataset and its classes)."""
    topic = next((t for t in (tasks.values() if isinstance(tasks, dict) else tasks) if t.name == "topic"), None)
    if topic is None:  # no --dataset task: clean only when asked to
        return recipe.data.clean_mode() is True
    return clean_applies(recipe.data.dataset, recipe.data.clean_mode(), topic.labels)


def new_model(recipe, tasks):
    """A fresh model for the flags: the encoder, the tasks (their labels from the data), pooling, cleaning."""
    m = recipe.model

    return MultiTaskSentenceTransformer(m.model_name, tasks=tasks, pooling=m.pooling, max_length=m.max_length,
                                        clean=new_model_clean(recipe, tasks), attention_dropout=m.attention_dropout,
                                        task_layers=m.task_layers)  # settled by the recipe (with_default_task_layers)


def run_experiment(recipe, data, output_dir, start_from=None, extra_results=None, model=None, teacher=None,
                   **config_overrides):
    """Train one model and evaluate its best (validation-selected) checkpoint on the test split once.

    start_from: a saved model folder to train on from (a stage-2 run: a fresh optimizer and schedule); None builds a
    new model from the flags (unless `model` is given: e.g. a student). teacher: a trained model to distil from
    (trainer_sentence_transformer). extra_results: more keys for results.json (a dict, or a function of the results
    and the best model giving them). config_overrides: TrainConfig fields (e.g.
    task_weights={"ner": 0.0}, freeze_tasks=("topic",)).
    Returns (results, best model) on the main process, None on the others (DDP)."""
    train, val, test, tasks = data
    sts, sts_source = sts_pairs(recipe.data.data_root)  # before training: says now if it will be skipped
    if sts is None:
        print(f"STS-B check skipped: {sts_source}")
    config = recipe.train_config(output_dir, **config_overrides)
    set_seed(recipe.training.seed)  # the heads' initialisation too
    if model is None:
        model = MultiTaskSentenceTransformer.from_pretrained(start_from) if start_from else new_model(recipe, tasks)
    trainer = MultiTaskTrainer(model, train, val, config, teacher=teacher)
    start = time.perf_counter()
    history = trainer.train()
    train_seconds = time.perf_counter() - start
    best = MultiTaskSentenceTransformer.from_pretrained(os.path.join(output_dir, "best_model"))
    best.to(trainer.accelerator.device)
    test_metrics = evaluate(best, test, precision=trainer.precision, accelerator=trainer.accelerator)  # sharded
    if not trainer.accelerator.is_main_process:
        return None
    for name, task in best.tasks.items():  # one confusion matrix per task that has one (classification)
        if "confusion_matrix" in (test_metrics["tasks"][name] or {}):
            plot_confusion(test_metrics["tasks"][name]["confusion_matrix"], task.labels,
                           os.path.join(output_dir, "confusion_matrix.png" if name == "topic" else
                                        f"confusion_matrix_{name}.png"), f"Test confusion matrix ({name})")
    results = {"test": test_metrics, "sts_spearman": sts_spearman(best, sts) if sts else None, "sts_source": sts_source,
               "best_epoch": trainer.state["best_epoch"], "history": history,
               "train_seconds": train_seconds, "rows": {"train": len(train), "val": len(val), "test": len(test)},
               "precision": trainer.precision, "num_processes": trainer.accelerator.num_processes,
               "trained_tasks": best.trained_tasks, "tasks": [t.config() for t in best.tasks.values()],
               "task_sources": recipe.tasks.sources(), "flags": recipe.flags_record(), "run": run_info()}
    if start_from:
        results["start"] = start_from
    results.update((extra_results(results, best) if callable(extra_results) else extra_results) or {})
    best.save_pretrained(os.path.join(output_dir, "model"), results)  # its Hub card with the metrics above
    write_text_atomic(os.path.join(output_dir, "results.json"), json.dumps(results, indent=2))
    write_text_atomic(os.path.join(output_dir, VALIDATION_TEXTS),  # held out from training: --export-fast checks on them
                      "".join(" ".join(words) + "\n" for words in val["words"]))
    return results, best


def run_from_model(recipe, data, output_dir):
    """--from-model DIR: train on from the saved model in DIR, adding the tasks of --tasks it lacks (fresh heads),
    while its own tasks keep what they know: their outputs and its sentence embeddings are distilled from the saved
    model (DISTIL_WEIGHT, DISTIL_TEMPERATURE, KEEP_EMBEDDING) beside their own labels. results.json's `from_model`
    records each old task's test score before (the saved model) and after."""
    from_model = recipe.distillation.from_model
    train, val, test, tasks = data
    teacher = MultiTaskSentenceTransformer.from_pretrained(from_model)
    model = MultiTaskSentenceTransformer.from_pretrained(from_model)
    clash = [t.name for t in tasks if t.name in model.tasks and not t.same_as(model.tasks[t.name])]
    if clash:
        raise InputError(f"--from-model {from_model}: its task {clash[0]!r} has other labels than --tasks gives it; "
                         "name the new task differently, or use the data the model was trained on")
    new = [t for t in tasks if t.name not in model.tasks]
    for task in new:
        model.add_task(task)
    if model.trained_tasks is None:
        model.trained_tasks = {n: n not in {t.name for t in new} for n in model.tasks}
    old = [n for n in teacher.tasks if n in {t.name for t in tasks}]

    # scored as the run will score the new model: the same precision, the same test rows
    before = evaluate(teacher, test, precision=resolve_mixed_precision(recipe.training.mixed_precision)) if old else {"tasks": {}}
    print(f"--from-model {from_model}: its tasks {', '.join(teacher.tasks)} distilled from it; new: "
          f"{', '.join(t.name for t in new) or 'none'}")

    def from_model_record(results, best):
        record = {"path": os.path.abspath(from_model), "new_tasks": [t.name for t in new], "old_tasks": {}}
        for n in old:
            task = best.tasks[n]
            record["old_tasks"][n] = {"metric": task.main_metric,
                                      "before": main_score(task, before["tasks"].get(n)),
                                      "after": main_score(task, results["test"]["tasks"].get(n))}
        return {"from_model": record}

    out = run_experiment(recipe, data, output_dir, model=model, teacher=teacher, extra_results=from_model_record)
    if out is None:
        return None
    results, best = out
    for n, v in results["from_model"]["old_tasks"].items():
        if v["before"] is not None and v["after"] is not None:
            print(f"  {n}: {v['metric']} {v['before']:.4f} before -> {v['after']:.4f} after "
                  f"({v['after'] - v['before']:+.4f})")
    return results, best


def run_schedule(recipe, data, output_dir):
    """run_experiment under --schedule. "joint, then NER": stage 1 (both tasks, EPOCHS - STAGE2_EPOCHS epochs) trains
    in output_dir/stage1 without touching the test split; stage 2 trains its validation-selected model on for
    STAGE2_EPOCHS with the topic head frozen in output_dir, which gets the results as any run. Each stage resumes
    from its own checkpoints, so a killed schedule continues where it stopped (a finished stage 1 is not retrained).
    results.json records the stages (epochs, history, best epoch)."""
    t = recipe.training
    if t.schedule == "joint":
        return run_experiment(recipe, data, output_dir)

    train, val, _, tasks = data
    stage1_dir, stage1_epochs = os.path.join(output_dir, "stage1"), t.epochs - t.stage2_epochs
    print(f"schedule {t.schedule!r}: stage 1, both tasks, {stage1_epochs} epochs")
    set_seed(t.seed)
    trainer = MultiTaskTrainer(new_model(recipe, tasks), train, val,
                               recipe.train_config(stage1_dir, epochs=stage1_epochs))
    start = time.perf_counter()
    history = trainer.train()
    stage1 = {"epochs": stage1_epochs, "best_epoch": trainer.state["best_epoch"], "history": history,
              "output_dir": stage1_dir, "train_seconds": time.perf_counter() - start}
    if trainer.accelerator.is_main_process:
        write_text_atomic(os.path.join(stage1_dir, "stage.json"), json.dumps(stage1, indent=2))
    others = tuple(t.name for t in tasks if t.name != "ner")
    print(f"schedule {t.schedule!r}: stage 2, NER only ({', '.join(others)} frozen), {t.stage2_epochs} epochs from "
          f"stage 1's epoch {stage1['best_epoch']}")
    out = run_experiment(recipe, data, output_dir, start_from=os.path.join(stage1_dir, "best_model"),
                         epochs=t.stage2_epochs, freeze_tasks=others,
                         extra_results={"schedule": {"name": t.schedule, "stages": [
                             stage1, {"epochs": t.stage2_epochs, "frozen": list(others)}]}})
    return out


def run_distillation(recipe, data, output_dir):
    """--distil-from DIR --student-layers N: a student made from the saved model in DIR (distillation.make_student)
    trained on the data with the task losses and the teacher's outputs (DISTIL_WEIGHT, DISTIL_TEMPERATURE,
    KEEP_EMBEDDING towards the teacher's embeddings); evaluated and saved like any run. results.json records the
    teacher (where, its layers, the layers kept, its own scores)."""
    d = recipe.distillation

    teacher = MultiTaskSentenceTransformer.from_pretrained(d.distil_from)
    topic = next((t for t in data[3] if t.name == "topic"), None)
    check_teacher_classes(teacher, topic.labels if topic else teacher.label_names, d.distil_from)
    student = make_student(teacher, d.student_layers)
    record = teacher_record(d.distil_from, teacher, d.student_layers)
    print(f"student: {d.student_layers} of the teacher's {record['layers']} layers (layers "
          f"{', '.join(map(str, record['kept_layers']))}), its tokenizer, pooling ({student.encoder.pooling}), "
          f"max_length {student.encoder.max_length} and heads; distil weight {d.distil_weight}, temperature "
          f"{d.distil_temperature}, keep_embedding {recipe.training.keep_embedding} (towards the teacher's embeddings)")
    return run_experiment(recipe, data, output_dir, model=student, teacher=teacher, extra_results={"teacher": record})


def run_with_teachers(recipe, data, output_dir):
    """--teachers NAME=DIR ...: a fresh model trained on the data, each named task also learning its teacher's
    distribution (DISTIL_WEIGHT, DISTIL_TEMPERATURE, DISTIL_SCHEDULE; the embedding targets stay the packaged
    encoder's, KEEP_EMBEDDING). results.json's `teachers` records each teacher (folder, its own test score)."""
    d = recipe.distillation
    dirs = parse_teachers(d.teachers)
    teachers = load_teachers(dirs)
    print("teachers: " + ", ".join(f"{n} from {d}" for n, d in dirs.items()) + f"; distil weight {d.distil_weight} "
          f"({d.distil_schedule}), temperature {d.distil_temperature}")
    return run_experiment(recipe, data, output_dir, teacher=teachers, extra_results={"teachers": teachers_record(dirs)})
