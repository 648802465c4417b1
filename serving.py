"""Serving: the fast CPU path, the whole multi-task forward exported as an ONNX Runtime graph.

    export_onnx(model, directory)            # <directory> = a fast/ folder: model.onnx, fast_config.json, the files
                                             # fast_model.py reads and its code (model.export_fast writes it)
    fast_model.load(folder).predict(texts)   # serving it without torch; FastRunner under precision="fast"

onnx / onnxruntime are imported only on an export or a load.
"""
import copy
import importlib
import json
import os
import warnings

import torch
from torch import nn

from errors import InputError
from fast_model import FAST_CONFIG_NAME, ONNX_NAME, onnxruntime_module
from model_code import write_code
from prediction import backend

# The whole multi-task forward exported to ONNX and run by ONNX Runtime (model.export_fast / from_pretrained):
# one graph (input_ids, attention_mask, shape_ids) -> (one output per task, named as the task, then
# sentence_embedding), dynamic batch and sequence axes, exported from model.forward (the sentence embedding is read
# from the encoder's own output).
# Weights: fp32 by default; optionally ONNX Runtime's dynamic int8 quantisation (per-channel) on the encoder MatMuls
# that QUANTIZE names (measured not to keep quality on this model: see QUANTIZE).

INPUT_NAMES = ("input_ids", "attention_mask", "shape_ids")
EMBEDDING_OUTPUT = "sentence_embedding"
OPSET = 17
# Which encoder MatMuls get int8 weights: "none" (fp32 everywhere), "ffn" (the two feed-forward MatMuls of each
# layer, ~2/3 of the encoder's FLOPs), "encoder" (every encoder MatMul with a weight). Measured (bench/predict.py,
# README): "ffn" runs 1.15-1.7x the fp32 torch speed but loses too much (sentence-embedding cosine 0.990 on MiniLM,
# entity F1 vs fp32 0.95), so the default keeps fp32 weights (ONNX Runtime's graph optimisations only).
QUANTIZE_MODES = ("none", "ffn", "encoder")
QUANTIZE = "none"
# ONNX Runtime's transformer optimizer (onnxruntime.transformers.optimizer) on the exported graph: fuses each layer's
# attention into one Attention op, Add + LayerNorm into SkipLayerNormalization, the embeddings' sum + LayerNorm into
# EmbedLayerNormalization and bias + GELU into BiasGelu. The encoder is exported with eager attention for it (the
# graph of torch's scaled_dot_product_attention is not recognised; outputs agree to ~1e-6 either way). Where no
# fusion applies (another encoder family) the graph is kept as exported; fast_config.json lists what was fused.
FUSE = True
INSTALL_HINT = "pip install onnx==1.23.2 onnxruntime==1.32.0"
VALIDATION_TEXTS = "validation_texts.txt"  # a run's held-out texts (OUTPUT_DIR): what --export-fast measures int8 on
FAST_ENTRY = "fast_model"  # the code fast/ carries (model_code.write_code, flat: put fast/ on sys.path)


