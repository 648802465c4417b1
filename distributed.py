"""Several processes: joining a launcher's process group, the Accelerator a trainer runs through, and each process's
share of a global batch.

torchrun / accelerate launch start N processes; on a machine without CUDA, accelerate joins their (gloo) group only when
told it is on the CPU, so distributed_state() always says so, and check_joined() refuses a launch this process did not
join (N silent copies each training alone). make_accelerator() gives every trainer an fp32 Accelerator: the trainer
applies its own precision (see its docstring).
"""
import os

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState

from errors import InputError


def distributed_state():
    """accelerate's process state, joined to the process group a launcher (torchrun, accelerate launch) set up.

    Without CUDA it must be created with cpu=True: otherwise each CPU process started by torchrun silently trains
    alone. A launch of several processes that this process did not join is an error, never N silent copies.
    """
    state = PartialState(cpu=not torch.cuda.is_available())
    check_joined(state.num_processes)
    return state


def make_accelerator(report_to="none", output_dir=None):
    """The Accelerator a trainer runs through: processes, devices, DDP, gathering; never precision.

    accelerate keeps one process-wide state whose mixed precision is fixed by the first Accelerator, so a second
    trainer asking for another precision would fail ("AcceleratorState has already been initialized"), and a
    prepared model's forward would stay wrapped in the first trainer's autocast. So every trainer's Accelerator runs
    in fp32 ("no") and the trainer applies its own precision per forward (precision.autocast, plus a GradScaler for
    fp16): any number of trainers in one process, each in its own precision. Where an Accelerator made elsewhere
    already fixed another precision, this one is told not to apply it (no autocast wrapper, no scaler)."""
    cpu = not torch.cuda.is_available()
    fixed = AcceleratorState._shared_state != PartialState._shared_state  # initialised earlier in this process
    fixed_precision = fixed and AcceleratorState._shared_state.get("_mixed_precision", "no") != "no"
    tracking = {} if report_to == "none" else {"log_with": report_to, "project_dir": output_dir}
    accelerator = Accelerator(mixed_precision=None if fixed_precision else "no", cpu=cpu, **tracking)
    if accelerator.native_amp or accelerator.scaler is not None:
        accelerator.native_amp, accelerator.scaler = False, None  # prepare() must not wrap forward in autocast
    return accelerator


def check_joined(num_processes):
    """Raise if a launcher started several processes (WORLD_SIZE, a process group) but we see another number."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        launched = torch.distributed.get_world_size()
    if launched != num_processes:
        raise InputError(
            f"{launched} processes were launched (WORLD_SIZE / process group) but this one runs as 1 of "
            f"{num_processes}: each would train alone. Create accelerate's state through "
            "distributed.distributed_state() (Accelerator(cpu=True) on a machine without CUDA) "
            "before any other PartialState/Accelerator, or launch a single process.")


def process_share(batch, rank, n_processes, owned_only):
    """This process's rows of one global batch, and its loss weight (0 with a stand-in row when it has none).

    owned_only (feature cache): only rows i with i % n_processes == rank, the rows this process cached; otherwise
    every n-th row from position rank, the most even split. Every process must run a step, so one without rows
    runs a stand-in row whose loss counts 0 (DDP's gradient all-reduce needs every process).
    """
    rows = [i for i in batch if i % n_processes == rank] if owned_only else batch[rank::n_processes]
    if rows:
        return rows, 1.0
    return [rank if owned_only else batch[0]], 0.0
