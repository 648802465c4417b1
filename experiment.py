"""One experiment, as main.py runs it: the labelled data with validation carved from train, one model trained on it
(fresh, or on from a saved model), its validation-selected checkpoint evaluated once on the test split, and
results.json, model/ (with its model card) and the plots written. `a` holds main.py's flags (argparse namespace).

    data = load_data(a)                                   # (train, val, test, tasks)
    results, model = run_experiment(a, data, "outputs/x") # None on the other processes of a DDP run
    results, model = run_schedule(a, data, "outputs/x")   # the same, under --schedule (one or two stages)
    results, model = run_distillation(a, data, "outputs/x")  # --distil-from DIR: a smaller student of a saved model
    results, model = run_with_teachers(a, data, "outputs/x") # --teachers NAME=DIR ...: tasks distilled from teachers
"""
import json
import os
import time

from errors import InputError

CLEAN_MODES = {"auto": "auto", "true": True, "false": False}
# --schedule: "joint" trains every task every epoch; "joint, then NER" trains them all for EPOCHS - STAGE2_EPOCHS
# epochs, then the NER head and encoder on for the last STAGE2_EPOCHS with the other heads frozen (same total epochs).
SCHEDULES = ("joint", "joint, then NER")


def dropped_types(a):
    """The --dropped-entity-types as a tuple, or None for the default of --ner-types."""
    if a.dropped_entity_types.strip().lower() == "default":
        return None
    return tuple(t.strip().upper() for t in a.dropped_entity_types.split(",") if t.strip())


def clean_mode(a):
    return CLEAN_MODES[str(a.clean_text).lower()]


def train_config_settings(a, output_dir=None, **overrides):
    """The TrainConfig keyword arguments of the flags named like its fields (a new such flag needs no edit here)."""
    from dataclasses import fields

    from task_data import parse_task_weights
    from trainer_sentence_transformer import TrainConfig

    settings = {f.name: getattr(a, f.name) for f in fields(TrainConfig) if hasattr(a, f.name)}
    settings["task_weights"] = {**parse_task_weights(a.task_weights), **overrides.pop("task_weights", {})}
    settings["freeze_tasks"] = tuple(dict.fromkeys([*a.freeze, *overrides.pop("freeze_tasks", ())]))
    if not (getattr(a, "distil_from", "") or getattr(a, "from_model", "") or getattr(a, "teachers", [])):
        settings["distil_weight"] = 0.0  # DISTIL_WEIGHT applies to --distil-from / --from-model / --teachers runs
    settings.update(output_dir=output_dir or a.output_dir, **overrides)
    return settings


def train_config(a, output_dir=None, **overrides):
    from trainer_sentence_transformer import TrainConfig

    return TrainConfig(**train_config_settings(a, output_dir, **overrides))


def schedule_problems(a):
    """[message] for --schedule / --stage2-epochs values that cannot run (main.py reports them before any work)."""
    from task_data import parse_task_weights

    if a.schedule not in SCHEDULES:
        return [f"--schedule must be one of {' | '.join(repr(s) for s in SCHEDULES)}, got {a.schedule!r}"]
    if a.schedule == "joint":
        return []
    problems = []
    if not 1 <= a.stage2_epochs < a.epochs:
        problems.append(f"--stage2-epochs must be between 1 and --epochs - 1 ({a.epochs - 1}) under --schedule "
                        f"{a.schedule!r}: stage 2 takes the last N of the {a.epochs} epochs (got {a.stage2_epochs})")
    weights = parse_task_weights(a.task_weights)
    trained = [n for n in (str(t).split("=", 1)[0].strip() for t in a.tasks)
               if weights.get(n, 1) > 0 and n not in a.freeze]
    if "ner" not in trained or len(trained) < 2:
        problems.append(f"--schedule {a.schedule!r} trains every task, then NER: it needs the ner task and another "
                        "one trained (weights > 0, not in --freeze); use --schedule joint")
    if a.freeze_encoder:
        problems.append(f"--schedule {a.schedule!r} with --freeze-encoder: stage 2 would train the NER head alone "
                        "on a frozen encoder, which stage 1 already did; use --schedule joint")
    return problems


