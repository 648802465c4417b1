"""Distillation's targets and losses: what the teachers (or the encoder as training starts) say about the training rows,
computed once, stored beside the checkpoint, cut into batches, and the two losses that pull the model towards them.

    targets = compute_targets(model, None, task_teachers(model, teacher), soft_tasks, features, accelerator, 64, "fp32")
    fingerprint = store_targets(targets, "outputs/run/checkpoints/teacher", accelerator)
    batch.update(batch_targets(targets, rows, soft_tasks, embeddings=True))

Targets (CPU tensors): "embeddings" [N, H] (the sentence embeddings of the embedding teacher, or of the model as it
was when training started) and, per distilled task, the teacher's outputs unit after unit, row after row ([U, C]: one
unit per row for a sentence task, one per word of the row for a tagging task, Task.soft_units) with
"<task>.offsets" [N + 1] (row i's units are [offsets[i]:offsets[i + 1]]). Every kind is stored alike; the task
says how many units a row has and how its outputs are compared (Task.soft_loss).
Nothing here loads a model or data.
"""
import os

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from atomic_io import atomic_write_dir
from checkpoints import CheckpointError, targets_fingerprint, weights_fingerprint
from distillation import teacher_outputs
from errors import InputError
from prediction import EMBEDDING
from train_config import task_weight

TARGETS_FILE = "embeddings.safetensors"


# --------------------------------------------------------------------------- teachers
def task_teachers(model, teacher):
    """{task: teacher model} for MultiTaskTrainer's teacher: one model teaches every task of the model it shares (the
    same kind, name and labels), {task: model} each named task. An InputError names the fix when a teacher's task
    clashes with the model's or a named task is not the teacher's."""
    if teacher is None:
        return {}
    if not isinstance(teacher, dict):
        shared = [n for n, t in model.tasks.items() if n in teacher.tasks and t.same_as(teacher.tasks[n])]
        if not shared or any(n in model.tasks and not model.tasks[n].same_as(t) for n, t in teacher.tasks.items()):
            raise InputError("the teacher's tasks differ from the model's (a task of the same name with other "
                             "labels, or none in common); distil into a student made from the teacher "
                             "(distillation.make_student), or add new tasks under new names.")
        return {n: teacher for n in shared}
    for n, t in teacher.items():
        if n not in model.tasks:
            raise InputError(f"a teacher is given for task {n!r}, which the model does not have (its tasks: "
                             f"{', '.join(model.tasks)}); name one of them.")
        if n not in t.tasks or not t.tasks[n].same_as(model.tasks[n]):
            has = ", ".join(f"{k} ({v.kind}, {len(v.labels)} labels)" for k, v in t.tasks.items())
            raise InputError(f"the teacher of task {n!r} has no task {n!r} with the same kind and labels (it has: "
                             f"{has}); give a model trained on that task with the same labels.")
    return dict(teacher)


def teachers_fingerprint(teacher):
    """Which teacher(s) a run distils from: the weights' fingerprint of one model, or of each task's (None: none)."""
    if teacher is None:
        return None
    if not isinstance(teacher, dict):
        return weights_fingerprint(teacher)
    return {n: weights_fingerprint(t) for n, t in sorted(teacher.items())}


def distil_weight_at(config, step, total_steps):
    """The teacher's weight a at a step (0-based) of total_steps: distil_weight, or under the "anneal" schedule
    distil_weight * (1 - step / total_steps) (from distil_weight at the first step towards 0 at the last)."""
    if config.distil_schedule == "anneal":
        return config.distil_weight * (1 - step / max(1, total_steps))
    return config.distil_weight


# --------------------------------------------------------------------------- computing and storing the targets
def sentence_embeddings(model, features, rows, batch_size=64, device=None, precision="fp32"):
    """Pooled sentence embeddings [len(rows), H] (fp32, CPU) of the model's shared encoder in eval mode (no dropout)
    for the given rows of prepare_features() output, run on device (default: the model's) in precision."""
    return teacher_outputs(model, features, rows, batch_size, device or model.device, precision, {})[0]


