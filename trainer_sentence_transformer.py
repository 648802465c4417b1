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
from dataclasses import asdict
from functools import partial

import numpy as np
import torch
from accelerate.utils import set_seed
from torch import nn
from tqdm.auto import tqdm

from atomic_io import (
    exit_at_step_for_tests,
    kill_point,
    recover_interrupted_writes,
    write_text_atomic,
)
from batching import (
    collate,
    epoch_rows,
    feature_rows,
    label_counts,
    length_grouped_batches,
    pad_ids_value,
    positions,
    prepare_features,
    to_device,
)
from checkpoints import (
    check_resumable,
    data_fingerprint,
    load_checkpoint_weights,
    read_trainer_state,
    rng_state,
    run_settings,
    set_rng_state,
    write_checkpoint,
)
from distil_targets import (
    batch_targets,
    compute_targets,
    distil_weight_at,
    embedding_loss,
    load_targets,
    soft_counts,
    soft_loss,
    store_targets,
    task_teachers,
    teachers_fingerprint,
)
from distributed import check_joined, distributed_state, make_accelerator, process_share
from errors import InputError, ProjectError
from evaluation import evaluate, main_score
from freezing import apply_freezing, trained_task_names
from metrics import fmt
from multi_task_sentence_transformer import TOKENS
from plots import plot_history
from precision import autocast, resolve_mixed_precision
from train_config import TrainConfig, task_weight

TRACKER_DIR = "tensorboard"          # <output_dir>/tensorboard: the event files


