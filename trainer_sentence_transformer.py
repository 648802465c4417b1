"""The training loop of the multi-task model: one readable loop, every step visible.

    trainer = MultiTaskTrainer(model, train_rows, val_rows, TrainConfig(epochs=3, output_dir="outputs/run"))
    history = trainer.train()            # evaluates on val every epoch, keeps best and last checkpoints
    metrics = trainer.evaluate(test_rows)

Rows are datasets (or lists of dicts) with `words`, `ner_tags` (BIO strings) and `label`, as made by
create_ner_dataset.create_dataset. The loop runs through `accelerate`, so the same code trains on CPU,
one GPU, or several processes (`torchrun` / `accelerate launch main.py`, DDP), with optional bf16/fp16 autocast.

Several processes give the 1-process result: batch_size is the GLOBAL batch, every process walks the same
global batches and takes its share of each, and each loss is normalised by the global batch's count, so DDP's
averaged gradient is the 1-process gradient. Validation is sharded and gathered; logged losses are summed
over processes. The GPU path syncs with the host once per logging interval (log_every_steps), not per step.

Loss = sum over the model's tasks of weight_t * loss_t (training_loss), each task's loss a mean over the rows (or,
for tagging, the words) of the global batch that carry its labels: a row may carry labels for some tasks only
(missing = -1 / None; no loss, not scored). Weights: task_weights {name: w} (unnamed tasks: 1).
Sampling (which rows an epoch sees, by the rows' `group`, their data source): "proportional" every row once (the
concatenation); "temperature" group g gets N * n_g^(1/T) / sum n^(1/T) of the N rows; "round-robin" N / G each. An
epoch is always N rows (N = all training rows); the first epoch's log line says how many of each task it saw.
Task balancing (loss_weighting):
  - "fixed": the loss above;
  - "uncertainty" (Kendall, Gal & Cipolla 2018, classification form without the 0.5 factors):
    sum_t exp(-s_t) * L_t + s_t over the trained tasks, with a learned log-variance s_t per task, started at
    -log(w_t) (so it starts where "fixed" is; w_t = 1 is Kendall's s_t = 0), trained at head_lr without weight decay.
    The s_t live in a small module (LossWeighting) that accelerate prepares like the model (DDP all-reduces their
    gradients); they are saved in the checkpoint and logged per epoch, never in save_pretrained's model.
Keeping the sentence embedding (keep_embedding = k > 0): + k * mean over rows of (1 - cos(sentence embedding, the
same text's sentence embedding from the encoder as it was when training started)). The teacher embeddings are
computed once (eval mode) and stored in checkpoints/teacher, so a resumed run distils towards the same targets.
Distilling from a trained teacher model (MultiTaskTrainer(..., teacher=model), see distillation.py): the embedding
targets are the teacher's sentence embeddings, and with distil_weight = a > 0 the loss is
(1 - a) * (the task loss above) + a * T^2 * sum_t w_t * KL(teacher_t || student_t) over the tasks the teacher has
(sentence tasks over all rows, tagging over every word of every row, labelled or not), softened by
T = distil_temperature. A teacher
lacking some of the student's tasks (a task added to a trained model) is distilled on the tasks it has. Its outputs
are computed once like the embedding targets, stored and read back alike.
Teachers per task (teacher={task: model}, e.g. single-task models: BAM!, Clark et al. 2019): each named task is
distilled from its own teacher's distribution; the embedding targets stay the starting encoder's. distil_schedule
"anneal" lowers a linearly from distil_weight at the first step to 0 at the last (BAM's teacher annealing with
distil_weight = 1: the target moves from the teacher's distribution to the labels); "constant" keeps it.
Freezing rules:
  - a frozen part gets no gradient and is not in the optimizer;
  - a frozen head's task (freeze_tasks) contributes no loss, so the shared encoder is not pulled by a head that
    cannot learn;
  - a loss weight of 0 freezes its head;
  - a frozen encoder runs in eval mode (no dropout) and, with `feature_cache`, is run once: its token
    embeddings are cached and every epoch trains only the heads on the cache;
  - freezing everything is an error ("nothing to train") unless `eval_only` is set.
"""
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch import nn

from atomic_io import (
    atomic_write_dir,
    exit_at_step_for_tests,
    kill_point,
    recover_interrupted_writes,
    write_text_atomic,
)
from batching import (
    SAMPLINGS,
    collate,
    epoch_rows,
    label_counts,
    length_grouped_batches,
    pad_ids_value,
    positions,
    prepare_features,
    to_device,
)
from checkpoints import (  # noqa: F401  (CheckpointError: raised through the trainer, imported from here by users)
    CheckpointError,
    check_resumable,
    data_fingerprint,
    load_checkpoint_weights,
    read_trainer_state,
    rng_state,
    run_settings,
    set_rng_state,
    targets_fingerprint,
    weights_fingerprint,
    write_checkpoint,
)
from distributed import check_joined, distributed_state, make_accelerator, process_share
from errors import InputError, ProjectError
from evaluation import evaluate, main_score  # noqa: F401  (evaluate: importable from here, as it always was)
from plots import plot_history
from precision import MIXED_PRECISIONS, autocast, resolve_mixed_precision

LOSS_WEIGHTINGS = ("fixed", "uncertainty")
DISTIL_SCHEDULES = ("constant", "anneal")
REPORT_TO = ("none", "tensorboard")  # experiment trackers (accelerate's); metrics.jsonl and the plots are always written
TRACKER_DIR = "tensorboard"          # <output_dir>/tensorboard: the event files


