"""Serving: the fast CPU path, the whole multi-task forward exported as an ONNX Runtime graph, int8 where it keeps
every task.

    export_onnx(model, directory, texts=held_out)   # <directory> = a fast/ folder: model.onnx, fast_config.json, the
                                                    # files fast_model.py reads and its code (model.export_fast)
    fast_model.load(folder).predict(texts)          # serving it without torch; FastRunner under precision="fast"

With quantize="auto" (the default) and held-out texts, the export builds each of CANDIDATES, measures on those texts
how far each keeps the fp32 model's answers (every task's Task.agreement, and the sentence embedding's cosine) and
how fast it predicts, and keeps the fastest that keeps them all; fp32 where none does (or no texts were given).
fast_config.json records every candidate's measurements and the one kept. onnx and onnxruntime's tools are imported
by name when an export runs: a model folder carries this module and loads without them.
"""
import copy
import importlib
import json
import os
import time
import warnings

import torch
from torch import nn

from errors import InputError
from fast_model import FAST_CONFIG_NAME, ONNX_NAME, FastModel, onnxruntime_module
from model_code import write_code
from precision import cpu_has_vnni
from prediction import EMBEDDING, backend, tokenize_words
from text_prep import split_words

INPUT_NAMES = ("input_ids", "attention_mask", "shape_ids")
OPSET = 17
# The candidates of an export, tried in this order (fastest expected first). Dynamic int8 is ONNX Runtime's: int8
# weights per output channel, activations quantised per call; on a CPU with VNNI the full 8-bit range (no reduce_range).
# Measured on the default model and its student (Xeon-bf16, 2026-12-07, docs/benchmarks.md): "int8" runs 2.1x the
# fp32 graph but keeps 99.1 % of the topic labels and entity F1 0.96 (the feed-forward inputs carry outlier channels
# 15x the median); "int8-smooth" runs 1.4-1.5x and comes within a hair of the thresholds (0.977 entity F1; 99.35 %
# labels), so both exports kept fp32 there.
CANDIDATES = {
    "int8": "every MatMul of the encoder and of the tasks' own layers int8 (ONNX Runtime dynamic quantisation, "
            "weights per channel)",
    "int8-smooth": "the activations' outlier channels first moved into the weights (SmoothQuant, alpha "
                   "SMOOTH_ALPHA, scales calibrated on held-out texts), then int8 but the feed-forward output "
                   "MatMuls (their GELU inputs cannot be smoothed), which stay fp32",
    "fp32": "fp32 weights: ONNX Runtime's graph optimisations and transformer fusions only",
}
QUANTIZE_MODES = ("auto", *CANDIDATES)
QUANTIZE = "auto"
SMOOTH_ALPHA = 0.8           # how much of an input channel's range moves into the weights (0: none, 1: all)
SAME_EMBEDDING = 0.99        # the mean cosine of a candidate's sentence embeddings with the fp32 model's
CALIBRATION_SHARE = 1 / 3    # of the held-out texts: the first part calibrates the smoothing, the rest measures
MAX_CHECK_TEXTS = 2000       # held-out texts an export measures on (at most)
TIMED_TEXTS, TIMING_ROUNDS = 300, 3  # the candidates that keep every task are timed on this many texts, best of rounds
# ONNX Runtime's transformer optimizer (onnxruntime.transformers.optimizer) on the exported graph: fuses each layer's
# attention into one Attention op, Add + LayerNorm into SkipLayerNormalization, the embeddings' sum + LayerNorm into
# EmbedLayerNormalization and bias + GELU into BiasGelu. The encoder is exported with eager attention for it (the
# graph of torch's scaled_dot_product_attention is not recognised; outputs agree to ~1e-6 either way). Where no
# fusion applies (another encoder family) the graph is kept as exported; fast_config.json lists what was fused.
FUSE = True
INSTALL_HINT = "pip install onnx==1.23.2 onnxruntime==1.32.0"
VALIDATION_TEXTS = "validation_texts.txt"  # a run's held-out texts (OUTPUT_DIR): what --export-fast measures on
FAST_ENTRY = "fast_model"  # the code fast/ carries (model_code.write_code, flat: put fast/ on sys.path)


def optional(name):
    """An optional library of the export (onnx, onnxruntime's tools), imported by name when first needed; ImportError
    naming the install otherwise. A model folder carries this module and loads without them."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(f"exporting the fast path needs {name.split('.')[0]}: {INSTALL_HINT}") from e


class _ExportWrapper(nn.Module):
    """model.forward as a function of three tensors returning one tensor per output (what the ONNX graph computes)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, shape_ids):
        return forward_all(self.model, input_ids, attention_mask, shape_ids)