class _ExportWrapper(nn.Module):
    """model.forward as a function of three tensors returning one tensor per output (what the ONNX graph computes)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, shape_ids):
        return forward_all(self.model, input_ids, attention_mask, shape_ids)


def output_names(model):
    """The graph's outputs: every task's logits under its name, then the sentence embedding."""
    return [*model.tasks, EMBEDDING_OUTPUT]


def forward_all(model, input_ids, attention_mask, shape_ids):
    """Every task's logits and the sentence embedding of one multi-task forward, in output_names() order; the
    sentence embedding is the one model.forward returns (the encoder's own output)."""
    out = model(input_ids, attention_mask, shape_ids=shape_ids)
    return tuple(out[name] for name in output_names(model))


def optional(name):
    """An optional library of the export (onnx, onnxruntime's tools), imported by name when first needed; ImportError
    naming the install otherwise. A model folder carries this module and loads without them."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(f"exporting the fast path needs {name.split('.')[0]}: {INSTALL_HINT}") from e


def _quantize_nodes(onnx_path, mode):
    """Names of the MatMul nodes with an initializer weight inside the encoder that `mode` quantises."""
    graph = optional("onnx").load(onnx_path, load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    chosen = []
    for node in graph.node:
        if node.op_type != "MatMul" or not any(x in weights for x in node.input):
            continue
        name = node.name
        in_encoder = "/encoder/layer." in name
        is_ffn = "/intermediate/" in name or ("/output/" in name and "/attention/" not in name)
        if in_encoder and (mode == "encoder" or (mode == "ffn" and is_ffn)):
            chosen.append(name)
    return chosen


def copy_model(model):
    """A deep copy of a MultiTaskSentenceTransformer without its ONNX Runtime session (which cannot be copied, and
    would not describe a changed copy anyway)."""
    fast, model.fast = getattr(model, "fast", None), None
    try:
        return copy.deepcopy(model)
    finally:
        model.fast = fast


def _fuse(source, target, encoder_config):
    """ONNX Runtime's transformer fusions of the graph at source, saved at target; {fused op: count} (non-zero)."""
    optimized = optional("onnxruntime.transformers.optimizer").optimize_model(source, model_type="bert", num_heads=encoder_config.num_attention_heads,
                                         hidden_size=encoder_config.hidden_size, opt_level=0)
    optimized.save_model_to_file(target)
    return {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}


def export_onnx(model, directory, quantize=QUANTIZE, fuse=FUSE):
    """Write <directory>/model.onnx (+ fast_config.json) for `model` (a MultiTaskSentenceTransformer); the model
    itself is not changed (a CPU fp32 copy is exported). fuse: apply ONNX Runtime's transformer fusions (FUSE).
    Returns the folder's fast_config (what was fused and quantised)."""
    if quantize not in QUANTIZE_MODES:
        raise InputError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {quantize!r}.")
    onnxruntime_module()

    copy_ = copy_model(model).cpu().float().eval()
    hf = copy_.encoder.encoder
    if fuse:  # the attention graph the fusion recognises
        hf.set_attn_implementation("eager") if hasattr(hf, "set_attn_implementation") else \
            setattr(hf.config, "_attn_implementation", "eager")
    wrapper = _ExportWrapper(copy_).eval()
    # A padded example row, so the traced graph keeps the attention mask (an all-ones mask can be traced away).
    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    shapes = torch.ones_like(ids)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, ONNX_NAME)
    axes = {"batch": 0, "tokens": 1}
    names = output_names(copy_)
    dynamic = {n: {0: "batch", 1: "tokens"} for n in INPUT_NAMES}
    dynamic.update({n: dict(copy_.tasks[n].onnx_axes) if n in copy_.tasks else {0: "batch"} for n in names})
    raw = path if quantize == "none" and not fuse else os.path.join(directory, "model.exported.onnx")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (ids, mask, shapes), raw, dynamo=False, input_names=list(INPUT_NAMES),
                          output_names=names, dynamic_axes=dynamic, opset_version=OPSET,
                          do_constant_folding=True)
    fusions = None
    if fuse:
        fused = path if quantize == "none" else os.path.join(directory, "model.fused.onnx")
        fusions = _fuse(raw, fused, hf.config)
        os.remove(raw)
        raw = fused
    nodes = []
    if quantize != "none":
        quantization = optional("onnxruntime.quantization")
        nodes = _quantize_nodes(raw, quantize)
        quantization.quantize_dynamic(raw, path, weight_type=quantization.QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
                         extra_options={"DefaultTensorType": 1})  # FLOAT: types the fused ops' outputs do not infer
        os.remove(raw)
    config = {"inputs": list(INPUT_NAMES), "outputs": names, "opset": OPSET, "quantize": quantize,
              "int8_matmuls": len(nodes), "fusions": fusions, "dynamic_axes": axes,
              "pad_token_id": model.tokenizer.pad_token_id or 0}
    with open(os.path.join(directory, FAST_CONFIG_NAME), "w") as f:
        json.dump(config, f, indent=2)
    write_serving_files(model, directory)
    return config


def write_serving_files(model, directory):
    """What fast_model.py reads beside the graph (the model's config, word rules and tokenizer.json) and its code."""
    model.write_config_files(directory)
    backend(model.tokenizer).save(os.path.join(directory, "tokenizer.json"))
    write_code(directory, FAST_ENTRY, relative=False)