def load_data(a):
    """(train, val, test, tasks): every task's rows, with validation carved from train, and the Task objects.

    The default pair (topic, ner) comes from the cached silver dataset of --dataset: validation is carved (stratified)
    from its rows, and the same fraction of the --ner-data sentences joins it as NER-only rows; the rest of the gold
    sentences join train; the test split is the data's own (or carved). Every other task's source is split alone
    (task_data.load_task_source) and its rows join each split with only that source's columns."""
    from conll import load_ner_files
    from create_ner_dataset import combine_rows, create_dataset
    from distributed import distributed_state
    from task_data import load_distil_texts, load_task_source, merge_rows, parse_task_specs, sources
    from tasks import ClassificationTask, TaggingTask

    start = time.perf_counter()
    specs = parse_task_specs(a.tasks)
    tasks, parts = {}, []
    if any(not s.kind for s in specs):
        with distributed_state().main_process_first():  # under DDP, one process labels and the others read the cache
            limits = (None, None) if a.all_rows else (a.max_train_rows or None, a.max_test_rows or None)
            ds, tags = create_dataset(a.dataset, max_train_rows=limits[0], max_test_rows=limits[1], seed=a.seed,
                                      spacy_model=a.spacy_model,
                                      dropped_types=dropped_types(a), clean=clean_mode(a), n_process=a.label_processes,
                                      text_column=a.text_column, label_column=a.label_column,
                                      test_fraction=a.test_fraction, ner_types=a.ner_types)
        names = ds["train"].features["label"].names
        n_val, n_labels = int(a.val_fraction * len(ds["train"])), len(names)
        if n_val < n_labels or len(ds["train"]) - n_val < n_labels:
            raise InputError(f"--val-fraction {a.val_fraction} of {len(ds['train'])} train rows gives {n_val} "
                             f"validation rows; each split needs at least one row per class ({n_labels}): use more "
                             "rows (--max-train-rows) or another --val-fraction.")
        split = ds["train"].train_test_split(test_size=a.val_fraction, stratify_by_column="label", seed=a.seed)
        train, val = split["train"], split["test"]
        gold_note = ""
        if a.ner_data:
            gold = load_ner_files(a.ner_data, ner_types=a.ner_types, dropped_types=dropped_types(a),
                                  label_names=names)
            gold = gold.train_test_split(test_size=a.val_fraction, seed=a.seed)
            train, val = combine_rows(train, gold["train"]), combine_rows(val, gold["test"])
            gold_note = f" (+ {len(gold['train'])} / {len(gold['test'])} gold NER-only sentences from --ner-data)"
        tasks["topic"] = ClassificationTask("topic", names, column="label", dropout=a.dropout)
        tasks["ner"] = TaggingTask("ner", tags, column="ner_tags", dropout=a.dropout)
        parts.append((train, val, ds["test"]))
        print(f"data: {len(train)} train / {len(val)} validation / {len(ds['test'])} test rows{gold_note}, "
              f"{n_labels} classes, {len(tags)} BIO tags ({time.perf_counter() - start:.0f}s)")
    clean = new_model_clean(a, tasks)  # every source's text as the model will clean it at prediction time
    for group, (source, source_specs) in enumerate(sources(specs).items(), start=1):
        part = load_task_source(source, source_specs, a.text_column, clean, a.test_fraction, a.val_fraction,
                                a.seed, group)
        for task in part.tasks:
            task.dropout = a.dropout
            tasks[task.name] = task
        parts.append((part.train, part.val, part.test))
        what = ", ".join(f"{t.name} ({t.kind}, {len(t.labels)} labels)" for t in part.tasks)
        print(f"data: {source}: {what}: {len(part.train['words'])} train / {len(part.val['words'])} validation / "
              f"{len(part.test['words'])} test rows")
    ordered = [tasks[s.name] for s in specs]
    extra = []
    if getattr(a, "distil_texts", None):  # unlabelled rows: train only, their own group, the teachers' targets only
        extra = [load_distil_texts(a.distil_texts, a.text_column, clean, group=len(parts))]
        print(f"data: --distil-texts: {len(extra[0]['words'])} unlabelled training rows (teachers' outputs only)")
    if len(parts) == 1 and specs[0].kind is None and not extra:
        return (*parts[0], ordered)  # the default pair alone: the dataset as it is
    train = merge_rows([p[0] for p in parts] + extra, ordered)
    return (train, *(merge_rows([p[k] for p in parts], ordered) for k in (1, 2)), ordered)


