"""Numeric precision: which one a call runs in, and the autocast that gives it.

One resolver for training and inference. Precisions are named as the user names them:
  inference (encode / predict): auto | fp32 | bf16 | fp16 (CUDA only) | fast (an exported ONNX Runtime model, CPU)
  training (TrainConfig.mixed_precision, main.py --mixed-precision): auto | no | bf16 | fp16 (CUDA only)
'auto' picks bf16 on a CUDA GPU that supports it (fp16 on an older one) and on the CPU kinds where bf16 measured faster
than fp32 (FAST_BF16: AMX, or an AMD EPYC with AVX512-BF16); elsewhere fp32.

    with autocast("bf16", device):   # torch.autocast for bf16 / fp16, nothing for fp32
        out = model(...)
    weights = inference_weights(model, "bf16", n_rows, batch_size)   # bf16, many batches: weights cast once
    out = run_in_precision(model, "bf16", device, weights, ...)

Precision is applied per call (autocast, or weights cast for that call), never stored in a model or in process-wide
state, so any number of trainers and inference calls in one process each run in the precision they asked for, in any
order.

MTST_CPU_BF16=1 (or 0) overrides the CPU detection: tests use it to run the bf16 / fp32 `auto` paths on any machine.
MTST_CPU_AMX=1 (or 0) likewise overrides the AMX detection that picks how a bf16 call runs (inference_weights).
"""
import contextlib
import os

import torch

from errors import InputError

# One vocabulary: a call runs in "fp32", "bf16", "fp16" (CUDA) or "fast" (an exported ONNX Runtime graph, CPU
# inference only); "auto" picks by the device. "no" (accelerate's and MIXED_PRECISION's name for fp32) is taken
# everywhere as "fp32", and nothing returns it.
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "fast")   # inference
MIXED_PRECISIONS = ("no", "fp32", "bf16", "fp16", "auto")  # training
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CPU_BF16_ENV = "MTST_CPU_BF16"
CPU_AMX_ENV = "MTST_CPU_AMX"


# Where bf16 runs faster than fp32, as measured on the CPU kinds of run_info.CPU_KINDS (docs/benchmarks.md): a CPU with
# AMX tiles (Xeon-AMX: predict 1.15-1.19x, weights cast once) and an AMD EPYC with avx512_bf16 (EPYC-bf16: predict about
# 2x fp32 under autocast). On an Intel Xeon with avx512_bf16 but no AMX (Xeon-bf16) bf16 ran at 0.62x fp32 (predict of
# the default model) and 0.56x (a Linear alone), 2026-12-07, so `auto` stays fp32 there. Each entry: words that must
# all be in /proc/cpuinfo (its vendor and flags).
FAST_BF16 = (("amx_bf16",), ("AuthenticAMD", "avx512_bf16"))


def cpu_info_text(cpuinfo="/proc/cpuinfo"):
    """The text of /proc/cpuinfo (its vendor, model and flags), "" where there is none (not Linux)."""
    try:
        with open(cpuinfo) as f:
            return f.read()
    except OSError:
        return ""


def cpu_has_vnni(cpuinfo="/proc/cpuinfo"):
    """Int8 units with VNNI (AVX512-VNNI or AVX-VNNI) in /proc/cpuinfo."""
    text = cpu_info_text(cpuinfo)
    return "avx512_vnni" in text or "avx_vnni" in text


def _cpu_has(word_sets, env, what, cpuinfo):
    """True where /proc/cpuinfo holds every word of any of word_sets; the environment variable env (1 / 0) overrides
    the reading."""
    forced = os.environ.get(env, "").strip().lower()
    if forced:
        if forced not in ("1", "true", "yes", "0", "false", "no"):
            raise InputError(f"{env}={forced!r}: set it to 1 (as a CPU with {what}) or 0 (without), or unset it to "
                             "read the CPU's own flags.")
        return forced in ("1", "true", "yes")
    listed = cpu_info_text(cpuinfo)
    return bool(listed) and any(all(word in listed for word in words) for words in word_sets)


def cpu_has_fast_bf16(cpuinfo="/proc/cpuinfo"):
    """True on the CPU kinds where bf16 was measured faster than fp32 (FAST_BF16: AMX, or an AMD EPYC with
    AVX512-BF16); elsewhere bf16 is slower. MTST_CPU_BF16=1/0 overrides the detection."""
    return _cpu_has(FAST_BF16, CPU_BF16_ENV, "fast bf16", cpuinfo)


def cpu_has_amx(cpuinfo="/proc/cpuinfo"):
    """True where the CPU has AMX bf16 tiles (amx_bf16). MTST_CPU_AMX=1/0 overrides the detection."""
    return _cpu_has((("amx_bf16",),), CPU_AMX_ENV, "AMX", cpuinfo)


