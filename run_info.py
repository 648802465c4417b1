"""What ran where: the commit, the command, the machine (CPU model and whether it has bf16 instructions, or the GPU),
the library versions and the date, recorded in results.json so every reported number names its provenance."""
import datetime
import os
import platform
import shlex
import subprocess
import sys

import torch

from precision import cpu_has_fast_bf16

_AT_START = {}  # record_start(): the commit and date when the run began, before any file could change under it


def record_start():
    """Note the commit and date now (main.py calls it first): results.json then names the code that was loaded at
    the start, even when the checkout changes while a long run trains."""
    _AT_START.update(commit=git_commit(), date=datetime.date.today().isoformat())


def git_commit(folder=None):
    """The checkout's commit (short hash, '+dirty' when files differ from it), or None outside a git checkout."""
    folder = folder or os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+dirty" if dirty else "")) or None


def cpu_model(cpuinfo="/proc/cpuinfo"):
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    """'<n> x <GPU name>' on CUDA, else '<CPU model>, <n> cores, bf16 instructions: yes|no'."""
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"{cpu_model()}, {os.cpu_count()} cores, bf16 instructions: {'yes' if cpu_has_fast_bf16() else 'no'}"


def run_info():
    import transformers  # transformers: heavy, loaded on first use

    n = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = ["torchrun", "--nproc_per_node", str(n)] if n > 1 else ["python"]
    start = _AT_START or {"commit": git_commit(), "date": datetime.date.today().isoformat()}
    return {"commit": start["commit"], "command": shlex.join(launcher + sys.argv), "machine": machine(),
            "date": start["date"], "torch": torch.__version__,
            "transformers": transformers.__version__}