def new_model_clean(a, tasks):
    """Whether the model cleans text as AG News' was (create_ner_dataset's rule, from --dataset and its classes)."""
    from data_sources import clean_applies

    topic = next((t for t in (tasks.values() if isinstance(tasks, dict) else tasks) if t.name == "topic"), None)
    if topic is None:  # no --dataset task: clean only when asked to
        return clean_mode(a) is True
    return clean_applies(a.dataset, clean_mode(a), topic.labels)


def new_model(a, tasks):
    """A fresh model for the flags: the encoder, the tasks (their labels from the data), pooling, cleaning."""
    from errors import InputError
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    def build(task_layers):
        return MultiTaskSentenceTransformer(a.model_name, tasks=tasks, pooling=a.pooling, max_length=a.max_length,
                                            clean=new_model_clean(a, tasks), attention_dropout=a.attention_dropout,
                                            task_layers=task_layers)

    task_layers = getattr(a, "task_layers", 0)
    try:
        return build(task_layers)
    except InputError as e:
        # main.py's TASK_LAYERS, not given as --task-layers, on a Hub encoder it cannot split (main.py checks a local
        # one before any work): the run goes on without task layers rather than fail for a flag nobody set
        if not task_layers or getattr(a, "task_layers_given", True) or not str(e).startswith("task_layers"):
            raise
        print(f"task layers: none for this run (TASK_LAYERS = {task_layers} does not apply: {e})")
        a.task_layers = 0
        return build(0)


def run_experiment(a, data, output_dir, start_from=None, extra_results=None, model=None, teacher=None,
                   **config_overrides):
    """Train one model and evaluate its best (validation-selected) checkpoint on the test split once.

    start_from: a saved model folder to train on from (a stage-2 run: a fresh optimizer and schedule); None builds a
    new model from the flags (unless `model` is given: e.g. a student). teacher: a trained model to distil from
    (trainer_sentence_transformer). extra_results: more keys for results.json. config_overrides: TrainConfig fields (e.g.
    task_weights={"ner": 0.0}, freeze_tasks=("topic",)).
    Returns (results, best model) on the main process, None on the others (DDP)."""
    from accelerate.utils import set_seed

    from atomic_io import write_text_atomic
    from model_card import write_model_card
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer
    from plots import plot_confusion
    from run_info import run_info
    from sts_benchmark import sts_pairs, sts_spearman
    from trainer_sentence_transformer import MultiTaskTrainer, evaluate

    train, val, test, tasks = data
    sts, sts_source = sts_pairs(getattr(a, "data_root", "auto"))  # before training: says now if it will be skipped
    if sts is None:
        print(f"STS-B check skipped: {sts_source}")
    config = train_config(a, output_dir, **config_overrides)
    set_seed(a.seed)  # the heads' initialisation too
    if model is None:
        model = MultiTaskSentenceTransformer.from_pretrained(start_from) if start_from else new_model(a, tasks)
    trainer = MultiTaskTrainer(model, train, val, config, teacher=teacher)
    start = time.perf_counter()
    history = trainer.train()
    train_seconds = time.perf_counter() - start
    best = MultiTaskSentenceTransformer.from_pretrained(os.path.join(output_dir, "best_model"))
    best.to(trainer.accelerator.device)
    test_metrics = evaluate(best, test, precision=trainer.precision, accelerator=trainer.accelerator)  # sharded
    if not trainer.accelerator.is_main_process:
        return None
    best.save_pretrained(os.path.join(output_dir, "model"))
    for name, task in best.tasks.items():  # one confusion matrix per classification task
        if task.kind == "classification" and test_metrics["tasks"][name]:
            plot_confusion(test_metrics["tasks"][name]["confusion_matrix"], task.labels,
                           os.path.join(output_dir, "confusion_matrix.png" if name == "topic" else
                                        f"confusion_matrix_{name}.png"), f"Test confusion matrix ({name})")
    results = {"test": test_metrics, "sts_spearman": sts_spearman(best, sts) if sts else None, "sts_source": sts_source,
               "best_epoch": trainer.state["best_epoch"], "history": history,
               "train_seconds": train_seconds, "rows": {"train": len(train), "val": len(val), "test": len(test)},
               "precision": trainer.precision, "num_processes": trainer.accelerator.num_processes,
               "trained_tasks": best.trained_tasks, "tasks": [t.config() for t in best.tasks.values()],
               "task_sources": task_sources(a), "flags": vars(a), "run": run_info()}
    if start_from:
        results["start"] = start_from
    results.update(extra_results or {})
    write_text_atomic(os.path.join(output_dir, "results.json"), json.dumps(results, indent=2))
    write_model_card(os.path.join(output_dir, "model"), best, results)  # the Hub card, with the metrics above
    return results, best


