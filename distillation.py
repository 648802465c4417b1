"""Distillation: a smaller student made from a trained multi-task model (the teacher), trained on its outputs.

    student = make_student(teacher, 3)       # the teacher's encoder with 3 of its layers (1, 4, 6), tokenizer, heads
    trainer = MultiTaskTrainer(student, train, val, TrainConfig(distil_weight=0.5, keep_embedding=3.0), teacher=teacher)

main.py: `python main.py --dataset ../shared/data/ag_news --distil-from outputs/default/model --student-layers 3`.

Teachers per task (`--teachers topic=outputs/topic/model ner=outputs/ner/model`): a model of the same size learns each
task from its labels and from that task's own teacher (e.g. single-task models), the teachers' weight annealed from
DISTIL_WEIGHT to 0 with `--distil-schedule anneal` (BAM!, Clark et al. 2019); parse_teachers, teachers_problems,
load_teachers, teachers_record here, the loss in trainer_sentence_transformer.training_loss.

Which layers: the first and the top one, the rest evenly spaced between them (6 -> 3 keeps layers 1, 4, 6; 6 -> 2
keeps 1 and 6). Both ends of the stack keep what they were trained on: the first layer reads the embeddings (any
other layer expects a transformed input), the top layer feeds the pooling and the heads. DistilBERT's every other
layer (2, 4, 6 or 1, 3, 5) drops one end. Measured on main.py's validation split with the default model, students
untrained (bench/layer_choice.py): layers 1, 4, 6 keep accuracy 0.859 / NER F1 0.537 / STS-B 83.7 against 2, 4, 6's
0.814 / 0.453 / 75.7 and 1, 3, 5's 0.817 / 0.569 / 74.2; 1 and 6 keep 0.831 / 0.462 / 80.0 against 3 and 6's
0.777 / 0.351 / 73.6 (docs/distillation.md).

What the student learns from (trainer_sentence_transformer.py computes the teacher's outputs once, on the training
rows, stores them beside the checkpoint and reads them back on resume):
  - the task losses on the data's labels, weighted 1 - distil_weight;
  - the teacher's distribution of every task (per text, or per word for tagging: every word, labelled or not),
    softened by distil_temperature T
    (Hinton et al. 2015: T^2 * KL(teacher_T || student_T)), weighted distil_weight (and task_weights per task);
  - the teacher's sentence embeddings (keep_embedding * (1 - cos)): the KEEP_EMBEDDING term, with the teacher's
    embeddings as targets instead of the starting encoder's.
"""
import json
import os

import torch
from torch import nn

from batching import feature_rows
from errors import InputError
from multi_task_sentence_transformer import (
    CONFIG_NAME,
    EMBEDDING,
    ENCODER_DIR,
    HEADS_NAME,
    MultiTaskSentenceTransformer,
    missing_saved_parts,
)
from sentence_transformer import ModelLoadError, read_saved_json
from serving import copy_model
from task_data import BUILTIN

DISTIL_RESULT_KEYS = ("path", "layers", "student_layers", "kept_layers")


def student_layer_indices(n_teacher, n_student):
    """0-based teacher layers a student of n_student layers keeps: the first and the top one, the others evenly
    spaced between them (rounded half up); a 1-layer student keeps the top one."""
    if not 1 <= n_student <= n_teacher:
        raise InputError(f"a student needs between 1 and {n_teacher} layers (the teacher's), got {n_student}; "
                         f"pick --student-layers in 1..{n_teacher}.")
    if n_student == 1:
        return [n_teacher - 1]
    step = (n_teacher - 1) / (n_student - 1)
    return [int(k * step + 0.5) for k in range(n_student)]


def make_student(teacher, n_layers):
    """A copy of teacher (tokenizer, pooling, heads, cleaning, trained-task record) whose encoder keeps n_layers of
    its layers (student_layer_indices). The teacher is left untouched."""
    _, layers = teacher.encoder.embeddings_and_layers()
    return keep_layers(teacher, student_layer_indices(len(layers), n_layers))


