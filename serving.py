"""Serving: the fast CPU path (the whole multi-task forward as an ONNX Runtime graph) and streaming file prediction.

    export_onnx(model, directory)            # <directory>/model.onnx + fast_config.json (model.export_fast writes it)
    FastRunner(directory).run(ids, mask, shapes)   # ONNX Runtime session over an exported folder (from_pretrained)
    predict_file(model, path, output)        # a .txt / .csv / .jsonl file -> one JSON line of predictions per row

onnx / onnxruntime are imported only on an export or a load.
"""
import copy
import csv
import json
import os
import warnings

import pyarrow.parquet as pq
import torch
from torch import nn
from tqdm.auto import tqdm

from errors import InputError
from sentence_transformer import read_saved_json

# The whole multi-task forward exported to ONNX and run by ONNX Runtime (model.export_fast / from_pretrained):
# one graph (input_ids, attention_mask, shape_ids) -> (one output per task, named as the task, then
# sentence_embedding), dynamic batch and sequence axes, exported from model.forward (the sentence embedding is read
# from the encoder's own output).
# Weights: fp32 by default; optionally ONNX Runtime's dynamic int8 quantisation (per-channel) on the encoder MatMuls
# that QUANTIZE names (measured not to keep quality on this model: see QUANTIZE).

FAST_DIR = "fast"
ONNX_NAME = "model.onnx"
FAST_CONFIG_NAME = "fast_config.json"
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


def _import_ort():
    try:
        import onnxruntime  # onnxruntime: optional, serving only
    except ImportError as e:
        raise ImportError(f"The fast path needs ONNX Runtime: {INSTALL_HINT}") from e
    return onnxruntime


def _quantize_nodes(onnx_path, mode):
    """Names of the MatMul nodes with an initializer weight inside the encoder that `mode` quantises."""
    import onnx  # onnx: optional, export only

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
    from onnxruntime.transformers import optimizer  # onnxruntime: optional, serving only

    optimized = optimizer.optimize_model(source, model_type="bert", num_heads=encoder_config.num_attention_heads,
                                         hidden_size=encoder_config.hidden_size, opt_level=0)
    optimized.save_model_to_file(target)
    return {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}


def export_onnx(model, directory, quantize=QUANTIZE, fuse=FUSE):
    """Write <directory>/model.onnx (+ fast_config.json) for `model` (a MultiTaskSentenceTransformer); the model
    itself is not changed (a CPU fp32 copy is exported). fuse: apply ONNX Runtime's transformer fusions (FUSE).
    Returns the folder's fast_config (what was fused and quantised)."""
    if quantize not in QUANTIZE_MODES:
        raise InputError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {quantize!r}.")
    _import_ort()

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
        from onnxruntime.quantization import QuantType, quantize_dynamic  # onnxruntime: optional, serving only

        nodes = _quantize_nodes(raw, quantize)
        quantize_dynamic(raw, path, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
                         extra_options={"DefaultTensorType": 1})  # FLOAT: types the fused ops' outputs do not infer
        os.remove(raw)
    config = {"inputs": list(INPUT_NAMES), "outputs": names, "opset": OPSET, "quantize": quantize,
              "int8_matmuls": len(nodes), "fusions": fusions, "dynamic_axes": axes}
    with open(os.path.join(directory, FAST_CONFIG_NAME), "w") as f:
        json.dump(config, f, indent=2)
    return config


class FastRunner:
    """An ONNX Runtime session over an exported folder; run(ids, mask, shapes) -> dict of numpy outputs."""

    def __init__(self, directory, threads=None):
        ort = _import_ort()
        self.config = read_saved_json(os.path.join(directory, FAST_CONFIG_NAME))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(os.path.join(directory, ONNX_NAME), options,
                                            providers=["CPUExecutionProvider"])

    def run(self, input_ids, attention_mask, shape_ids, outputs=None):
        """{name: numpy array} for the outputs asked for (task names, 'sentence_embedding'; None = all)."""
        outputs = self.config["outputs"] if outputs is None else list(outputs)
        missing = [n for n in outputs if n not in self.config["outputs"]]
        if missing:
            raise InputError(f"the exported graph has no output {missing[0]!r} (it has {', '.join(self.config['outputs'])})"
                             "; re-export the model with model.export_fast(dir) after adding a task.")
        feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy(),
                 "shape_ids": shape_ids.numpy()}
        wanted = {i.name for i in self.session.get_inputs()}  # a graph without a tagging head reads no word shapes
        return dict(zip(outputs, self.session.run(list(outputs), {k: v for k, v in feeds.items() if k in wanted})))


# ------------------------------------------------------------------------------ main.py --predict-file: streaming I/O
# Read a .txt / .csv / .jsonl file chunk by chunk, predict each chunk, write one JSON line per input record (a row
# with no usable text, or whose prediction fails, gets an error record in its place).

PREDICT_FILE_FORMATS = (".txt", ".csv", ".jsonl")


def check_predict_file_args(predict_file, chunk_size):
    """Problems with the --predict-file flags (the file, --chunk-size), found before the model loads."""
    problems = []
    if predict_file:
        if not os.path.isfile(predict_file):
            problems.append(f"--predict-file: no file at {predict_file}")
        elif os.path.splitext(predict_file)[1].lower() not in PREDICT_FILE_FORMATS:
            problems.append(f"--predict-file: {predict_file} is not one of {', '.join(PREDICT_FILE_FORMATS)} "
                            "(rename a plain text file to .txt)")
    if chunk_size < 1:
        problems.append("--chunk-size must be >= 1")
    return problems