class TrainingDiverged(ProjectError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-4                 # encoder learning rate
    head_lr: float = None            # heads' learning rate (None = lr)
    weight_decay: float = 0.01       # not applied to biases and LayerNorm weights
    warmup_ratio: float = 0.06       # linear warm-up over this fraction of steps, then linear decay to 0
    max_grad_norm: float = 1.0       # gradient clipping (0 = off)
    task_weights: dict = None        # {task name: loss weight}; tasks not named weigh 1 (0 freezes the head)
    sampling: str = "proportional"   # which rows an epoch sees: proportional | temperature | round-robin (by row group)
    sampling_temperature: float = 2.0  # T of "temperature": group g's share of an epoch ~ n_g^(1/T)
    select_on: str = "mean"          # model selection on validation: mean of the trained tasks' main scores, or a task
    loss_weighting: str = "fixed"    # fixed (task_weights) | uncertainty (learned, started at task_weights)
    keep_embedding: float = 0.0      # weight of the distillation towards the starting encoder's sentence embeddings
    distil_weight: float = 0.0       # with a teacher: weight a of its softened topic / tag distributions (tasks: 1 - a)
    distil_temperature: float = 2.0  # softening temperature T of those distributions
    distil_schedule: str = "constant"  # constant a | anneal: a falls linearly from distil_weight to 0 over training
    freeze_encoder: bool = False     # the whole encoder (embeddings + all layers)
    freeze_layers: int = 0           # the encoder's embeddings plus its lowest N layers
    freeze_tasks: tuple = ()         # task names whose heads stay as they are (no loss, no gradient)
    feature_cache: bool = True       # with a frozen encoder, compute its outputs once and train heads on the cache
    mixed_precision: str = "no"      # no | bf16 | fp16 (CUDA only) | auto (bf16 where the hardware runs it fast)
    seed: int = 42
    output_dir: str = "outputs/run"
    save_every_steps: int = 0        # also checkpoint mid-epoch every N steps (0 = off) ...
    save_every_minutes: float = 5.0  # ... or every N minutes, whichever comes first (0 = off); epoch ends always
    log_every_steps: int = 20        # host sync for losses / non-finite check every N steps (and before saves)
    resume: bool = True              # continue from <output_dir>/checkpoints/last when it exists
    eval_only: bool = False
    eval_batch_size: int = 64
    bucket_batches: int = 50         # length grouping: sort within buckets of this many batches, then shuffle
    show_progress: bool = True
    plots: bool = True
    report_to: str = "none"          # none | tensorboard (accelerate's tracker, event files in <output_dir>/tensorboard)

    def __post_init__(self):
        problems = self.problems(asdict(self))
        if problems:
            raise InputError("TrainConfig: " + "; ".join(f"{name} {message}" for name, message in problems) + ".")

    @staticmethod
    def problems(settings):
        """[(field, what is wrong)] for TrainConfig settings (a dict of fields; missing ones take their defaults):
        the one place these values are checked. main.py reports them under the flags' names (--batch-size ...)."""
        c = {**{f.name: f.default for f in fields(TrainConfig)}, **settings}

        def number(x):
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

        def integer(x):
            return isinstance(x, int) and not isinstance(x, bool)

        checks = [
            ("epochs", integer(c["epochs"]) and c["epochs"] >= (0 if c["eval_only"] else 1),
             "must be an integer >= 1 (0 only with eval_only=True)"),
            ("batch_size", integer(c["batch_size"]) and c["batch_size"] >= 1, "must be >= 1"),
            ("lr", number(c["lr"]) and c["lr"] > 0, "must be > 0"),
            ("head_lr", c["head_lr"] is None or number(c["head_lr"]) and c["head_lr"] > 0, "must be > 0"),
            ("warmup_ratio", number(c["warmup_ratio"]) and 0 <= c["warmup_ratio"] < 1, "must be in [0, 1)"),
            ("task_weights", c["task_weights"] is None or isinstance(c["task_weights"], dict) and all(
                isinstance(k, str) and number(w) and w >= 0 for k, w in c["task_weights"].items()),
             "must map task names to numbers >= 0 (e.g. {'topic': 1, 'ner': 3})"),
            ("freeze_tasks", isinstance(c["freeze_tasks"], (tuple, list)) and all(
                isinstance(k, str) for k in c["freeze_tasks"]), "must be a list of task names"),
            ("sampling", c["sampling"] in SAMPLINGS, f"must be one of {', '.join(SAMPLINGS)}, got {c['sampling']!r}"),
            ("sampling_temperature", number(c["sampling_temperature"]) and c["sampling_temperature"] > 0,
             "must be > 0"),
            ("select_on", isinstance(c["select_on"], str) and c["select_on"] != "", "must be 'mean' or a task name"),
            ("loss_weighting", c["loss_weighting"] in LOSS_WEIGHTINGS,
             f"must be one of {', '.join(LOSS_WEIGHTINGS)}, got {c['loss_weighting']!r}"),
            ("keep_embedding", number(c["keep_embedding"]) and c["keep_embedding"] >= 0,
             f"must be a number >= 0 (0 = off), got {c['keep_embedding']!r}"),
            ("distil_weight", number(c["distil_weight"]) and 0 <= c["distil_weight"] <= 1,
             f"must be in [0, 1] (0 = task losses only), got {c['distil_weight']!r}"),
            ("distil_temperature", number(c["distil_temperature"]) and c["distil_temperature"] > 0,
             f"must be > 0, got {c['distil_temperature']!r}"),
            ("distil_schedule", c["distil_schedule"] in DISTIL_SCHEDULES,
             f"must be one of {', '.join(DISTIL_SCHEDULES)}, got {c['distil_schedule']!r}"),
            ("freeze_layers", integer(c["freeze_layers"]) and c["freeze_layers"] >= 0, "must be >= 0"),
            ("mixed_precision", c["mixed_precision"] in MIXED_PRECISIONS,
             f"must be one of {', '.join(MIXED_PRECISIONS)}, got {c['mixed_precision']!r}"),
            ("save_every_steps", number(c["save_every_steps"]) and c["save_every_steps"] >= 0, "must be >= 0"),
            ("save_every_minutes", number(c["save_every_minutes"]) and c["save_every_minutes"] >= 0, "must be >= 0"),
            ("log_every_steps", integer(c["log_every_steps"]) and c["log_every_steps"] >= 1, "must be >= 1"),
            ("report_to", c["report_to"] in REPORT_TO,
             f"must be one of {', '.join(REPORT_TO)}, got {c['report_to']!r}"),
        ]
        return [(name, message) for name, ok, message in checks if not ok]


# --------------------------------------------------------------------------- freezing and optimizer
def task_weight(config, name):
    return (config.task_weights or {}).get(name, 1.0)


def task_problems(model, config):
    """[message] for config fields naming tasks the model does not have (one place, before any work)."""
    names = set(model.tasks)
    problems = [f"{field}: the model has no task {name!r} (its tasks: {', '.join(model.tasks)})"
                for field, given in (("task_weights", config.task_weights or {}), ("freeze_tasks", config.freeze_tasks))
                for name in given if name not in names]
    if config.select_on != "mean" and config.select_on not in names:
        problems.append(f"select_on: {config.select_on!r} is neither 'mean' nor one of the tasks "
                        f"({', '.join(model.tasks)})")
    return problems


def apply_freezing(model, config):
    """Set requires_grad per the config (a loss weight of 0 freezes its head); return the trainable parameters."""
    c, m = config, model
    problems = task_problems(m, c)
    if problems:
        raise InputError("; ".join(problems) + ".")
    for p in m.parameters():
        p.requires_grad_(True)
    frozen = []
    if c.freeze_encoder and m.task_layers:
        raise InputError(f"freeze_encoder trains the heads on the frozen encoder's outputs, but with task_layers="
                         f"{m.task_layers} the tasks read their own top layers; freeze the shared lower layers with "
                         f"freeze_layers (main.py --freeze-layers N) instead.")
    if c.freeze_encoder:
        frozen += [m.encoder]
    elif c.freeze_layers:
        embeddings, layers = m.encoder.embeddings_and_layers()
        if c.freeze_layers > len(layers):
            raise InputError(f"freeze_layers={c.freeze_layers} but the encoder has {len(layers)} layers; "
                             f"use freeze_encoder=True to freeze all of it.")
        frozen += [embeddings, *layers[:c.freeze_layers]]
    if m.task_layers and not (c.keep_embedding > 0 and not c.freeze_encoder):
        _, layers = m.encoder.embeddings_and_layers()  # the shared top layers feed only the sentence embedding,
        frozen += layers[len(layers) - m.task_layers:]  # which no loss reads here: no gradient would reach them
    trained = trained_task_names(m, c)
    frozen += [m.heads[n] for n in m.tasks if n not in trained]  # weight 0: no gradient would reach it (DDP)
    frozen += [m.branches[n] for n in m.branches if n not in trained]  # a task's own top layers go with its head
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)
    trainable = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
    if (not trainable or not trained) and not c.eval_only:
        raise InputError("Nothing to train: every part is frozen (or every trainable task has loss weight 0). "
                         "Unfreeze a part, or set eval_only=True to only evaluate.")
    return trainable


