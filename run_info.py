"""What ran where: the commit, the command, the machine (CPU model and whether it has bf16 instructions, or the GPU),
the library versions and the date, recorded in results.json so every reported number names its provenance."""
import datetime
import os
import platform
import shlex
import subprocess
import sys

import torch

from precision import cpu_has_fast_bf16, cpu_info_text

# The CPU kinds measurements are made on, named so in docs/*.md (their machine table describes each; the docs
# name no other): what bf16 and int8 do differs by kind, so every CPU figure says which kind gave it.
CPU_KINDS = {
    "Xeon-AMX": "Intel Xeon with AVX-512, `avx512_bf16` and AMX (`amx_bf16`): `auto` = bf16, weights cast once",
    "Xeon-bf16": "Intel Xeon with AVX-512, `avx512_bf16` and VNNI, no AMX: `auto` = fp32 (bf16 measured slower)",
    "Xeon": "Intel Xeon with AVX-512, no bf16 instructions: `auto` = fp32",
    "EPYC-bf16": "AMD EPYC with `avx512_bf16` and VNNI, no AMX: `auto` = bf16 (autocast)",
    "EPYC": "AMD EPYC with AVX2 only, no bf16 instructions: `auto` = fp32",
}
# (vendor_id, the flags that tell the kind) of each, most specific first (cpu_kind).
CPU_FLAGS = {"Xeon-AMX": ("GenuineIntel", ("avx512_bf16", "amx_bf16")), "Xeon-bf16": ("GenuineIntel", ("avx512_bf16",)),
             "Xeon": ("GenuineIntel", ("avx512f",)), "EPYC-bf16": ("AuthenticAMD", ("avx512_bf16",)),
             "EPYC": ("AuthenticAMD", ())}
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


def cpu_kind(cpuinfo="/proc/cpuinfo"):
    """Which of CPU_KINDS this CPU is (read from its vendor and flags, not from the MTST_CPU_* overrides), or None."""
    text = cpu_info_text(cpuinfo)
    if not text:
        return None
    vendor = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("vendor_id")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return next((name for name, (v, needed) in CPU_FLAGS.items() if v == vendor and set(needed) <= flags), None)


def cpu_flags_line(cpuinfo="/proc/cpuinfo"):
    """One line naming the CPU, its kind and the flags that decide its precisions (bf16, AMX, VNNI), for benchmarks."""
    text = cpu_info_text(cpuinfo)
    flags = " ".join(f"{flag} {'yes' if flag in text else 'no'}" for flag in ("avx512_bf16", "amx_bf16", "avx512_vnni",
                                                                             "avx_vnni"))
    return (f"CPU: {cpu_model(cpuinfo)} ({cpu_kind(cpuinfo) or 'another CPU kind'}), {os.cpu_count()} cores; {flags}; "
            f"auto = {'bf16' if cpu_has_fast_bf16(cpuinfo) else 'fp32'}")


def machine():
    """'<n> x <GPU name>' on CUDA, else '<CPU model> (<CPU kind>), <n> cores, auto = bf16|fp32' (what `auto` precision
    runs there)."""
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return (f"{cpu_model()} ({cpu_kind() or 'another CPU kind'}), {os.cpu_count()} cores, auto = "
            f"{'bf16' if cpu_has_fast_bf16() else 'fp32'}")


def run_info():
    import transformers  # transformers: heavy, loaded on first use

    n = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = ["torchrun", "--nproc_per_node", str(n)] if n > 1 else ["python"]
    start = _AT_START or {"commit": git_commit(), "date": datetime.date.today().isoformat()}
    return {"commit": start["commit"], "command": shlex.join(launcher + sys.argv), "machine": machine(),
            "date": start["date"], "torch": torch.__version__,
            "transformers": transformers.__version__}