def task_sources(a):
    """{task: its data source} for the tasks of --tasks beyond the default pair."""
    from task_data import parse_task_spec

    specs = [parse_task_spec(t) for t in a.tasks]
    return {s.name: s.source for s in specs if s.kind}


def run_from_model(a, data, output_dir):
    """--from-model DIR: train on from the saved model in DIR, adding the tasks of --tasks it lacks (fresh heads),
    while its own tasks keep what they know: their outputs and its sentence embeddings are distilled from the saved
    model (DISTIL_WEIGHT, DISTIL_TEMPERATURE, KEEP_EMBEDDING) beside their own labels. results.json's `from_model`
    records each old task's test score before (the saved model) and after."""
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer
    from trainer_sentence_transformer import evaluate

    train, val, test, tasks = data
    teacher = MultiTaskSentenceTransformer.from_pretrained(a.from_model)
    model = MultiTaskSentenceTransformer.from_pretrained(a.from_model)
    clash = [t.name for t in tasks if t.name in model.tasks and not t.same_as(model.tasks[t.name])]
    if clash:
        raise InputError(f"--from-model {a.from_model}: its task {clash[0]!r} has other labels than --tasks gives it; "
                         "name the new task differently, or use the data the model was trained on")
    new = [t for t in tasks if t.name not in model.tasks]
    for task in new:
        model.add_task(task)
    if model.trained_tasks is None:
        model.trained_tasks = {n: n not in {t.name for t in new} for n in model.tasks}
    old = [n for n in teacher.tasks if n in {t.name for t in tasks}]
    from precision import resolve_mixed_precision

    # scored as the run will score the new model: the same precision, the same test rows
    before = evaluate(teacher, test, precision=resolve_mixed_precision(a.mixed_precision)) if old else {"tasks": {}}
    print(f"--from-model {a.from_model}: its tasks {', '.join(teacher.tasks)} distilled from it; new: "
          f"{', '.join(t.name for t in new) or 'none'}")
    out = run_experiment(a, data, output_dir, model=model, teacher=teacher)
    if out is None:
        return None
    results, best = out
    from evaluation import main_score

    record = {"path": os.path.abspath(a.from_model), "new_tasks": [t.name for t in new], "old_tasks": {}}
    for n in old:
        task = best.tasks[n]
        record["old_tasks"][n] = {"metric": task.main_metric,
                                  "before": main_score(task, before["tasks"].get(n)),
                                  "after": main_score(task, results["test"]["tasks"].get(n))}
    results["from_model"] = record
    from atomic_io import write_text_atomic
    from model_card import write_model_card

    write_text_atomic(os.path.join(output_dir, "results.json"), json.dumps(results, indent=2))
    write_model_card(os.path.join(output_dir, "model"), best, results)
    for n, v in record["old_tasks"].items():
        if v["before"] is not None and v["after"] is not None:
            print(f"  {n}: {v['metric']} {v['before']:.4f} before -> {v['after']:.4f} after "
                  f"({v['after'] - v['before']:+.4f})")
    return results, best