def trained_task_names(model, config):
    """The tasks this run trains: not frozen, weight > 0."""
    return [n for n in model.tasks if n not in config.freeze_tasks and task_weight(config, n) > 0]


def build_optimizer(trainable, config, loss_weights=()):
    """AdamW with the heads at head_lr and no weight decay on biases and LayerNorm weights; loss_weights (the learned
    log-variances of uncertainty weighting) at head_lr without weight decay."""
    c = config
    groups = {}
    for name, p in trainable:
        head = name.startswith("heads.")  # new parts: head_lr
        decay = p.ndim > 1 and "LayerNorm" not in name and "layer_norm" not in name
        lr = (c.head_lr or c.lr) if head else c.lr
        groups.setdefault((lr, decay), []).append(p)
    # fused AdamW: one kernel over all parameters (measured here: optimizer step 0.15 s -> 0.016 s for MiniLM)
    param_groups = [{"params": ps, "lr": lr, "weight_decay": c.weight_decay if decay else 0.0}
                    for (lr, decay), ps in groups.items()]
    if loss_weights:
        param_groups.append({"params": list(loss_weights), "lr": c.head_lr or c.lr, "weight_decay": 0.0})
    return torch.optim.AdamW(param_groups, fused=True)


# --------------------------------------------------------------------------- task balancing
class LossWeighting(nn.Module):
    """Uncertainty weighting (Kendall, Gal & Cipolla 2018): a learned log-variance s_t per trained task.

    loss = sum_t exp(-s_t) * L_t + s_t (the classification form, without the 0.5 factors). s_t starts at -log(w_t),
    so training starts at the fixed weights w_t. A module of its own, prepared by accelerate like the model: under
    DDP its gradients are all-reduced with the rest, and save_pretrained's model never holds it.
    """

    def __init__(self, initial_weights):
        super().__init__()
        self.log_vars = nn.ParameterDict({task: nn.Parameter(torch.tensor(-math.log(w), dtype=torch.float32))
                                          for task, w in initial_weights.items()})

    def forward(self, losses, n_processes=1):
        """losses: {task: this process's part of the global batch mean}. Each process adds s_t / n_processes, so the
        averaged gradient of n_processes * loss (what the loop back-propagates) is the 1-process gradient."""
        return sum(torch.exp(-s) * losses[task] + s / n_processes for task, s in self.log_vars.items())

    def weights(self):
        """{task: exp(-s_t)}: the current weight of each task's loss."""
        return {task: math.exp(-float(s.detach())) for task, s in self.log_vars.items()}