def output_names(model):
    """The graph's outputs: every task's logits under its name, then the sentence embedding."""
    return [*model.tasks, EMBEDDING]


def forward_all(model, input_ids, attention_mask, shape_ids):
    """Every task's logits and the sentence embedding of one multi-task forward, in output_names() order; the
    sentence embedding is the one model.forward returns (the encoder's own output)."""
    out = model(input_ids, attention_mask, shape_ids=shape_ids)
    return tuple(out[name] for name in output_names(model))


def copy_model(model):
    """A deep copy of a MultiTaskSentenceTransformer without its ONNX Runtime session (which cannot be copied, and
    would not describe a changed copy anyway)."""
    fast, model.fast = getattr(model, "fast", None), None
    try:
        return copy.deepcopy(model)
    finally:
        model.fast = fast


# ------------------------------------------------------------------------------------------------ smoothing (SmoothQuant)
class SmoothedLinear(nn.Module):
    """A Linear whose input is divided by per-channel scales s and whose weight columns are multiplied by them: the
    same function in exact arithmetic, with the input's outlier channels moved into the weights, where int8 keeps them
    (Xiao et al. 2023, SmoothQuant). The division stays an explicit Mul: BERT's inputs also feed a residual."""

    def __init__(self, linear, scales):
        super().__init__()
        self.register_buffer("inverse_scales", (1.0 / scales).float())
        self.linear = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(linear.weight * scales[None, :])
            if linear.bias is not None:
                self.linear.bias.copy_(linear.bias)

    def forward(self, x):
        return self.linear(x * self.inverse_scales)


def _smoothed_linears(model):
    """(parent module, attribute, Linear) of every Linear of the encoder and the tasks' own layers whose input can be
    smoothed: the attention output and the feed-forward input (the feed-forward output, after GELU, stays as it is)."""
    found = []
    for name, module in model.named_modules():
        for attribute, child in module.named_children():
            if isinstance(child, nn.Linear) and (attribute == "dense" and name.endswith(("intermediate",
                                                                                          "attention.output"))):
                found.append((module, attribute, child))
    return found


def smooth(model, texts, alpha=SMOOTH_ALPHA, batch_size=32):
    """A copy of model whose smoothable Linears (_smoothed_linears) are SmoothedLinear, their scales from the largest
    input per channel over texts: s = max|x|^alpha / max|w|^(1 - alpha)."""
    model = copy_model(model).cpu().float().eval()
    targets = _smoothed_linears(model)
    largest = {}

    def recorder(key):
        def record(module, inputs, output):
            x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
            largest[key] = x if key not in largest else torch.maximum(largest[key], x)
        return record

    hooks = [linear.register_forward_hook(recorder(id(linear))) for _, _, linear in targets]
    rows = tokenize_words(model.tokenizer, [split_words(t, model.word_splitter)[0] for t in texts],
                          model.encoder.max_length)
    model.run(rows, [*model.tasks, EMBEDDING], batch_size, precision="fp32")  # every layer: the embedding's too
    for hook in hooks:
        hook.remove()
    for parent, attribute, linear in targets:
        if id(linear) not in largest:  # a layer no output reads
            continue
        weights = linear.weight.detach().abs().amax(0).clamp(min=1e-5)
        scales = (largest[id(linear)].clamp(min=1e-5) ** alpha / weights ** (1 - alpha)).clamp(min=1e-2, max=1e2)
        setattr(parent, attribute, SmoothedLinear(linear, scales))
    return model


# ------------------------------------------------------------------------------------------------ graphs
def _fuse(source, target, encoder_config):
    """ONNX Runtime's transformer fusions of the graph at source, saved at target; {fused op: count} (non-zero)."""
    optimized = optional("onnxruntime.transformers.optimizer").optimize_model(
        source, model_type="bert", num_heads=encoder_config.num_attention_heads,
        hidden_size=encoder_config.hidden_size, opt_level=0)
    optimized.save_model_to_file(target)
    return {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}