def run_schedule(a, data, output_dir):
    """run_experiment under a.schedule. "joint, then NER": stage 1 (both tasks, EPOCHS - STAGE2_EPOCHS epochs) trains
    in output_dir/stage1 without touching the test split; stage 2 trains its validation-selected model on for
    STAGE2_EPOCHS with the topic head frozen in output_dir, which gets the results as any run. Each stage resumes
    from its own checkpoints, so a killed schedule continues where it stopped (a finished stage 1 is not retrained).
    results.json records the stages (epochs, history, best epoch)."""
    from atomic_io import write_text_atomic
    from trainer_sentence_transformer import MultiTaskTrainer

    if a.schedule == "joint":
        return run_experiment(a, data, output_dir)
    from accelerate.utils import set_seed

    train, val, _, tasks = data
    stage1_dir, stage1_epochs = os.path.join(output_dir, "stage1"), a.epochs - a.stage2_epochs
    print(f"schedule {a.schedule!r}: stage 1, both tasks, {stage1_epochs} epochs")
    set_seed(a.seed)
    trainer = MultiTaskTrainer(new_model(a, tasks), train, val, train_config(a, stage1_dir, epochs=stage1_epochs))
    start = time.perf_counter()
    history = trainer.train()
    stage1 = {"epochs": stage1_epochs, "best_epoch": trainer.state["best_epoch"], "history": history,
              "output_dir": stage1_dir, "train_seconds": time.perf_counter() - start}
    if trainer.accelerator.is_main_process:
        write_text_atomic(os.path.join(stage1_dir, "stage.json"), json.dumps(stage1, indent=2))
    others = tuple(t.name for t in tasks if t.name != "ner")
    print(f"schedule {a.schedule!r}: stage 2, NER only ({', '.join(others)} frozen), {a.stage2_epochs} epochs from "
          f"stage 1's epoch {stage1['best_epoch']}")
    out = run_experiment(a, data, output_dir, start_from=os.path.join(stage1_dir, "best_model"),
                         epochs=a.stage2_epochs, freeze_tasks=others,
                         extra_results={"schedule": {"name": a.schedule, "stages": [
                             stage1, {"epochs": a.stage2_epochs, "frozen": list(others)}]}})
    return out


def run_distillation(a, data, output_dir):
    """--distil-from DIR --student-layers N: a student made from the saved model in DIR (distillation.make_student)
    trained on the data with the task losses and the teacher's outputs (DISTIL_WEIGHT, DISTIL_TEMPERATURE,
    KEEP_EMBEDDING towards the teacher's embeddings); evaluated and saved like any run. results.json records the
    teacher (where, its layers, the layers kept, its own scores)."""
    from distillation import check_teacher_classes, make_student, teacher_record
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    teacher = MultiTaskSentenceTransformer.from_pretrained(a.distil_from)
    topic = next((t for t in data[3] if t.name == "topic"), None)
    check_teacher_classes(teacher, topic.labels if topic else teacher.label_names, a.distil_from)
    student = make_student(teacher, a.student_layers)
    record = teacher_record(a.distil_from, teacher, a.student_layers)
    print(f"student: {a.student_layers} of the teacher's {record['layers']} layers (layers "
          f"{', '.join(map(str, record['kept_layers']))}), its tokenizer, pooling ({student.encoder.pooling}), "
          f"max_length {student.encoder.max_length} and heads; distil weight {a.distil_weight}, temperature "
          f"{a.distil_temperature}, keep_embedding {a.keep_embedding} (towards the teacher's embeddings)")
    return run_experiment(a, data, output_dir, model=student, teacher=teacher, extra_results={"teacher": record})


def run_with_teachers(a, data, output_dir):
    """--teachers NAME=DIR ...: a fresh model trained on the data, each named task also learning its teacher's
    distribution (DISTIL_WEIGHT, DISTIL_TEMPERATURE, DISTIL_SCHEDULE; the embedding targets stay the packaged
    encoder's, KEEP_EMBEDDING). results.json's `teachers` records each teacher (folder, its own test score)."""
    from distillation import load_teachers, parse_teachers, teachers_record

    dirs = parse_teachers(a.teachers)
    teachers = load_teachers(dirs)
    print("teachers: " + ", ".join(f"{n} from {d}" for n, d in dirs.items()) + f"; distil weight {a.distil_weight} "
          f"({a.distil_schedule}), temperature {a.distil_temperature}")
    return run_experiment(a, data, output_dir, teacher=teachers, extra_results={"teachers": teachers_record(dirs)})