def keep_layers(model, keep):
    """A copy of model whose encoder keeps only the given 0-based layers, in that order (model is left untouched)."""
    copy_ = copy_model(model)  # without an ONNX Runtime graph, which would not describe the copy
    _, layers = copy_.encoder.embeddings_and_layers()
    *parents, name = copy_.encoder.layers_path().split(".")
    holder = copy_.encoder.encoder
    for attr in parents:
        holder = getattr(holder, attr)
    setattr(holder, name, nn.ModuleList([layers[i] for i in keep]))
    copy_.encoder.encoder.config.num_hidden_layers = len(keep)
    copy_.task_layers, copy_.branches = 0, nn.ModuleDict()  # a student's tasks read its (shared) encoder
    for new_index, layer in enumerate(getattr(holder, name)):
        for module in layer.modules():  # attention modules that know their position (caches) get their new one
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    return copy_


def saved_model_layers(model_dir):
    """The encoder layer count of a folder written by save_pretrained, read from its config (no weights loaded);
    an InputError naming the fix when the folder is not a saved multi-task model."""
    missing = [n for n in (CONFIG_NAME, HEADS_NAME, os.path.join(ENCODER_DIR, "config.json"))
               if not os.path.exists(os.path.join(model_dir, n))]
    if missing:
        raise InputError(f"{model_dir!r} is not a saved multi-task model (missing {', '.join(missing)}); point "
                         "--distil-from at a folder main.py wrote as <output-dir>/model (or save_pretrained's).")
    try:
        config = read_saved_json(os.path.join(model_dir, ENCODER_DIR, "config.json"))
    except ModelLoadError as e:
        raise InputError(str(e)) from None
    layers = config.get("num_hidden_layers", config.get("n_layers"))
    if not isinstance(layers, int):
        raise InputError(f"{model_dir!r}: its encoder config names no layer count; re-save the teacher.")
    return layers


def teacher_problems(model_dir, student_layers, tags=None):
    """[message] for --distil-from / --student-layers before any work: the folder is a saved model, the layer count
    fits it, and (given the data's tag list from the flags) the teacher tags with the same tags."""
    try:
        n = saved_model_layers(model_dir)
    except InputError as e:
        return [f"--distil-from: {e}"]
    problems = []
    if not 1 <= student_layers <= n:
        problems.append(f"--student-layers must be between 1 and the teacher's {n} layers (got {student_layers})")

    try:
        config = read_saved_json(os.path.join(model_dir, CONFIG_NAME), required=("tasks",))
    except ModelLoadError as e:
        return problems + [f"--distil-from: {e}"]
    teacher_tags = saved_labels(config, "tagging")
    if tags is not None and teacher_tags is not None and list(teacher_tags) != list(tags):
        problems.append(f"--distil-from: the teacher tags {_short(teacher_tags)}, the data's flags give "
                        f"{_short(tags)}; use the teacher's --ner-types / --dropped-entity-types")
    return problems


def saved_labels(config, kind):
    """The labels of the first task of a kind in a saved model's config (multitask_config.json), or None."""
    return next((t.get("labels") for t in config.get("tasks") or [] if isinstance(t, dict) and t.get("kind") == kind),
                None)


def check_teacher_classes(teacher, label_names, model_dir):
    """InputError when the teacher's topic classes are not the data's (same names, same order)."""
    if list(teacher.label_names) != list(label_names):
        raise InputError(f"--distil-from {model_dir!r}: the teacher predicts {_short(teacher.label_names)}, the data's "
                         f"classes are {_short(label_names)}; distil on the data the teacher was trained on (or "
                         "one with the same classes, --label-column).")


def _short(names, n=6):
    names = list(names)
    return "[" + ", ".join(names[:n]) + (f", ... {len(names)} in all" if len(names) > n else "") + "]"


def teacher_record(model_dir, teacher, student_layers):
    """results.json's `teacher`: where it came from, its size and which of its layers the student kept, plus the
    teacher run's own results (its results.json beside the folder, when there is one)."""
    _, layers = teacher.encoder.embeddings_and_layers()
    record = {"path": os.path.abspath(model_dir), "layers": len(layers), "student_layers": student_layers,
              "kept_layers": [i + 1 for i in student_layer_indices(len(layers), student_layers)]}
    results = os.path.join(os.path.dirname(os.path.abspath(model_dir)), "results.json")
    if os.path.isfile(results):
        with open(results) as f:
            r = json.load(f)
        record["results"] = {"accuracy": r["test"]["accuracy"], "ner_f1": r["test"]["ner"] and r["test"]["ner"]["f1"],
                             "sts_spearman": r.get("sts_spearman"), "commit": r.get("run", {}).get("commit")}
    return record


