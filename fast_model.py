"""Serving an exported model without torch: ONNX Runtime, tokenizers and numpy only (requirements-serve.txt).

    import sys; sys.path.insert(0, "outputs/fast/fast")   # an export_fast folder's fast/: this file and its modules
    import fast_model
    model = fast_model.load("outputs/fast")                # the export_fast folder, or its fast/ folder
    model.predict("Apple opens a store in Paris.")         # the same dicts as MultiTaskSentenceTransformer.predict
    model.encode(["A sentence."])                          # the shared encoder's sentence embeddings

fast/ holds the ONNX graph (model.onnx: every task's logits and the sentence embedding of one forward), its
fast_config.json, copies of the model's multitask_config.json, word_rules.json and tokenizer.json, and this file
with the modules it needs, written from the repository's own (model_code.py: the word splitting, windows and
decoding the PyTorch model runs, prediction.py / tasks.py). FastRunner is also what a PyTorch model loaded from
such a folder runs under precision="fast".
"""
import json
import os

import numpy as np

from errors import InputError
from prediction import (
    EMBEDDING,
    check_task_names,
    check_texts,
    decode_rows,
    head_is_trained,
    length_sorted_batches,
    prepare_texts,
    run_words,
)
from tasks import Task
from text_prep import split_words
from word_splitter import WordSplitter

FAST_DIR = "fast"                      # the folder of the fast path inside an export_fast folder
ONNX_NAME = "model.onnx"
FAST_CONFIG_NAME = "fast_config.json"  # the graph's inputs, outputs and how it was made (serving.export_onnx)
COPIED = ("multitask_config.json", "word_rules.json", "tokenizer.json")  # the model's files fast/ carries
INSTALL_HINT = "pip install onnxruntime==1.32.0 tokenizers numpy (requirements-serve.txt)"


def _read_json(path):
    fix = "re-export the folder (model.export_fast(dir) or main.py --export-fast DIR)"
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise InputError(f"'{path}' is missing ({e.strerror}); {fix}") from e
    except ValueError as e:
        raise InputError(f"'{path}' is not valid JSON ({e}); {fix}") from e


def onnxruntime_module():
    try:  # optional for the PyTorch model; the fast path's one engine
        import onnxruntime
    except ImportError as e:
        raise ImportError(f"The fast path needs ONNX Runtime: {INSTALL_HINT}") from e
    return onnxruntime


class FastRunner:
    """An ONNX Runtime session over a fast/ folder; run(ids, mask, shapes) -> {output name: numpy array}."""

    def __init__(self, directory, threads=None, onnx_name=ONNX_NAME):
        ort = onnxruntime_module()
        self.config = _read_json(os.path.join(directory, FAST_CONFIG_NAME))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(os.path.join(directory, onnx_name), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}  # a graph without a tagging head reads no shapes

    def run(self, input_ids, attention_mask, shape_ids, outputs=None):
        """{name: numpy array} for the outputs asked for (task names, 'sentence_embedding'; None = all); the inputs
        as numpy int64 arrays (or CPU tensors)."""
        outputs = self.config["outputs"] if outputs is None else list(outputs)
        missing = [n for n in outputs if n not in self.config["outputs"]]
        if missing:
            raise InputError(f"the exported graph has no output {missing[0]!r} (it has "
                             f"{', '.join(self.config['outputs'])}); re-export the model with model.export_fast(dir) "
                             "after adding a task.")
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "shape_ids": shape_ids}
        feeds = {k: np.asarray(v, dtype=np.int64) for k, v in feeds.items() if k in self.inputs}
        return dict(zip(outputs, self.session.run(list(outputs), feeds)))


class FastModel:
    """predict / encode of an exported folder through ONNX Runtime, with the PyTorch model's own pre- and
    post-processing (prediction.py)."""

    def __init__(self, directory, threads=None, onnx_name=ONNX_NAME):
        import tokenizers  # the fast path's tokenizer (transformers' fast tokenizers are built on it)

        self.runner = FastRunner(directory, threads, onnx_name)
        config = _read_json(os.path.join(directory, COPIED[0]))
        self.tasks = {t["name"]: Task.from_config(t) for t in config["tasks"]}
        self.max_length, self.clean = config["max_length"], config["clean"]
        self.trained_tasks, self._noted_untrained = config.get("trained_tasks"), set()
        self.splitter = WordSplitter(_read_json(os.path.join(directory, COPIED[1])))
        self.tokenizer = tokenizers.Tokenizer.from_file(os.path.join(directory, COPIED[2]))
        self.pad_id = self.runner.config.get("pad_token_id", 0)

    def run(self, rows, outputs, batch_size=32):
        """Per row of {input_ids, shape_ids, positions} (prediction.tokenize_words) the outputs asked for: a task's
        row output (Task.row_output), the sentence embedding [H]."""
        results = [{} for _ in rows["input_ids"]]
        for batch, ids, mask in length_sorted_batches(rows["input_ids"], batch_size, self.pad_id):
            shapes = np.zeros_like(ids)
            for r, j in enumerate(batch):
                shapes[r, :len(rows["shape_ids"][j])] = rows["shape_ids"][j]
            out = self.runner.run(ids, mask, shapes, outputs)
            for r, j in enumerate(batch):
                for name in outputs:
                    results[j][name] = out[name][r] if name == EMBEDDING else \
                        self.tasks[name].row_output(out[name], r, rows["positions"][j])
        return results

    def _run_words(self, words_batch, outputs, batch_size):
        return run_words(words_batch, outputs, self.tasks, self.tokenizer, self.max_length,
                         lambda rows, names: self.run(rows, names, batch_size))

    def _prepare(self, texts):
        return prepare_texts(texts, self.clean, lambda text: split_words(text, self.splitter))

    def predict(self, texts, tasks=None, batch_size=32, precision="fast"):
        """Every task's output for raw strings, as MultiTaskSentenceTransformer.predict gives it: a single string
        gives one dict, a list a list of dicts; tasks: the names to run (None = all). precision: 'fast' or 'auto'
        (this runner serves the exported graph only)."""
        if precision not in ("fast", "auto"):
            raise InputError(f"precision={precision!r}: fast_model serves the exported graph ('fast' / 'auto'); load "
                             "the folder with MultiTaskSentenceTransformer.from_pretrained for another precision.")
        names = check_task_names(tasks, self.tasks)
        texts, single = check_texts(texts)
        prepared = self._prepare(texts)
        runs = self._run_words([p.words for p in prepared], names, batch_size) if texts else []
        trained = {n: head_is_trained(n, self.tasks, self.trained_tasks, self._noted_untrained) for n in names}
        results = decode_rows(texts, prepared, runs, names, self.tasks, trained)
        return results[0] if single else results

    def encode(self, texts, batch_size=32, normalize=False):
        """Sentence embeddings [N, H] (a single string: [H]) of the shared encoder, float32."""
        texts, single = check_texts(texts)
        runs = self._run_words([p.words for p in self._prepare(texts)], [EMBEDDING], batch_size) if texts else []
        emb = np.stack([r[EMBEDDING] for r in runs]).astype(np.float32) if runs else np.zeros((0, 0), np.float32)
        if normalize and len(emb):
            emb = emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
        return emb[0] if single else emb


def load(folder, threads=None):
    """The FastModel of an export_fast folder (or of its fast/ folder itself)."""
    folder = os.fspath(folder)
    inner = os.path.join(folder, FAST_DIR)
    return FastModel(inner if os.path.isdir(inner) else folder, threads)