def _is_unreadable(text):
    """True for text holding lone surrogates: bytes that were not UTF-8 (read with errors='surrogateescape') or a
    JSON "\\ud800"-style escape; neither can be written back as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_texts(path, text_column="text", extra_columns=None):
    """Yield (row, text, error) for each input record of a .txt / .csv / .jsonl / .parquet file, streaming: row
    counts input records from 1 (a line of .txt / .jsonl, a data row of .csv or .parquet); error is None or says why
    the row has no text. extra_columns (names): yield (row, text, error, {name: value}) instead, a column a record
    lacks as None (.txt has none; corpus.py carries an id column this way; [] gives the empty dict)."""
    kind = os.path.splitext(path)[1].lower()
    extras = extra_columns is not None
    extra_columns = list(extra_columns or ())

    def out(row, text, error, values=None):
        return (row, text, error, {c: (values or {}).get(c) for c in extra_columns}) if extras else \
            (row, text, error)

    if kind == ".parquet":
        yield from _read_parquet_texts(path, text_column, extra_columns, out)
        return
    with open(path, encoding="utf-8", errors="surrogateescape", newline="" if kind == ".csv" else None) as f:
        if kind == ".csv":
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or text_column not in header:
                raise InputError(f"{path}: no column {text_column!r} in the CSV header {header}; pass --text-column "
                                 "with one of its columns.")
            column, row = header.index(text_column), 0
            while True:
                row += 1
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    yield out(row, None, f"unreadable CSV row: {e}")
                    continue
                values = dict(zip(header, fields)) if extras else None
                if column >= len(fields):
                    yield out(row, None, f"row has {len(fields)} fields, no {text_column!r} column", values)
                else:
                    yield out(row, fields[column], None, values)
        for row, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if kind == ".txt":
                yield out(row, line, None)
                continue
            if not line.strip():
                yield out(row, "", None)
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                yield out(row, None, f"not valid JSON: {e}")
                continue
            values = record if isinstance(record, dict) else None
            if not isinstance(record, dict) or text_column not in record:
                yield out(row, None, f"not a JSON object with a {text_column!r} key (use --text-column)", values)
            elif not isinstance(record[text_column], str):
                yield out(row, None, f"{text_column!r} is {type(record[text_column]).__name__}, not a string", values)
            else:
                yield out(row, record[text_column], None, values)


def _read_parquet_texts(path, text_column, extra_columns, out, batch_rows=1000):
    """read_texts for a parquet file: its record batches, streaming; a null or non-string text is a row's error."""
    try:
        file = pq.ParquetFile(path)
    except Exception as e:  # pyarrow's ArrowInvalid & co share no useful base class
        raise InputError(f"{path}: not a readable parquet file ({str(e).splitlines()[0]})") from e
    names = file.schema_arrow.names
    if text_column not in names:
        raise InputError(f"{path}: no column {text_column!r} in the parquet file's columns {names}; pass "
                         "--text-column with one of its columns.")
    columns = [text_column] + [c for c in extra_columns if c in names and c != text_column]
    row = 0
    for batch in file.iter_batches(batch_size=batch_rows, columns=columns):
        data = batch.to_pydict()
        for i, text in enumerate(data[text_column]):
            row += 1
            values = {c: data[c][i] for c in columns}
            if text is None:
                yield out(row, None, f"{text_column!r} is null", values)
            elif not isinstance(text, str):
                yield out(row, None, f"{text_column!r} is {type(text).__name__}, not a string", values)
            else:
                yield out(row, text, None, values)


def _predict_chunk(model, chunk, batch_size, precision="auto"):
    """Output records for one chunk of (row, text, error): a prediction or a per-row error each, in order."""
    records = []
    for row, text, error, *_ in chunk:  # (corpus.py's chunks carry the row's extra columns after them)
        if error is None and _is_unreadable(text):
            error = "not valid UTF-8 (or a lone surrogate escape)"
        elif error is None and not text.strip():
            error = "empty text"
        records.append({"row": row, "error": error} if error else {"row": row, "text": text})
    todo = [r for r in records if "text" in r]
    try:
        preds = model.predict([r["text"] for r in todo], batch_size=batch_size, precision=precision)
    except Exception:  # isolate the row that failed: predict one by one
        preds = []
        for r in todo:
            try:
                preds.append(model.predict(r["text"], precision=precision))
            except Exception as e:
                preds.append({"error": f"prediction failed: {type(e).__name__}: {e}"})
    for r, p in zip(todo, preds):
        del r["text"]
        r.update(p)
    return records


def predict_file(model, path, output, text_column="text", batch_size=32, chunk_size=1000, show_progress=True,
                 precision="auto"):
    """Predict every text of a .txt / .csv / .jsonl file into `output`, one JSON line per input record
    ({'row', then one key per task as predict() gives it} or {'row', 'error'}), reading and predicting chunk_size rows at a time
    (memory flat), in `precision` (as predict() takes it; main.py's --mixed-precision). Written to a temp name and
    renamed at the end: `output` is whole or absent, never half-written. Returns {'rows': n, 'errors': n}."""
    output = os.path.abspath(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    tmp = f"{output}.tmp-{os.getpid()}"
    counts = {"rows": 0, "errors": 0}
    try:
        with open(tmp, "w", encoding="utf-8") as out, tqdm(unit="text", desc="predict", disable=not show_progress) as bar:
            chunk = []
            records = read_texts(path, text_column)
            while True:
                item = next(records, None)
                if item is not None:
                    chunk.append(item)
                if chunk and (item is None or len(chunk) == chunk_size):
                    for record in _predict_chunk(model, chunk, batch_size, precision):
                        out.write(json.dumps(record, ensure_ascii=False) + "\n")
                        counts["errors"] += "error" in record
                    counts["rows"] += len(chunk)
                    bar.update(len(chunk))
                    chunk = []
                if item is None:
                    break
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"{counts['rows']} rows -> {output} ({counts['errors']} with an error record)")
    return counts