class TrainingDiverged(ProjectError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# --------------------------------------------------------------------------- optimizer
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


# --------------------------------------------------------------------------- feature cache
def encode_cache(model, features, rows, batch_size, precision, progress=None):
    """Token embeddings of the frozen encoder for the given rows (unpadded, fp32, on CPU); None for other rows."""
    ids, rows = features["input_ids"], list(rows)
    cache = [None] * len(ids)
    for i, out in zip(rows, model.run(feature_rows(features, rows), [TOKENS], batch_size, precision, progress=progress)):
        cache[i] = out[TOKENS]
    return cache


# --------------------------------------------------------------------------- the loss of one step
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
    soft = embedding = torch.zeros((), device=batch["attention_mask"].device)
    if soft_tasks:  # (1 - a) * task losses + a * the teachers' soft losses
        a = c.distil_weight if distil_weight is None else distil_weight
        soft = soft_loss(model_out, batch, tasks, soft_tasks, counts, c, share)
        loss = (1 - a) * loss + a * soft
    if "teacher" in batch:  # keep the sentence embedding near its target
        embedding = embedding_loss(model_out, batch, counts, share)
        loss = loss + c.keep_embedding * embedding
    return loss, losses, soft, embedding


# --------------------------------------------------------------------------- the trainer
class MultiTaskTrainer:
    """Trains a MultiTaskSentenceTransformer on rows with words and a column per task. See the module docstring."""

    def __init__(self, model, train_rows, val_rows=None, config=None, teacher=None):
        self.config = config = config or TrainConfig()
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
        # keeping the embedding needs an encoder that moves (a frozen encoder keeps its embedding exactly)
        self.keep_embedding_on = config.keep_embedding > 0 and not config.freeze_encoder
        # teacher: one trained model (its embeddings are the targets, and its distributions with a > 0) or
        # {task: model} (each task's distribution from its own teacher; embedding targets from the starting encoder)
        self.embedding_teacher = teacher if teacher is None or not isinstance(teacher, dict) else None
        self.teachers = task_teachers(model, teacher)  # {task: the model it is distilled from}
        self.soft_tasks = [n for n in self.teachers if n in self.train_tasks] if config.distil_weight > 0 else []
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
        counts.update(soft_counts(self.model.tasks, self.soft_tasks, self.train_features, global_batch))
        counts["rows"] = len(global_batch)
        return counts

    # ----------------------------------------------------------------- the loop
    def train(self):
        """Train for config.epochs, evaluating on the validation rows after every epoch; returns the history."""
        c, acc = self.config, self.accelerator
        if c.eval_only:
            raise InputError("eval_only=True: call evaluate() instead of train().")
        set_seed(c.seed)
        model, weighting, optimizer, scheduler, batches_per_epoch = self._prepare()
        state = self._start_or_resume(optimizer, scheduler, batches_per_epoch)
        targets = self.distillation_targets(model, state) if self.keep_embedding_on or self.soft_tasks else None
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
                loss, losses, soft, embedding = self._step(model, batches[step], cache, targets, state["global_step"],
                                                           optimizer, scheduler, weighting)
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

    def _prepare(self):
        """(model, loss weighting, optimizer, scheduler, batches per epoch) of a run, the first three through
        accelerate (DDP, the device); with fp16 a loss scaler."""
        from transformers import get_linear_schedule_with_warmup  # transformers: heavy, loaded on first use

        c, acc = self.config, self.accelerator
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
        return model, weighting, optimizer, scheduler, batches_per_epoch

    def _step(self, model, global_batch, cache, targets, global_step, optimizer, scheduler, weighting):
        """One optimizer step on this process's share of a global batch; returns training_loss's parts."""
        c, acc = self.config, self.accelerator
        n_proc = acc.num_processes
        # every process walks the same global batches and takes its share
        rows, share = process_share(global_batch, acc.process_index, n_proc, owned_only=cache is not None)
        batch = to_device(self._batch(rows, cache, targets), acc.device)
        with autocast(self.precision, acc.device):  # this trainer's precision, for this forward only
            out = model(input_ids=batch.get("input_ids"), attention_mask=batch["attention_mask"],
                        token_embeddings=batch.get("token_embeddings"), shape_ids=batch["shape_ids"],
                        positions=positions(batch, self.train_tasks), tasks=list(self.train_tasks),
                        embedding=self.keep_embedding_on)
        a = distil_weight_at(c, global_step, self._total_steps)
        loss, losses, soft, embedding = training_loss(out, batch, self.train_tasks, self.batch_counts(global_batch),
                                                      c, share, weighting, n_proc, self.soft_tasks, a)
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
        return loss, losses, soft, embedding

    def _batch(self, rows, cache, targets):
        """This process's rows of a global batch as tensors (host), with the distillation targets of those rows."""
        batch = collate(self.train_features, rows, self.pad_id, cache, self.train_tasks, self.soft_tasks)
        if targets is not None:  # a soft task's targets cover every unit (word) of a row: collate gives them all
            batch.update(batch_targets(targets, rows, self.soft_tasks, self.keep_embedding_on))
        return batch

    def _end_epoch(self, model, epoch, epoch_start, state, optimizer, scheduler, batches):
        """The epoch's record (mean losses, validation, selection), the best model, the checkpoint and the logs."""
        c, acc = self.config, self.accelerator
        sums, n = state["loss_sums"], max(1, state["loss_sums"]["n"])
        record = {"epoch": epoch + 1, "global_step": state["global_step"],
                  "train_loss": {name: v / n for name, v in sums["tasks"].items()},
                  "train_seconds": time.perf_counter() - epoch_start, "lr": scheduler.get_last_lr()[0],
                  "epoch_rows": self.epoch_composition(batches)}
        if self.keep_embedding_on:
            record["train_distill_loss"] = sums["distill"] / n
        if self.soft_tasks:
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
                 "data": data_fingerprint(self.train_features), "targets_fingerprint": None,
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
            progress = partial(tqdm, desc=desc, unit="batch", disable=not self._show_progress())
            caches.append(None if features is None else encode_cache(unwrapped, features, mine, c.eval_batch_size,
                                                                     self.precision, progress))
        return tuple(caches)

    def distillation_targets(self, model, state):
        """The distillation targets of the training rows (distil_targets' module docstring), computed once: a fresh
        run computes them and stores them in checkpoints/teacher, a resumed run reads them back there (checked against
        the checkpoint's fingerprint), as the encoder they came from is gone."""
        path = os.path.join(self.checkpoint_dir, "teacher")
        fingerprint = state.get("targets_fingerprint", state.get("teacher"))  # "teacher": checkpoints before 2026-12
        if fingerprint is not None:
            return load_targets(path, fingerprint, self.checkpoint_dir)
        targets = compute_targets(self.accelerator.unwrap_model(model), self.embedding_teacher, self.teachers,
                                  self.soft_tasks, self.train_features, self.accelerator, self.config.eval_batch_size,
                                  self.precision)
        state["targets_fingerprint"] = store_targets(targets, path, self.accelerator)
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