def sentence_embeddings(model, features, rows, batch_size=64, device=None, precision="no"):
    """Pooled sentence embeddings [len(rows), H] (fp32, CPU) of model.encoder in eval mode (no dropout) for the given
    rows of prepare_features() output, run on device (default: the model's) in precision."""
    ids = features["input_ids"]
    out = model.encoder.embed_ids([ids[i] for i in rows], batch_size, "sentence", precision, device)
    return torch.stack(out) if out else torch.zeros(0, model.encoder.hidden_size)


# --------------------------------------------------------------------------- feature cache
def encode_cache(model, features, rows, device, precision, batch_size, show_progress=False, desc="caching"):
    """Token embeddings of the frozen encoder for the given rows (unpadded, fp32, on CPU); None for other rows."""
    ids, rows = features["input_ids"], list(rows)
    cache = [None] * len(ids)
    tokens = model.encoder.embed_ids([ids[i] for i in rows], batch_size, "token", precision, device,
                                     show_progress_bar=show_progress, desc=desc)
    for i, t in zip(rows, tokens):
        cache[i] = t
    return cache


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


# --------------------------------------------------------------------------- the loss of one step
def distil_weight_at(config, step, total_steps):
    """The teacher's weight a at a step (0-based) of total_steps: distil_weight, or under the "anneal" schedule
    distil_weight * (1 - step / total_steps) (from distil_weight at the first step towards 0 at the last)."""
    if config.distil_schedule == "anneal":
        return config.distil_weight * (1 - step / max(1, total_steps))
    return config.distil_weight


def training_loss(model_out, batch, tasks, counts, config, share, weighting=None, n_processes=1, soft_tasks=(),
                  distil_weight=None):
    """The loss of one process's share of a global batch: (loss to back-propagate, {task: its loss}, soft, embedding).

    Each task's loss is this process's part of its global-batch mean (counts[name]: the global batch's labelled rows,
    or words for tagging; share: 0 for a stand-in row), so DDP's averaged gradient of n_processes * loss is the
    1-process gradient. tasks: the trained tasks ({name: Task}); soft_tasks: those distilled from a teacher
    (batch["teacher.<name>"], soft counts in counts["soft.<name>"]); batch["teacher"]: embedding targets;
    distil_weight: the teacher's weight a at this step (distil_weight_at; None = config.distil_weight).
    """
    c = config
    losses = {n: share * t.loss(model_out[n].float(), batch[n]) / max(1, counts[n]) for n, t in tasks.items()}
    if weighting is None:
        loss = sum(task_weight(c, n) * x for n, x in losses.items())
    else:  # learned weights over the trained tasks (LossWeighting)
        loss = weighting(losses, n_processes)
    soft = torch.zeros((), device=batch["attention_mask"].device)
    if soft_tasks:  # Hinton's T^2 * KL(teacher_T || student_T) per task the teacher has
        temp, a = c.distil_temperature, c.distil_weight if distil_weight is None else distil_weight
        soft = temp * temp * sum(task_weight(c, n) * share * tasks[n].soft_loss(
            model_out[n].float(), batch["teacher." + n], temp) / max(1, counts["soft." + n]) for n in soft_tasks)
        loss = (1 - a) * loss + a * soft
    embedding = torch.zeros((), device=soft.device)
    if "teacher" in batch:  # mean over the global batch's rows of 1 - cos(embedding, teacher's)
        cos = nn.functional.cosine_similarity(model_out["sentence_embedding"].float(), batch["teacher"], dim=-1)
        embedding = share * (1 - cos).sum() / counts["rows"]
        loss = loss + c.keep_embedding * embedding
    return loss, losses, soft, embedding