def export_graph(model, path, fuse=FUSE):
    """model (a CPU fp32 MultiTaskSentenceTransformer) as one fp32 ONNX graph at path; returns what was fused."""
    hf = model.encoder.encoder
    if fuse:  # the attention graph the fusion recognises
        hf.set_attn_implementation("eager") if hasattr(hf, "set_attn_implementation") else \
            setattr(hf.config, "_attn_implementation", "eager")
    wrapper = _ExportWrapper(model).eval()
    # A padded example row, so the traced graph keeps the attention mask (an all-ones mask can be traced away).
    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    names = output_names(model)
    dynamic = {n: {0: "batch", 1: "tokens"} for n in INPUT_NAMES}
    dynamic.update({n: dict(model.tasks[n].onnx_axes) if n in model.tasks else {0: "batch"} for n in names})
    raw = path + ".exported" if fuse else path
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (ids, mask, torch.ones_like(ids)), raw, dynamo=False,
                          input_names=list(INPUT_NAMES), output_names=names, dynamic_axes=dynamic,
                          opset_version=OPSET, do_constant_folding=True)
    if not fuse:
        return None
    fusions = _fuse(raw, path, hf.config)
    os.remove(raw)
    return fusions


def _int8_nodes(path, keep_fp32=lambda name: False):
    """The weighted MatMul / fused Attention nodes of the encoder and the tasks' own layers (not the heads) at path,
    but those keep_fp32 names."""
    graph = optional("onnx").load(path, load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    return [n.name for n in graph.node if n.op_type in ("MatMul", "Attention") and any(x in weights for x in n.input)
            and (n.op_type == "Attention" or ("/layer." in n.name or "/attention/" in n.name or "/intermediate/" in
                                              n.name or "/output/" in n.name)) and not keep_fp32(n.name)]


def _feed_forward_output(name):
    return "/output/dense/" in name and "/attention/" not in name


def quantize(source, target, keep_fp32=lambda name: False):
    """Dynamic int8 of source's encoder MatMuls (but keep_fp32's) into target; returns how many were made int8."""
    quantization = optional("onnxruntime.quantization")
    nodes = _int8_nodes(source, keep_fp32)
    quantization.quantize_dynamic(source, target, weight_type=quantization.QuantType.QInt8, per_channel=True,
                                  reduce_range=not cpu_has_vnni(), op_types_to_quantize=["MatMul", "Attention"],
                                  nodes_to_quantize=nodes, extra_options={"DefaultTensorType": 1})
    return len(nodes)


def build_candidate(name, model, directory, calibration=()):
    """Candidate `name`'s graph (CANDIDATES) in directory; returns (its file, what it says of itself)."""
    path = os.path.join(directory, f"model.{name}.onnx")
    if name == "int8-smooth":
        fp32 = os.path.join(directory, "smoothed.fp32.onnx")
        fusions = export_graph(smooth(model, calibration), fp32)
        made = quantize(fp32, path, keep_fp32=_feed_forward_output)
        os.remove(fp32)
        return path, {"fusions": fusions, "int8_matmuls": made, "calibration_texts": len(calibration)}
    fusions = export_graph(copy_model(model).cpu().float().eval(), path if name == "fp32" else path + ".fp32")
    if name == "fp32":
        return path, {"fusions": fusions, "int8_matmuls": 0}
    made = quantize(path + ".fp32", path)
    os.remove(path + ".fp32")
    return path, {"fusions": fusions, "int8_matmuls": made}


# ------------------------------------------------------------------------------------------------ choosing
def measure(model, served, texts, reference, batch_size=32):
    """What candidate `served` (a fast_model.FastModel) keeps of the fp32 model's answers on texts (reference: the
    fp32 predictions and normalised embeddings): {task: {measure, value, keeps}}, the embedding cosine (mean, min)
    and whether it keeps everything."""
    predicted = served.predict(texts, batch_size=batch_size)
    embeddings = served.encode(texts, batch_size=batch_size, normalize=True)
    cosine = (embeddings * reference["embeddings"]).sum(1)
    tasks = {}
    for name, task in model.tasks.items():
        what, value, keeps = task.agreement([r[name] for r in reference["predict"]], [p[name] for p in predicted])
        tasks[name] = {"measure": what, "value": round(value, 6), "keeps": bool(keeps)}
    keeps = all(t["keeps"] for t in tasks.values()) and float(cosine.mean()) >= SAME_EMBEDDING
    return {"tasks": tasks, "embedding_cosine": {"mean": round(float(cosine.mean()), 6),
                                                 "min": round(float(cosine.min()), 6)}, "keeps": keeps}


def speeds(served, texts, rounds=TIMING_ROUNDS, batch_size=32):
    """{name: texts/s} of each served candidate predicting texts: the best of `rounds` rounds, the candidates
    alternated in each round (machine noise hits them all alike)."""
    best = {name: float("inf") for name in served}
    for _ in range(rounds):
        for name, model in served.items():
            start = time.perf_counter()
            model.predict(texts, batch_size=batch_size)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: round(len(texts) / seconds, 1) for name, seconds in best.items()}