def compute_targets(model, embedding_teacher, teachers, soft_tasks, features, accelerator, batch_size, precision):
    """The targets of every training row (module docstring): the embeddings of embedding_teacher (None: of the model
    as it is now), each soft task's outputs from its teacher (teachers: {task: model}). Each process computes its
    share of the rows, then all are gathered (a process's share of a batch can be any row)."""
    n_rows, n_proc, rank = len(features["input_ids"]), accelerator.num_processes, accelerator.process_index
    mine = range(rank, n_rows, n_proc)
    device = accelerator.device
    emb = None if embedding_teacher is not None else sentence_embeddings(model, features, mine, batch_size, device,
                                                                          precision)
    per_task = {}
    for teacher in {id(t): t for t in [embedding_teacher, *teachers.values()] if t is not None}.values():
        its_tasks = {n: model.tasks[n] for n in soft_tasks if teachers[n] is teacher}
        if teacher is not embedding_teacher and not its_tasks:
            continue
        teacher_emb, outputs = teacher_outputs(teacher, features, mine, batch_size, device, precision, its_tasks)
        teacher.to("cpu")  # its outputs are all it is needed for
        per_task.update(outputs)
        if teacher is embedding_teacher:
            emb = teacher_emb
    parts = [(rank, (emb, per_task))]
    if n_proc > 1:
        parts = accelerator.gather_for_metrics(parts, use_gather_object=True)
    embeddings, outputs = [None] * n_rows, [None] * n_rows
    for r, (emb, per_task) in parts:
        for j, i in enumerate(range(r, n_rows, n_proc)):
            embeddings[i], outputs[i] = emb[j], {n: x[j] for n, x in per_task.items()}
    targets = {"embeddings": torch.stack(embeddings) if n_rows else torch.zeros(0, model.encoder.hidden_size)}
    for n in soft_tasks:  # every kind alike: a row's outputs as units [units, C], row after row, and the offsets
        units = [x[n].reshape(-1, x[n].shape[-1]) for x in outputs]
        targets[n] = torch.cat(units) if units else torch.zeros(0, len(model.tasks[n].labels))
        targets[n + ".offsets"] = torch.tensor([0, *np.cumsum([len(u) for u in units]).tolist()], dtype=torch.long)
    return targets


def store_targets(targets, path, accelerator):
    """Write the targets to path (atomically, by the main process) and return their fingerprint."""
    if accelerator.is_main_process:
        atomic_write_dir(path, lambda d: save_file(targets, os.path.join(d, TARGETS_FILE)))
    accelerator.wait_for_everyone()
    return targets_fingerprint(targets)


def load_targets(path, fingerprint, checkpoint_dir):
    """The targets a resumed run stored (the encoder they came from is gone), checked against the checkpoint's
    fingerprint. Targets stored before every kind had offsets (a sentence task's [N, C]) get one unit per row."""
    try:
        targets = load_file(os.path.join(path, TARGETS_FILE))
    except Exception as e:
        raise CheckpointError(f"the distillation targets of the checkpoint are unreadable in {path} "
                              f"({str(e).splitlines()[0][:200]}); delete {checkpoint_dir} (or use another "
                              "output_dir) to start afresh.") from e
    if targets_fingerprint(targets) != fingerprint:
        raise CheckpointError(f"{path} holds other distillation targets than the checkpoint was trained with; "
                              f"delete {checkpoint_dir} (or use another output_dir) to start afresh.")
    for name in [k for k in targets if k != "embeddings" and not k.endswith(".offsets")]:
        targets.setdefault(name + ".offsets", torch.arange(len(targets[name]) + 1))
    return targets


# --------------------------------------------------------------------------- batches and losses
def batch_targets(targets, rows, soft_tasks, embeddings):
    """The targets of a batch's rows: "teacher" (embeddings, when asked) and "teacher.<task>" (the rows' units, in
    collate's row-major order)."""
    batch = {"teacher": targets["embeddings"][rows]} if embeddings else {}
    for n in soft_tasks:
        offsets = targets[n + ".offsets"]
        batch["teacher." + n] = torch.cat([targets[n][offsets[i]:offsets[i + 1]] for i in rows])
    return batch


def soft_counts(tasks, soft_tasks, features, global_batch):
    """{"soft.<task>": the global batch's units} (a teacher's distribution for every unit, labelled or not)."""
    return {"soft." + n: sum(tasks[n].soft_units(features, i) for i in global_batch) for n in soft_tasks}


def soft_loss(model_out, batch, tasks, soft_tasks, counts, config, share):
    """T^2 * sum_t w_t * (this process's part of the global batch's mean soft loss of task t) (Hinton et al. 2015)."""
    temp = config.distil_temperature
    return temp * temp * sum(task_weight(config, n) * share * tasks[n].soft_loss(
        model_out[n].float(), batch["teacher." + n], temp) / max(1, counts["soft." + n]) for n in soft_tasks)


def embedding_loss(model_out, batch, counts, share):
    """This process's part of the global batch's mean of 1 - cos(sentence embedding, its target)."""
    cos = nn.functional.cosine_similarity(model_out[EMBEDDING].float(), batch["teacher"], dim=-1)
    return share * (1 - cos).sum() / counts["rows"]