# --------------------------------------------------------------------------- the trainer
class MultiTaskTrainer:
    """Trains a MultiTaskSentenceTransformer on rows with words and a column per task. See the module docstring."""

    def __init__(self, model, train_rows, val_rows=None, config=None, teacher=None):
        self.config = config = config or TrainConfig()
        if config.distil_weight > 0 and teacher is None:
            raise InputError(f"distil_weight={config.distil_weight} needs a teacher to distil from: "
                             "MultiTaskTrainer(..., teacher=trained_model), or distil_weight=0.")
        self.precision = resolve_mixed_precision(config.mixed_precision)  # "no" | "bf16" | "fp16", this trainer's own
        distributed_state()  # joins the launcher's process group (cpu=True without CUDA), or says why not
        self.accelerator = make_accelerator(config.report_to, config.output_dir)
        check_joined(self.accelerator.num_processes)
        if config.batch_size % self.accelerator.num_processes:
            n = self.accelerator.num_processes
            raise InputError(f"batch_size {config.batch_size} is the global batch and must split evenly over {n} "
                             f"processes; use a multiple of {n} (e.g. --batch-size {config.batch_size // n * n or n}).")
        self.model = model
        self.trainable = apply_freezing(model, config)
        self.train_tasks = {n: model.tasks[n] for n in trained_task_names(model, config)}
        # the distillation needs an encoder that moves (a frozen encoder keeps its embedding exactly)
        self.distill = config.keep_embedding > 0 and not config.freeze_encoder
        # teacher: one trained model (its embeddings are the targets, and its distributions with a > 0) or
        # {task: model} (each task's distribution from its own teacher; embedding targets from the starting encoder)
        self.teacher = teacher if teacher is None or not isinstance(teacher, dict) else None
        self.teachers = task_teachers(model, teacher)  # {task: the model it is distilled from}
        self.soft_tasks = [n for n in self.teachers if n in self.train_tasks] if config.distil_weight > 0 else []
        self.soft = bool(self.soft_tasks)
        self.teacher_id = teachers_fingerprint(teacher)
        self.loss_weighting = None  # the LossWeighting module (unwrapped) while training with uncertainty weighting
        self.train_features = prepare_features(train_rows, model) if train_rows is not None else None
        self.val_features = prepare_features(val_rows, model) if val_rows is not None else None
        if self.train_features is not None:
            self.train_lengths = [len(x) for x in self.train_features["input_ids"]]
            self.counts = label_counts(self.train_features, model.tasks)  # per task, per row: labelled rows / words
            missing = [n for n in self.train_tasks if not any(self.counts[n])]
            if missing and not config.eval_only:
                raise InputError(f"no training row carries labels for task {missing[0]!r} (column "
                                 f"{model.tasks[missing[0]].column!r}); give it data, or freeze it "
                                 f"(freeze_tasks / main.py --freeze {missing[0]}).")
            groups = train_rows["group"] if "group" in (getattr(train_rows, "column_names", None) or train_rows) \
                else None
            self.groups = [int(g) for g in groups] if groups is not None else [0] * len(self.train_lengths)
            self.train_features["group"] = self.groups
        self.pad_id = pad_ids_value(model)
        self.checkpoint_dir = os.path.join(config.output_dir, "checkpoints")
        self.history = []
        self.scaler = None  # torch.amp.GradScaler while training in fp16

    def trained_tasks(self):
        """{task: bool}: which heads the model will have been trained on after this run. A head this run trains
        counts; one it keeps frozen (or weighs 0) counts only if an earlier training taught it (a stage-2 run from a
        trained model), so a head frozen from the start stays marked untrained."""
        before = self.model.trained_tasks or {}
        return {n: n in self.train_tasks or bool(before.get(n)) for n in self.model.tasks}

    def _show_progress(self):
        return self.config.show_progress and self.accelerator.is_main_process

    def epoch_batches(self, epoch):
        """The global batches of an epoch (every process the same), by the sampling choice."""
        c = self.config
        rows = epoch_rows(self.groups, c.sampling, c.sampling_temperature, c.seed, epoch)
        return length_grouped_batches(self.train_lengths, c.batch_size, c.seed, epoch, c.bucket_batches, rows)

    def epoch_composition(self, batches):
        """{task: rows of the epoch that carry its labels}: what one epoch trains each task on."""
        return {n: sum(self.counts[n][i] > 0 for b in batches for i in b) for n in self.model.tasks}

    def batch_counts(self, global_batch):
        """The global batch's labelled rows (words) per trained task, the soft targets' counts, its rows."""
        counts = {n: sum(self.counts[n][i] for i in global_batch) for n in self.train_tasks}
        for n in self.soft_tasks:  # a tagging task's teacher has a distribution for every word of every row
            counts["soft." + n] = (sum(len(self.train_features["positions"][i]) for i in global_batch)
                                   if self.model.tasks[n].kind == "tagging" else len(global_batch))
        counts["rows"] = len(global_batch)
        return counts

    # ----------------------------------------------------------------- the loop
    def train(self):
        """Train for config.epochs, evaluating on the validation rows after every epoch; returns the history."""
        c, acc = self.config, self.accelerator
        if c.eval_only:
            raise InputError("eval_only=True: call evaluate() instead of train().")
        from accelerate.utils import set_seed
        from tqdm.auto import tqdm
        from transformers import get_linear_schedule_with_warmup

        set_seed(c.seed)
        n_proc, rank = acc.num_processes, acc.process_index
        weighting = None
        if c.loss_weighting == "uncertainty":  # the trained tasks only: a frozen task has no loss to weigh
            weighting = self.loss_weighting = LossWeighting({n: task_weight(c, n) for n in self.train_tasks})
        optimizer = build_optimizer(self.trainable, c, weighting.parameters() if weighting else ())
        batches_per_epoch = len(self.epoch_batches(0))
        total_steps = self._total_steps = max(1, batches_per_epoch * c.epochs)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(c.warmup_ratio * total_steps), total_steps)
        if weighting is None:
            model, optimizer = acc.prepare(self.model, optimizer)  # not the scheduler: it steps once per global batch
        else:
            model, weighting, optimizer = acc.prepare(self.model, weighting, optimizer)
        # fp16 (CUDA) scales the loss so small gradients survive; bf16 and fp32 need no scaler
        self.scaler = torch.amp.GradScaler(acc.device.type) if self.precision == "fp16" else None
        self.model.trained_tasks = self.trained_tasks()  # saved with every best_model / model
        state = self._start_or_resume(optimizer, scheduler, batches_per_epoch)
        targets = self._distillation_targets(model, state) if self.distill or self.soft else None  # on the host
        first_epoch, first_start = state["epoch"], time.perf_counter()
        cache, self._val_cache = self._feature_caches(model) if state["epoch"] < c.epochs else (None, None)
        names = list(self.train_tasks)
        running = torch.zeros(len(names) + 3, dtype=torch.float64, device=acc.device)  # tasks, distill, soft, bad
        if c.report_to != "none":  # event files in <output_dir>/tensorboard; the run's settings as hyperparameters
            acc.init_trackers(TRACKER_DIR, config={k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                                   for k, v in asdict(c).items()})
        self._last_save = time.monotonic()

        for epoch in range(state["epoch"], c.epochs):
            epoch_start = first_start if epoch == first_epoch else time.perf_counter()  # + building the cache
            model.train()
            if c.freeze_encoder:
                acc.unwrap_model(model).encoder.eval()  # frozen: no dropout, so cached and live features agree
            batches = self.epoch_batches(epoch)
            if state["step_in_epoch"] == 0:
                state["loss_sums"] = {"tasks": dict.fromkeys(names, 0.0), "distill": 0.0, "soft": 0.0, "n": 0}
            sums = state["loss_sums"]  # part of the checkpoint, so a resumed epoch reports the same mean losses
            bar = tqdm(total=batches_per_epoch, initial=state["step_in_epoch"], desc=f"epoch {epoch + 1}/{c.epochs}",
                       disable=not self._show_progress())
            for step in range(state["step_in_epoch"], batches_per_epoch):
                global_batch = batches[step]  # every process walks the same global batches and takes its share
                rows, share = process_share(global_batch, rank, n_proc, owned_only=cache is not None)
                batch = to_device(self._batch(rows, cache, targets), acc.device)
                with autocast(self.precision, acc.device):  # this trainer's precision, for this forward only
                    out = model(input_ids=batch.get("input_ids"), attention_mask=batch["attention_mask"],
                                token_embeddings=batch.get("token_embeddings"), shape_ids=batch["shape_ids"],
                                positions=positions(batch, self.train_tasks), tasks=names, embedding=self.distill)
                a = distil_weight_at(c, state["global_step"], total_steps)
                loss, losses, soft, embedding = training_loss(out, batch, self.train_tasks,
                                                              self.batch_counts(global_batch), c, share, weighting,
                                                              n_proc, self.soft_tasks, a)
                optimizer.zero_grad(set_to_none=True)
                scaler = self.scaler
                acc.backward(scaler.scale(n_proc * loss) if scaler else n_proc * loss)
                if scaler:
                    scaler.unscale_(optimizer)  # clip the true gradients
                if c.max_grad_norm:
                    acc.clip_grad_norm_([p for _, p in self.trainable], c.max_grad_norm)
                if scaler:
                    scaler.step(optimizer)  # skips the step when a gradient overflowed fp16
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                running += torch.stack([*(losses[n].detach() for n in names), embedding.detach(), soft.detach(),
                                        (~torch.isfinite(loss.detach())).float()]).double()
                sums["n"] += 1
                state["global_step"] += 1
                state["step_in_epoch"] = step + 1
                bar.update(1)
                kill_point("train")  # a test hook (MTST_KILL_AT=train:N), before this step is checkpointed
                last = step + 1 == batches_per_epoch
                save = bool(c.save_every_steps and state["global_step"] % c.save_every_steps == 0) and not last
                if last or save or state["global_step"] % c.log_every_steps == 0:
                    # the one host sync of a logging interval: losses of all processes, the non-finite check
                    # (before any save, so a bad step never reaches a checkpoint) and the minutes clock
                    save_due = self._sync_losses(running, sums, epoch, step)
                    bar.set_postfix({n: f"{v / sums['n']:.3f}" for n, v in sums["tasks"].items()})
                    if (save or save_due) and not last:
                        self._save_checkpoint("last", state, optimizer, scheduler)
                exit_at_step_for_tests(state["global_step"])
            bar.close()
            self._end_epoch(model, epoch, epoch_start, state, optimizer, scheduler, batches)
        if c.report_to != "none":
            acc.end_training()
        self.state = state
        if self.val_features is None and acc.is_main_process:
            acc.unwrap_model(model).save_pretrained(os.path.join(c.output_dir, "best_model"))
        acc.wait_for_everyone()  # best_model is complete before any process reads it
        return self.history

    def _batch(self, rows, cache, targets):
        """This process's rows of a global batch as tensors (host), with the distillation targets of those rows."""
        every_word = [n for n in self.soft_tasks if self.model.tasks[n].kind == "tagging"]
        batch = collate(self.train_features, rows, self.pad_id, cache, self.train_tasks, every_word)
        if self.distill:
            batch["teacher"] = targets["embeddings"][rows]
        for n in self.soft_tasks:  # per row, or per word in collate's (row-major) order
            if self.model.tasks[n].kind == "tagging":
                offsets = targets[n + ".offsets"]
                batch["teacher." + n] = torch.cat([targets[n][offsets[i]:offsets[i + 1]] for i in rows])
            else:
                batch["teacher." + n] = targets[n][rows]
        return batch

    def _end_epoch(self, model, epoch, epoch_start, state, optimizer, scheduler, batches):
        """The epoch's record (mean losses, validation, selection), the best model, the checkpoint and the logs."""
        c, acc = self.config, self.accelerator
        sums, n = state["loss_sums"], max(1, state["loss_sums"]["n"])
        record = {"epoch": epoch + 1, "global_step": state["global_step"],
                  "train_loss": {name: v / n for name, v in sums["tasks"].items()},
                  "train_seconds": time.perf_counter() - epoch_start, "lr": scheduler.get_last_lr()[0],
                  "epoch_rows": self.epoch_composition(batches)}
        if self.distill:
            record["train_distill_loss"] = sums["distill"] / n
        if self.soft:
            record["train_soft_loss"] = sums["soft"] / n
            record["distil_weight"] = distil_weight_at(c, state["global_step"], self._total_steps)
        if self.loss_weighting is not None:  # the learned weights at the epoch's end
            record["loss_weights"] = self.loss_weighting.weights()
            record["log_vars"] = {t: float(v.detach()) for t, v in self.loss_weighting.log_vars.items()}
        if self.val_features is not None:
            record["val"] = self.evaluate_features(self.val_features, self._val_cache, tune_thresholds=True)
            score = self.selection_score(record["val"])
            record["selection_score"] = score
            if score > state["best_score"]:
                state["best_score"], state["best_epoch"] = score, epoch + 1
                if acc.is_main_process:
                    acc.unwrap_model(model).save_pretrained(os.path.join(c.output_dir, "best_model"))
        self.history.append(record)
        state["epoch"], state["step_in_epoch"] = epoch + 1, 0
        self._save_checkpoint("last", state, optimizer, scheduler)
        self._write_logs()
        if c.report_to != "none":
            acc.log(tracker_values(record), step=epoch + 1)
        acc.print(self.format_record(record))

    def _start_or_resume(self, optimizer, scheduler, batches_per_epoch):
        """The loop state: fresh, or from checkpoints/last (which also restores model, optimizer, scheduler, RNG)."""
        c, acc = self.config, self.accelerator
        state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_score": -math.inf, "best_epoch": None,
                 "data": data_fingerprint(self.train_features), "teacher": None,
                 "loss_sums": {"tasks": dict.fromkeys(self.train_tasks, 0.0), "distill": 0.0, "soft": 0.0, "n": 0}}
        if acc.is_main_process:  # folders of a write killed half-way (checkpoint, best_model): tidy or restore
            for folder in (self.checkpoint_dir, c.output_dir):
                recover_interrupted_writes(folder)
        acc.wait_for_everyone()
        if c.resume and os.path.isdir(os.path.join(self.checkpoint_dir, "last")):
            state = self._load_checkpoint(os.path.join(self.checkpoint_dir, "last"), optimizer, scheduler)
            self._write_logs()  # a kill between the last save and the logs must not lose an epoch's line
            acc.print(f"resumed from {self.checkpoint_dir}/last at epoch {state['epoch'] + 1}, "
                      f"step {state['step_in_epoch']} of {batches_per_epoch}")
        return state

    def _feature_caches(self, model):
        """(train, val) caches of the frozen encoder's outputs, each process its own rows only; else (None, None)."""
        c, acc = self.config, self.accelerator
        if not (c.freeze_encoder and c.feature_cache):
            return None, None
        unwrapped, n_proc, rank = acc.unwrap_model(model), acc.num_processes, acc.process_index
        caches = []
        for features, desc in ((self.train_features, "caching encoder outputs"), (self.val_features, "caching val")):
            mine = range(rank, len(features["input_ids"]), n_proc) if features is not None else None
            caches.append(None if features is None else encode_cache(unwrapped, features, mine, acc.device,
                                                                     self.precision, c.eval_batch_size,
                                                                     self._show_progress(), desc))
        return tuple(caches)

    def _distillation_targets(self, model, state):
        """The distillation targets (CPU tensors) of the training rows, computed once: {"embeddings": [N, H]} (the
        sentence embeddings of the encoder as it was when training started, or of the teacher when there is one) and,
        with a teacher and distil_weight > 0, its logits per distilled task: a sentence task's [N, C] under its name, a
        tagging task's [W, T] (every word of every row, row after row) and "<name>.offsets" [N + 1] (row i's
        words are [offsets[i]:offsets[i + 1]]).
        A fresh run computes them (each process its share, then gathered) and stores them in checkpoints/teacher; a
        resumed run reads them back there (checked against the checkpoint's fingerprint), as the encoder they came
        from is gone."""
        from safetensors.torch import load_file, save_file

        c, acc = self.config, self.accelerator
        path = os.path.join(self.checkpoint_dir, "teacher")
        if state.get("teacher") is not None:  # resumed
            try:
                targets = load_file(os.path.join(path, "embeddings.safetensors"))
            except Exception as e:
                raise CheckpointError(f"the distillation targets of the checkpoint are unreadable in {path} "
                                      f"({str(e).splitlines()[0][:200]}); delete {self.checkpoint_dir} (or use another "
                                      "output_dir) to start afresh.") from e
            if targets_fingerprint(targets) != state["teacher"]:
                raise CheckpointError(f"{path} holds other distillation targets than the checkpoint was trained with; "
                                      f"delete {self.checkpoint_dir} (or use another output_dir) to start afresh.")
            return targets
        n_rows, n_proc, rank = len(self.train_features["input_ids"]), acc.num_processes, acc.process_index
        mine = range(rank, n_rows, n_proc)
        from distillation import teacher_outputs

        if self.teacher is None:
            emb = sentence_embeddings(acc.unwrap_model(model), self.train_features, mine, c.eval_batch_size,
                                      acc.device, self.precision)
        per_task = {}
        for teacher in {id(t): t for t in [self.teacher, *self.teachers.values()] if t is not None}.values():
            mine_soft = {n: self.model.tasks[n] for n in self.soft_tasks if self.teachers[n] is teacher}
            if teacher is not self.teacher and not mine_soft:
                continue
            teacher_emb, logits = teacher_outputs(teacher, self.train_features, mine, c.eval_batch_size, acc.device,
                                                  self.precision, mine_soft)
            teacher.to("cpu")  # its outputs are all it is needed for
            per_task.update(logits)
            if teacher is self.teacher:
                emb = teacher_emb
        part = (emb, per_task)
        parts = [(rank, part)]
        if n_proc > 1:  # every process needs every row (its share of a batch can be any row)
            parts = acc.gather_for_metrics(parts, use_gather_object=True)
        embeddings, logits = [None] * n_rows, [None] * n_rows
        for r, (emb, per_task) in parts:
            for j, i in enumerate(range(r, n_rows, n_proc)):
                embeddings[i], logits[i] = emb[j], {n: x[j] for n, x in per_task.items()}
        hidden = self.model.encoder.hidden_size
        targets = {"embeddings": torch.stack(embeddings) if n_rows else torch.zeros(0, hidden)}
        for n in self.soft_tasks:
            task = self.model.tasks[n]
            rows = [x[n] for x in logits]
            if task.kind == "tagging":  # every word of every row, row after row, and where each row starts
                targets[n] = torch.cat(rows) if rows else torch.zeros(0, len(task.labels))
                targets[n + ".offsets"] = torch.tensor([0, *np.cumsum([len(w) for w in rows]).tolist()],
                                                       dtype=torch.long)
            else:
                targets[n] = torch.stack(rows) if rows else torch.zeros(0, len(task.labels))
        if acc.is_main_process:
            atomic_write_dir(path, lambda d: save_file(targets, os.path.join(d, "embeddings.safetensors")))
        acc.wait_for_everyone()
        state["teacher"] = targets_fingerprint(targets)
        return targets

    def _sync_losses(self, running, sums, epoch, step):
        """Add the running loss sums of every process to sums; stop every process on a non-finite loss.

        One all-reduce (one host sync) carries the losses, the count of non-finite steps and whether the main
        process's clock says a checkpoint is due (save_every_minutes), so all processes decide alike.
        Returns whether a time-based checkpoint is due.
        """
        c, acc = self.config, self.accelerator
        minutes = (time.monotonic() - self._last_save) / 60
        due = float(acc.is_main_process and c.save_every_minutes > 0 and minutes >= c.save_every_minutes)
        totals = torch.cat([running, running.new_tensor([due])])
        if acc.num_processes > 1:
            torch.distributed.all_reduce(totals)
        *task_sums, distill_sum, soft_sum, bad, due = totals.tolist()
        running.zero_()
        if bad:
            raise TrainingDiverged(
                f"loss became non-finite (NaN or inf) at epoch {epoch + 1}, by step {step + 1} (checked every "
                f"{c.log_every_steps} steps and before every save); the last good checkpoint is in "
                f"{self.checkpoint_dir}. Lower the learning rate or use mixed_precision='no'.")
        for name, value in zip(sums["tasks"], task_sums):
            sums["tasks"][name] += value
        sums["distill"] += distill_sum
        sums["soft"] += soft_sum
        return due > 0

    def selection_score(self, metrics):
        """Model selection on validation: the mean of the trained tasks' main scores (accuracy, micro-F1, entity F1),
        or the named task's (select_on); tasks no validation row carries are left out."""
        tasks = self.model.tasks
        names = [self.config.select_on] if self.config.select_on != "mean" else list(self.train_tasks) or list(tasks)
        scores = [main_score(tasks[n], metrics["tasks"][n]) for n in names]
        scores = [s for s in scores if s is not None]
        return float(np.mean(scores)) if scores else 0.0

    def format_record(self, r):
        text = f"epoch {r['epoch']}: loss " + " ".join(f"{n} {v:.4f}" for n, v in r["train_loss"].items()) + \
            f" ({r['train_seconds']:.0f}s)"
        if "train_distill_loss" in r:
            text += f" distill {r['train_distill_loss']:.4f}"
        if "train_soft_loss" in r:
            text += f" soft {r['train_soft_loss']:.4f}"
        if "loss_weights" in r:
            text += " | weights " + " ".join(f"{t} {w:.3f}" for t, w in r["loss_weights"].items())
        if r["epoch"] == 1 or self.config.sampling != "proportional":
            text += " | rows per task " + " ".join(f"{n} {k}" for n, k in r["epoch_rows"].items())
        if "val" in r:
            text += " | val " + " ".join(f"{n} {fmt(main_score(self.model.tasks[n], m))}"
                                         for n, m in r["val"]["tasks"].items())
        return text

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, rows):
        """Metrics of the model being trained on rows (evaluation.evaluate); sharded over processes under DDP."""
        return self.evaluate_features(prepare_features(rows, self.model))

    def evaluate_features(self, features, cache=None, tune_thresholds=False):
        return evaluate(self.accelerator.unwrap_model(self.model), features, self.config.eval_batch_size,
                        self.precision, cache, self.accelerator, tune_thresholds)

    # ----------------------------------------------------------------- checkpoints and logs
    def _save_checkpoint(self, name, state, optimizer, scheduler):
        """model + optimizer + scheduler + every process's RNG + position (checkpoints.write_checkpoint)."""
        acc = self.accelerator
        rngs = acc.gather_for_metrics([rng_state()], use_gather_object=True)  # one per process, in rank order
        if acc.is_main_process:
            model = acc.unwrap_model(self.model)
            trainer_state = {**state, "history": self.history, "config": asdict(self.config),
                             "run": run_settings(model, acc, self.precision, self.teacher_id)}
            write_checkpoint(os.path.join(self.checkpoint_dir, name), model, optimizer, scheduler, rngs, trainer_state,
                             self.loss_weighting, self.scaler)
        self._last_save = time.monotonic()
        acc.wait_for_everyone()

    def _load_checkpoint(self, path, optimizer, scheduler):
        """Every process loads the checkpoint onto its own device, after checking that it is this run's."""
        acc = self.accelerator
        model = acc.unwrap_model(self.model)
        saved = read_trainer_state(path, self.checkpoint_dir)
        check_resumable(saved, self.checkpoint_dir, data_fingerprint(self.train_features), self.config,
                        run_settings(model, acc, self.precision, self.teacher_id))
        rng = load_checkpoint_weights(path, self.checkpoint_dir, acc, model, optimizer, scheduler,
                                      self.loss_weighting, self.scaler)
        set_rng_state(rng)
        self.history = saved.pop("history")
        saved.pop("config", None)
        saved.pop("run", None)
        return saved

    def _write_logs(self):
        """metrics.jsonl (one line per epoch, rewritten whole so a resumed run has no duplicates) and plots."""
        if not self.accelerator.is_main_process or not self.history:
            return
        os.makedirs(self.config.output_dir, exist_ok=True)
        path = os.path.join(self.config.output_dir, "metrics.jsonl")
        write_text_atomic(path, "".join(json.dumps(record) + "\n" for record in self.history))
        if self.config.plots:
            plot_history(self.history, os.path.join(self.config.output_dir, "training_curves.png"))


def tracker_values(record):
    """An epoch record as flat scalars for the experiment tracker: train/*, val/*, lr, loss weights."""
    values = {f"train/{n}_loss": v for n, v in record["train_loss"].items()}
    values.update({"train/seconds": record["train_seconds"], "lr": record["lr"]})
    if "train_distill_loss" in record:
        values["train/distill_loss"] = record["train_distill_loss"]
    if "train_soft_loss" in record:
        values["train/soft_loss"] = record["train_soft_loss"]
    for task, weight in record.get("loss_weights", {}).items():
        values[f"train/loss_weight_{task}"] = weight
    val = record.get("val")
    if val is not None:
        for name, m in val["tasks"].items():
            for key, v in (m or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    values[f"val/{name}/{key}"] = v
        values["val/selection_score"] = record["selection_score"]
    return {k: float(v) for k, v in values.items() if v is not None}


def fmt(score):
    """A metric for printing: 4 decimals, or '-' for a task no row carries (None)."""
    return "-" if score is None else f"{score:.4f}"