def resolve_precision(precision, device, fast_available=False):
    """The precision a call runs in: 'fp32', 'bf16', 'fp16' (CUDA only) or 'fast' (ONNX Runtime, CPU).

    Takes the inference names and the training name 'no' (= fp32). 'auto' -> 'fast' when an exported fast model is
    loaded and the model is on the CPU; else bf16 on a CUDA GPU with bf16 support (fp16 on an older one) or on a CPU
    where bf16 measured faster than fp32 (cpu_has_fast_bf16); else fp32.
    """
    if precision == "no":
        precision = "fp32"
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    device = torch.device(device)
    if precision == "fp16" and device.type != "cuda":
        raise InputError("precision='fp16' needs a CUDA device (GPU); on the CPU use 'bf16', 'fp32' or 'auto'.")
    if precision == "fast" and not (fast_available and device.type == "cpu"):
        raise InputError("precision='fast' needs a model loaded on the CPU from a folder written by "
                         "MultiTaskSentenceTransformer.export_fast(dir); use 'auto' or 'fp32' otherwise.")
    if precision != "auto":
        return precision
    if device.type == "cpu":
        if fast_available:
            return "fast"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def resolve_mixed_precision(mode, device=None):
    """Training precision: 'fp32' (asked as 'no' or 'fp32'), 'bf16' or 'fp16' (CUDA only); 'auto' as above.
    device: where training runs (default: CUDA when available, else the CPU)."""
    if mode not in MIXED_PRECISIONS:
        raise InputError(f"mixed_precision must be one of {', '.join(MIXED_PRECISIONS)}, got {mode!r}.")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if mode == "fp16" and device.type != "cuda":
        raise InputError("mixed_precision='fp16' needs a CUDA GPU; on the CPU use 'bf16' or 'fp32' ('no').")
    return resolve_precision(mode, device)


def autocast(precision, device):
    """torch.autocast for 'bf16' / 'fp16' on device; a no-op context for 'fp32' / 'no' (autocast switched off, so an
    enclosing autocast does not leak in)."""
    dtype = AUTOCAST_DTYPES.get(precision)
    device_type = torch.device(device).type
    if dtype is None:
        if device_type in ("cpu", "cuda"):
            return torch.autocast(device_type, enabled=False)
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)


# Inference in bf16 (predict, encode, evaluation, a teacher's targets) runs one of two ways, chosen by what the device
# runs fast. On a CPU with AMX, a call of more than CAST_ONCE_BATCHES batches runs on the model's weights cast to bf16
# once for the call (every floating parameter and buffer, no autocast: how bf16 models are served), instead of
# autocast, which casts every Linear weight again on every batch and every activation between fp32 and bf16 ops: there
# predict of 1,000 texts ran 1.15x (a 3-layer student) and 1.19x (the 6-layer default model) as fast (Xeon with
# amx_bf16, docs/benchmarks.md), with the same agreement with fp32. On a CPU with AVX512-BF16 but no AMX the cast lost
# (AMD EPYC: the default model 169 texts/s cast vs 178 under autocast), and on CUDA it was not measured: both run
# under autocast. The cast is made per call, never kept: a model trained further (even by a fused optimizer, which
# leaves tensor versions alone) is always served its current weights. Smaller calls (a cast costs about what a
# 3-layer student's batch of 32 does) stay under autocast; the two ways differ by bf16 rounding only.
# bench/predict.py measures both ways (modes bf16-cast, bf16-autocast) on the machine it runs on.
CAST_ONCE_BATCHES = 2


def casts_bf16_weights(device):
    """Whether a bf16 call of many batches on device runs on weights cast once (a CPU with AMX) rather than autocast."""
    return torch.device(device).type == "cpu" and cpu_has_amx()


def inference_weights(module, precision, n_rows, batch_size):
    """{name: bf16 tensor} of every floating parameter and buffer of module, for a bf16 call of more than
    CAST_ONCE_BATCHES batches (n_rows in batches of batch_size) run without gradients on a device where that is the
    faster way (casts_bf16_weights); {} otherwise (the call runs under autocast)."""
    if precision != "bf16" or -(-n_rows // batch_size) <= CAST_ONCE_BATCHES or torch.is_grad_enabled():
        return {}
    device = next((t.device for t in module.parameters()), torch.device("cpu"))
    if not casts_bf16_weights(device):
        return {}
    with torch.no_grad():
        return {name: t.detach().to(torch.bfloat16)
                for name, t in (*module.named_parameters(), *module.named_buffers()) if t.is_floating_point()}


def run_in_precision(module, precision, device, weights, *args, **kwargs):
    """module(*args, **kwargs) in `precision` on device: on `weights` (inference_weights: bf16, no autocast) through
    torch.func.functional_call when given, else as is under autocast(precision, device)."""
    if not weights:
        with autocast(precision, device):
            return module(*args, **kwargs)
    with autocast("fp32", device):
        return torch.func.functional_call(module, weights, args, kwargs)
