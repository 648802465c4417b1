"""The fast CPU serving path: the whole multi-task forward exported to ONNX and run by ONNX Runtime.

    model.export_fast("outputs/fast")                    # or: python main.py --export-fast outputs/fast
    fast = MultiTaskSentenceTransformer.from_pretrained("outputs/fast")
    fast.predict(texts)                                  # same API; runs through ONNX Runtime on the CPU

One graph: (input_ids, attention_mask, shape_ids) -> (cls_logits, ner_logits, sentence_embedding), dynamic batch and
sequence axes, exported from `model.forward(input_ids, attention_mask, shape_ids=...)` (the sentence embedding is
read from the encoder's own output), so it follows whatever the model feeds its encoder and heads.
Weights: fp32 by default; optionally ONNX Runtime's dynamic int8 quantisation (per-channel) on the encoder MatMuls
that QUANTIZE names, embeddings, attention scores, LayerNorms and both heads staying fp32 (measured not to keep
quality on this model: see QUANTIZE).
Nothing is imported from onnx / onnxruntime until an export or a load.
"""
import copy
import json
import os

import torch
from torch import nn

FAST_DIR = "fast"
ONNX_NAME = "model.onnx"
FAST_CONFIG_NAME = "fast_config.json"
INPUT_NAMES = ("input_ids", "attention_mask", "shape_ids")
OUTPUT_NAMES = ("cls_logits", "ner_logits", "sentence_embedding")
OPSET = 17
# Which encoder MatMuls get int8 weights: "none" (fp32 everywhere), "ffn" (the two feed-forward MatMuls of each
# layer, ~2/3 of the encoder's FLOPs), "encoder" (every encoder MatMul with a weight). Measured (bench/predict.py,
# README): "ffn" runs 1.15-1.7x the fp32 torch speed but loses too much (sentence-embedding cosine 0.990 on MiniLM,
# entity F1 vs fp32 0.95), so the default keeps fp32 weights (ONNX Runtime's graph optimisations only).
QUANTIZE_MODES = ("none", "ffn", "encoder")
QUANTIZE = "none"
INSTALL_HINT = "pip install onnx==1.23.2 onnxruntime==1.32.0"


class _ExportWrapper(nn.Module):
    """model.forward as a function of three tensors returning three tensors (what the ONNX graph computes)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, shape_ids):
        return forward_all(self.model, input_ids, attention_mask, shape_ids)


def forward_all(model, input_ids, attention_mask, shape_ids):
    """(cls_logits, ner_logits, sentence_embedding) of one multi-task forward; the sentence embedding is the
    encoder's own output, caught with a forward hook so that model.forward stays the one definition."""
    caught = {}

    def catch(_module, _args, out):  # returns None: the output itself is left unchanged
        caught["emb"] = out["sentence_embedding"]

    hook = model.encoder.register_forward_hook(catch)
    try:
        out = model(input_ids, attention_mask, shape_ids=shape_ids)
    finally:
        hook.remove()
    return out["cls_logits"], out["ner_logits"], caught["emb"]


def _import_ort():
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(f"The fast path needs ONNX Runtime: {INSTALL_HINT}") from e
    return onnxruntime


def _quantize_nodes(onnx_path, mode):
    """Names of the MatMul nodes with an initializer weight inside the encoder that `mode` quantises."""
    import onnx

    graph = onnx.load(onnx_path, load_external_data=False).graph
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


def export(model, directory, quantize=QUANTIZE):
    """Write <directory>/model.onnx (+ fast_config.json) for `model` (a MultiTaskSentenceTransformer); the model
    itself is not changed (a CPU fp32 copy is exported). Returns what was quantised."""
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {quantize!r}.")
    _import_ort()
    import warnings

    copy_ = copy.deepcopy(model).cpu().float().eval()
    wrapper = _ExportWrapper(copy_).eval()
    # A padded example row, so the traced graph keeps the attention mask (an all-ones mask can be traced away).
    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    shapes = torch.ones_like(ids)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, ONNX_NAME)
    axes = {"batch": 0, "tokens": 1}
    dynamic = {n: {0: "batch", 1: "tokens"} for n in INPUT_NAMES + ("ner_logits",)}
    dynamic.update(cls_logits={0: "batch"}, sentence_embedding={0: "batch"})
    raw = path if quantize == "none" else os.path.join(directory, "model.fp32.onnx")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (ids, mask, shapes), raw, dynamo=False, input_names=list(INPUT_NAMES),
                          output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic, opset_version=OPSET,
                          do_constant_folding=True)
    nodes = []
    if quantize != "none":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        nodes = _quantize_nodes(raw, quantize)
        quantize_dynamic(raw, path, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes)
        os.remove(raw)
    config = {"inputs": list(INPUT_NAMES), "outputs": list(OUTPUT_NAMES), "opset": OPSET, "quantize": quantize,
              "int8_matmuls": len(nodes), "dynamic_axes": axes}
    with open(os.path.join(directory, FAST_CONFIG_NAME), "w") as f:
        json.dump(config, f, indent=2)
    return config


class FastRunner:
    """An ONNX Runtime session over an exported folder; run(ids, mask, shapes) -> dict of numpy outputs."""

    def __init__(self, directory, threads=None):
        ort = _import_ort()
        with open(os.path.join(directory, FAST_CONFIG_NAME)) as f:
            self.config = json.load(f)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(os.path.join(directory, ONNX_NAME), options,
                                            providers=["CPUExecutionProvider"])

    def run(self, input_ids, attention_mask, shape_ids, outputs=OUTPUT_NAMES):
        feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy(),
                 "shape_ids": shape_ids.numpy()}
        return dict(zip(outputs, self.session.run(list(outputs), feeds)))