def choose(model, directory, candidates, texts, threads=None):
    """Build each candidate in directory (which already holds fast_model.py's files), measure it on the held-out
    texts (the first CALIBRATION_SHARE calibrates the smoothing), time those that keep every task, and keep the
    fastest of them as model.onnx (fp32 where none keeps them); returns (each candidate's report, the one kept, how
    many texts it was measured on)."""
    texts = list(texts)[:MAX_CHECK_TEXTS]
    calibration, check = texts[:int(len(texts) * CALIBRATION_SHARE)], texts[int(len(texts) * CALIBRATION_SHARE):]
    reference = {"predict": model.predict(check, precision="fp32"),
                 "embeddings": model.encode(check, precision="fp32", normalize=True)}
    report, paths, served = {}, {}, {}
    for name in candidates:
        paths[name], report[name] = build_candidate(name, model, directory, calibration)
        if len(candidates) > 1:
            candidate = FastModel(directory, threads, onnx_name=os.path.basename(paths[name]))
            report[name].update(measure(model, candidate, check, reference))
            if report[name]["keeps"]:
                served[name] = candidate
    for name, speed in (speeds(served, check[:TIMED_TEXTS]) if len(served) > 1 else {}).items():
        report[name]["texts_per_second"] = speed
    chosen = max(served, key=lambda n: report[n].get("texts_per_second", 0)) if served else \
        "fp32" if len(candidates) > 1 else candidates[0]
    if chosen not in paths:  # nothing kept the answers and fp32 was not among the candidates
        paths[chosen], report[chosen] = build_candidate(chosen, model, directory)
    os.replace(paths[chosen], os.path.join(directory, ONNX_NAME))
    for name, path in paths.items():
        if name != chosen and os.path.exists(path):
            os.remove(path)
    return report, chosen, len(check)


def export_onnx(model, directory, quantize=QUANTIZE, fuse=FUSE, texts=None):
    """Write the fast/ folder `directory` for `model` (a MultiTaskSentenceTransformer; not changed): model.onnx, the
    files fast_model.py reads, its code, and fast_config.json (inputs, outputs, the candidates measured and the one
    kept). quantize: 'auto' (the fastest of CANDIDATES that keeps every task on `texts`, held-out texts; fp32 without
    them) or a candidate's name. fuse: ONNX Runtime's transformer fusions (FUSE). Returns the fast config."""
    if quantize not in QUANTIZE_MODES:
        raise InputError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {quantize!r}.")
    onnxruntime_module()
    os.makedirs(directory, exist_ok=True)
    write_serving_files(model, directory)
    texts = [t for t in (texts or []) if t.strip()]
    if quantize == "int8-smooth" and len(texts) < 20:
        raise InputError("quantize='int8-smooth' calibrates on held-out texts: give at least 20 (texts=...).")
    candidates = list(CANDIDATES) if quantize == "auto" and len(texts) >= 20 else \
        ["fp32" if quantize == "auto" else quantize]
    config = {"inputs": list(INPUT_NAMES), "outputs": output_names(model), "opset": OPSET,
              "pad_token_id": model.tokenizer.pad_token_id or 0}
    _write_config(directory, config)  # what the runner reads while the candidates are measured
    if fuse:
        report, chosen, checked = choose(model, directory, candidates, texts)
    else:  # the graph as exported (the fusions' effect can be measured against it)
        export_graph(copy_model(model).cpu().float().eval(), os.path.join(directory, ONNX_NAME), fuse=False)
        report, chosen, checked = {"fp32": {"fusions": None, "int8_matmuls": 0}}, "fp32", 0
    config.update(quantize=chosen, int8_matmuls=report[chosen]["int8_matmuls"], fusions=report[chosen]["fusions"],
                  measured_on=checked if len(candidates) > 1 else 0,
                  candidates=report if len(candidates) > 1 else None)
    _write_config(directory, config)
    return config


def _write_config(directory, config):
    with open(os.path.join(directory, FAST_CONFIG_NAME), "w") as f:
        json.dump(config, f, indent=2)


def write_serving_files(model, directory):
    """What fast_model.py reads beside the graph (the model's config, word rules and tokenizer.json) and its code."""
    model.write_config_files(directory)
    backend(model.tokenizer).save(os.path.join(directory, "tokenizer.json"))
    write_code(directory, FAST_ENTRY, relative=False)
