"""Training checkpoints: what a checkpoint folder holds, how it is written and read back, and the checks that refuse
to resume another run from it. The trainer (trainer_sentence_transformer.MultiTaskTrainer) calls these; every check a
resume makes lives here.

    checkpoints/<name>/model.safetensors     the model's state dict (heads and encoder)
    checkpoints/<name>/training_state.pt     optimizer, scheduler, every process's RNG, loss weighting, grad scaler
    checkpoints/<name>/trainer_state.json    position (epoch, step), best score, history, config, run settings

    write_checkpoint(folder, model, optimizer, scheduler, rngs, trainer_state)   # temp folder, then renamed
    saved = read_trainer_state(folder, checkpoint_dir)                           # CheckpointError when torn
    check_resumable(saved, checkpoint_dir, data_fingerprint(features), config, run_settings(...))
    rng = load_checkpoint_weights(folder, checkpoint_dir, accelerator, model, optimizer, scheduler)

A resumed run must share the training data (data_fingerprint), every TrainConfig field except RESUME_MAY_DIFFER, and
the run settings (process count, resolved precision, pooling, dropout, the teacher's weights). Importing this module
loads no model or data.
"""
import hashlib
import json
import os
import random
from dataclasses import asdict

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from atomic_io import atomic_write_dir
from errors import ProjectError

FILES = ("model.safetensors", "training_state.pt", "trainer_state.json")


class CheckpointError(ProjectError, RuntimeError):
    """A checkpoint directory is incomplete or does not fit the model being trained."""


# --------------------------------------------------------------------------- fingerprints and resume checks
def tensor_fingerprint(tensor):
    return hashlib.sha1(tensor.contiguous().numpy().tobytes()).hexdigest()


def targets_fingerprint(targets):
    """The embeddings' fingerprint alone (as checkpoints before teacher logits had), else one over every target."""
    if set(targets) == {"embeddings"}:
        return tensor_fingerprint(targets["embeddings"])
    return tensor_fingerprint(torch.cat([targets[k].double().flatten() for k in sorted(targets)]))


def rng_state():
    """This process's RNG states as tensors and plain types, so torch.load(weights_only=True) reads them."""
    py, np_state = random.getstate(), np.random.get_state()
    return {"python": py, "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}


def set_rng_state(state):
    random.setstate(tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


# TrainConfig settings a resumed run may change: where and how it reports, how often it checkpoints, how it batches
# evaluation. Every other field (a new one too) must equal the checkpoint's, or two runs would be mixed.
RESUME_MAY_DIFFER = ("output_dir", "resume", "show_progress", "plots", "save_every_steps", "save_every_minutes",
                     "log_every_steps", "eval_batch_size", "eval_only", "report_to")


def run_settings(model, accelerator, precision, teacher=None):
    """What a resumed run must share beyond the config: the process count, resolved precision, the model's
    pooling, its tasks (kind, name, labels, dropout: not a multi-label threshold, which training tunes) and attention
    dropout (the same flags can resolve differently on another machine), the teacher's weights."""
    tasks = [{k: v for k, v in t.config().items() if k != "threshold"} for t in model.tasks.values()]
    return {"num_processes": accelerator.num_processes, "precision": precision, "pooling": model.encoder.pooling,
            "tasks": tasks, "attention_dropout": model.encoder.attention_dropout, "teacher": teacher}


def weights_fingerprint(model):
    """sha1 of a model's parameters and buffers (names and bytes): which teacher a run distils from."""
    h = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def data_fingerprint(features):
    values = [[name, [list(v) if isinstance(v, tuple) else v for v in features["values"][name]]]
              for name in sorted(features["values"])]
    payload = json.dumps([features["input_ids"], values, features.get("group")])
    return hashlib.sha1(payload.encode()).hexdigest()


def check_resumable(saved, checkpoint_dir, fingerprint, config, run):
    """Refuse a checkpoint of another run (data, settings, process count, precision, pooling, dropout)."""
    if saved.get("data") != fingerprint:
        raise CheckpointError(
            f"{checkpoint_dir} holds a run on other training data; use another output_dir, delete the "
            "checkpoints, or set resume=False.")
    current = json.loads(json.dumps(asdict(config)))  # as the checkpoint stores it (tuples become lists)
    changed = [f"{k} differ" for k in sorted(current)
               if k not in RESUME_MAY_DIFFER and saved.get("config", {}).get(k) != current[k]]
    changed += [f"{k} differ (checkpoint {_short(saved.get('run', {}).get(k))}, now {_short(v)})"
                for k, v in run.items() if saved.get("run", {}).get(k) != v]
    if changed:
        raise CheckpointError(
            f"{checkpoint_dir} holds a run with other settings ({'; '.join(changed)}); resuming it would mix two "
            "runs. Resume with the same settings (process count too), or use another output_dir, delete the "
            "checkpoints, or set resume=False.")



def _short(value, n=160):
    text = repr(value)
    return text if len(text) <= n else text[:n] + "..."


# --------------------------------------------------------------------------- writing and reading a checkpoint
def write_checkpoint(folder, model, optimizer, scheduler, rngs, trainer_state, loss_weighting=None, scaler=None):
    """The three files of a checkpoint, written to a temp folder beside `folder` and renamed (atomic_io)."""

    def write(directory):
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  os.path.join(directory, "model.safetensors"))
        extra = {} if loss_weighting is None else {"loss_weighting": loss_weighting.state_dict()}
        if scaler is not None:  # fp16's loss scale, so a resumed run scales exactly alike
            extra["grad_scaler"] = scaler.state_dict()
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rngs, **extra},
                   os.path.join(directory, "training_state.pt"))
        with open(os.path.join(directory, "trainer_state.json"), "w") as f:
            json.dump(trainer_state, f)

    atomic_write_dir(folder, write)


def read_trainer_state(folder, checkpoint_dir):
    """trainer_state.json of a checkpoint folder; CheckpointError naming the fix when a file is missing or torn."""
    missing = [n for n in FILES if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise CheckpointError(f"checkpoint '{folder}' is incomplete (missing {', '.join(missing)}); delete it to "
                              "start afresh, or set resume=False.")
    try:
        with open(os.path.join(folder, "trainer_state.json")) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint '{folder}' is unreadable ({e}); delete {checkpoint_dir} (or use "
                              "another output_dir) to start afresh.") from e


def load_checkpoint_weights(folder, checkpoint_dir, accelerator, model, optimizer, scheduler, loss_weighting=None,
                            scaler=None):
    """Model, optimizer, scheduler (and loss weighting, grad scaler) from the checkpoint onto this process's device;
    returns this process's RNG state. weights_only: a shared folder cannot run code."""
    device = "cpu" if accelerator.device.type == "cpu" else str(accelerator.device)  # safetensors refuses "cpu:0"
    try:
        model.load_state_dict(load_file(os.path.join(folder, "model.safetensors"), device=device))
        extra = torch.load(os.path.join(folder, "training_state.pt"), map_location=device, weights_only=True)
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
        if loss_weighting is not None:  # the learned log-variances, exactly
            loss_weighting.load_state_dict(extra["loss_weighting"])
        if scaler is not None and "grad_scaler" in extra:
            scaler.load_state_dict(extra["grad_scaler"])
        return extra["rng"][accelerator.process_index]
    except Exception as e:  # torn or foreign files: safetensors, unpickling and shape errors alike
        raise CheckpointError(
            f"checkpoint '{folder}' does not fit this model or run ({str(e).splitlines()[0][:200]}); "
            f"delete {checkpoint_dir} (or use another output_dir) to start afresh.") from e