# --------------------------------------------------------------------------- teachers per task (--teachers)
def parse_teachers(specs):
    """{task: model folder} from main.py's --teachers NAME=DIR ...; InputError naming the form otherwise."""
    teachers = {}
    for spec in specs:
        name, sep, folder = str(spec).partition("=")
        name, folder = name.strip(), folder.strip()
        if not sep or not name or not folder:
            raise InputError(f"--teachers: {spec!r} is not NAME=DIR (e.g. ner=outputs/ner/model: the task ner "
                             "distilled from the saved model in outputs/ner/model)")
        if name in teachers:
            raise InputError(f"--teachers: task {name!r} is given two teachers; give one per task")
        teachers[name] = folder
    return teachers


def teachers_problems(teachers, specs, ner_tags=None):
    """[message] for {task: folder} against --tasks' specs, from the saved configs only (no weights loaded): every
    task is one of the run's, every folder a saved model with a task of that name and kind (for the default ner
    task, the tags ner_tags the flags give). The classes are compared when the teachers are loaded."""
    kinds = {s.name: s.kind or BUILTIN.get(s.name) for s in specs}
    problems = []
    for name, folder in teachers.items():
        if name not in kinds:
            problems.append(f"--teachers {name}={folder}: the run has no task {name!r} (its tasks: "
                            f"{', '.join(kinds)})")
            continue
        missing = missing_saved_parts(folder)
        if missing:
            problems.append(f"--teachers {name}={folder}: not a saved model folder (no {', '.join(missing)}); point "
                            "it at <output-dir>/model of a training run")
            continue
        try:
            saved = read_saved_json(os.path.join(folder, CONFIG_NAME), required=("tasks",))["tasks"]
        except ModelLoadError as e:
            problems.append(f"--teachers {name}={folder}: {e}")
            continue
        task = next((t for t in saved if isinstance(t, dict) and t.get("name") == name), None)
        if task is None or task.get("kind") != kinds[name]:
            has = ", ".join(f"{t.get('name')} ({t.get('kind')})" for t in saved if isinstance(t, dict))
            problems.append(f"--teachers {name}={folder}: that model has no {kinds[name]} task {name!r} (it has: "
                            f"{has}); give a model trained on it (e.g. python main.py --tasks {name} --output-dir "
                            f"outputs/{name})")
        elif name == "ner" and ner_tags is not None and list(task.get("labels") or []) != list(ner_tags):
            problems.append(f"--teachers {name}={folder}: the teacher tags {_short(task.get('labels') or [])}, the "
                            f"flags give {_short(ner_tags)}; use the teacher's --ner-types / --dropped-entity-types")
    return problems


def load_teachers(folders):
    """{task: loaded model} for {task: folder}; a folder named for several tasks is loaded once."""
    loaded = {}
    for folder in dict.fromkeys(folders.values()):
        loaded[folder] = MultiTaskSentenceTransformer.from_pretrained(folder)
    return {name: loaded[folder] for name, folder in folders.items()}


def teachers_record(folders):
    """results.json's `teachers`: per task, the teacher's folder and, when its run's results.json lies beside the
    folder, the teacher's own test score of that task and the commit it was trained at."""
    record = {}
    for name, folder in folders.items():
        entry = {"path": os.path.abspath(folder)}
        results = os.path.join(os.path.dirname(os.path.abspath(folder)), "results.json")
        if os.path.isfile(results):
            with open(results) as f:
                r = json.load(f)
            scores = ((r.get("test") or {}).get("tasks") or {}).get(name) or {}
            entry.update({k: scores[k] for k in ("accuracy", "f1", "micro_f1") if k in scores},
                         commit=(r.get("run") or {}).get("commit"))
        record[name] = entry
    return record


def teacher_outputs(teacher, features, rows, batch_size, device, precision, tasks):
    """The teacher's outputs for the given rows of prepare_features() output, in eval mode (no dropout), on device in
    precision: (sentence embeddings [n, H], {task: per row its logits: [C] for a sentence task, [its words,
    T] for a tagging task: every word of the row, labelled or not}) for the tasks named in `tasks`, fp32 on the host,
    in the order of rows (the teacher's batch runner, MultiTaskSentenceTransformer.run)."""
    rows = list(rows)
    if not rows:
        return torch.zeros(0, teacher.encoder.hidden_size), {n: [] for n in tasks}
    outs = teacher.to(device).run(feature_rows(features, rows), [*tasks, EMBEDDING], batch_size, precision)
    return torch.stack([o[EMBEDDING] for o in outs]), {n: [o[n] for o in outs] for n in tasks}
