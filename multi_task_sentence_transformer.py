"""A multi-task sentence transformer: one shared encoder and any number of task heads (tasks.py).

    model = MultiTaskSentenceTransformer()            # packaged MiniLM encoder, the default pair: topic + silver NER
    model.predict("Apple opens a store in Paris.")
    # {'topic': {'label': 'Sci/Tech', 'score': 0.93}, 'ner': [{'text': 'Apple', 'type': 'ORG', 'start': 0, ...}, ...]}
    model = MultiTaskSentenceTransformer(tasks=[ClassificationTask("topic", names, column="label"),
                                                MultiLabelTask("tags", ["a", "b"]), TaggingTask("conll", tags)])
    model.predict(texts, tasks=["conll"])             # only the heads asked for; the encoder runs once per window

The encoder is the `SentenceTransformer` module itself; each task owns its head (tasks.py). Tagging is decided per
word (the first wordpiece of each word carries the word's tag); words come from spaCy's English tokenizer
(`text_prep.split_words`), the same segmentation the silver labels were made on. Nothing is loaded at import time.
"""
import copy
import json
import os

import torch
from safetensors.torch import save_file
from torch import nn

from atomic_io import atomic_write_dir
from errors import InputError, InputTypeError
from fast_model import FAST_DIR, FastRunner
from model_card import CARD_NAME, build_model_card  # the Hub's README.md; main.py adds the run's metrics
from model_code import AUTO_MAP, HF_CONFIG_NAME, HF_ENTRY, MODEL_TYPE, write_code
from precision import inference_weights, resolve_precision, run_in_precision
from prediction import EMBEDDING, check_task_names, check_texts, decode_rows, head_is_trained, prepare_texts, run_words
from sentence_transformer import (
    ENCODER_FAMILIES,
    ModelLoadError,
    SentenceTransformer,
    apply_layers,
    length_sorted_batches,
    load_saved_tensors,
    pad_ids,
    pool,
    read_saved_json,
    require_keys,
    write_sentence_transformers_files,
)
from serving import FUSE, QUANTIZE, export_onnx
from tasks import TAGGING_CONTEXT, TAGGING_WINDOW, Task, check_tasks, default_tasks, first_of
from text_prep import english_splitter, split_words
from word_splitter import WordSplitter, english_rules

CONFIG_NAME = "multitask_config.json"
HEADS_NAME = "heads.safetensors"
TASK_LAYERS_NAME = "task_layers.safetensors"  # each task's private top layers (task_layers > 0), keys "<task>.<param>"
ENCODER_DIR = "encoder"
SAVED_CONFIG_KEYS = ("tasks", "pooling", "max_length", "clean", "attention_dropout")  # what from_pretrained reads
FORMAT_VERSION = 6  # 2: NER head sees word shapes; 3: so did the encoder; 4: the NER head only (+context); 5: tasks;
# 6: the folder carries its word-split rules (word_rules.json) and its code (loads without this repository)
READABLE_FORMATS = (5, 6)
TASK_LAYERS = 1  # task_layers=None: each task's own copy of this many top layers, where the encoder can be split
WORD_RULES_NAME = "word_rules.json"  # spaCy's English word-split rules the model was trained on (word_splitter.py)
TOKENS = "token_embeddings"      # run()'s key for the shared encoder's token embeddings (EMBEDDING: the pooled one)


def pad_rows(tensors, width):
    """Per-row [n_i, H] tensors zero-padded into one [B, width, H] batch."""
    out = torch.zeros(len(tensors), width, tensors[0].shape[-1])
    for row, t in enumerate(tensors):
        out[row, :len(t)] = t
    return out


def missing_saved_parts(path):
    """The parts of a save_pretrained() folder (config, heads, encoder/) that path lacks: [] for a saved model. Read
    before any weights load, so flags naming a model folder are checked at once."""
    return [n for n in (CONFIG_NAME, HEADS_NAME, ENCODER_DIR) if not os.path.exists(os.path.join(os.fspath(path), n))]


def task_layers_problem(task_layers, model_type, n_layers):
    """Why `task_layers` private top layers per task cannot go on an encoder of this family (a Hugging Face
    model_type) and layer count (None when they can, or when task_layers is 0). The one rule: the model checks its
    encoder with it, main.py's recipe the --model-name's config before any work."""
    if isinstance(task_layers, bool) or not isinstance(task_layers, int) or task_layers < 0:
        return "must be a whole number >= 0 (0 = every task reads the shared encoder)"
    family = ENCODER_FAMILIES.get(model_type)
    if task_layers and not (family and family["split"]):
        split = ", ".join(k for k, v in ENCODER_FAMILIES.items() if v["split"])
        return (f"private top layers per task run the encoder layer by layer, which this code does for {split} "
                f"encoders, not '{model_type}'; use one of those, or 0")
    if task_layers and isinstance(n_layers, int) and task_layers > n_layers:
        return f"the encoder has {n_layers} layers; pick 1..{n_layers} (or 0: every task reads the shared encoder)"
    return None


def check_task_layers(task_layers, encoder):
    """task_layers as an int in 0..the encoder's layer count (InputError naming the fix otherwise); None: TASK_LAYERS
    where the encoder can take them, else 0."""
    config = encoder.encoder.config
    layers = getattr(config, "num_hidden_layers", None)
    if task_layers is None:
        return 0 if task_layers_problem(TASK_LAYERS, config.model_type, layers) else TASK_LAYERS
    problem = task_layers_problem(task_layers, config.model_type, layers)
    if problem:
        raise InputError(f"task_layers={task_layers!r}: {problem}.")
    return task_layers


def _read_saved_config(path):
    """(multitask_config.json of a saved folder, its tasks rebuilt); ModelLoadError naming the fix when the folder is
    incomplete, of another format, or its config cannot be read."""
    missing = missing_saved_parts(path)
    if missing:
        raise ModelLoadError(
            f"'{path}' is not a complete saved multi-task model (missing {', '.join(missing)}); point at a "
            "directory written by save_pretrained() (main.py writes <output-dir>/model), or re-run training.")
    config = read_saved_json(os.path.join(path, CONFIG_NAME), required=("format_version",))
    if config.get("format_version") not in READABLE_FORMATS:
        raise ModelLoadError(
            f"'{path}' was saved in format {config.get('format_version')}, this code reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))} (format 5 saves any number of tasks); retrain it with main.py, "
            "or load it with the code version that wrote it.")
    require_keys(config, os.path.join(path, CONFIG_NAME), SAVED_CONFIG_KEYS)  # every key, before any load
    try:
        return config, [Task.from_config(t) for t in config["tasks"]]
    except (InputError, TypeError, AttributeError) as e:
        raise ModelLoadError(f"the tasks in {os.path.join(path, CONFIG_NAME)} cannot be rebuilt ({e}); the file "
                             "was edited or damaged: re-save the model.") from e


class MultiTaskSentenceTransformer(nn.Module):
    """Shared SentenceTransformer encoder + one head per task (tasks.py): sentence tasks read the pooled embedding,
    tagging tasks the token embeddings.

    encoder: a SentenceTransformer, or a model name / directory (None = packaged all-MiniLM-L6-v2).
    tasks: Task objects (tasks.py). Without them, the default pair: 'topic' (label_names, default AG News') and 'ner'
    (tags, default ner_tags.build_tag_list()), with classifier_dropout / ner_dropout / ner_window / ner_context.
    clean: apply text_prep.clean_text to raw text in predict() (as the training data was cleaned).
    task_layers: K > 0 gives every task a private copy of the encoder's top K layers (started from the shared ones):
    the shared encoder runs its lower layers once, each task's copy continues from there and its head reads the
    result. The shared encoder (all its layers) stays the sentence embedding of encode(). BERT and RoBERTa encoders;
    None (the default, as main.py's TASK_LAYERS): TASK_LAYERS where the encoder can be split, else 0.
    """

    def __init__(self, encoder=None, label_names=None, tags=None, classifier_dropout=0.1, ner_dropout=0.1,
                 pooling="mean", max_length=128, clean=True, attention_dropout=0.0, ner_window=TAGGING_WINDOW,
                 ner_context=TAGGING_CONTEXT, tasks=None, task_layers=None):
        super().__init__()
        if not isinstance(encoder, SentenceTransformer):
            encoder = SentenceTransformer(encoder, pooling=pooling, max_length=max_length,
                                          attention_dropout=attention_dropout)
        elif attention_dropout is not None and encoder.attention_dropout != attention_dropout:
            raise InputError(f"The given encoder has attention_dropout={encoder.attention_dropout}, not "
                             f"{attention_dropout}; build it with that setting, or pass attention_dropout=None.")
        self.encoder = encoder
        if tasks is None:
            if (label_names is not None and not list(label_names)) or (tags is not None and (
                    not list(tags) or list(tags)[0] != "O")):
                raise InputError("label_names must be non-empty and tags must start with 'O' (see build_tag_list()).")
            tasks = default_tasks(label_names, tags)
            tasks[0].dropout, tasks[1].dropout = classifier_dropout, ner_dropout
            tasks[1].window, tasks[1].context = ner_window, ner_context
        elif label_names is not None or tags is not None:
            raise InputError("give either tasks= or label_names= / tags= (the default pair), not both.")
        self.tasks = {t.name: t for t in check_tasks(tasks)}
        self.clean = clean
        self.heads = nn.ModuleDict({t.name: t.make_head(encoder.hidden_size) for t in self.tasks.values()})
        self.task_layers = check_task_layers(task_layers, encoder)
        self.branches = nn.ModuleDict({t: self._new_branch() for t in self.tasks} if self.task_layers else {})
        self.fast = None  # a fast_model.FastRunner when loaded from an export_fast() folder
        # {task: bool}: which heads training has taught (set by the trainer, saved with the model); None where
        # unknown (a model built by hand): then every head answers.
        self.trained_tasks = None
        self._noted_untrained = set()
        self.word_rules = None  # the word-split rules (word_splitter); None: spaCy's English rules as installed here
        self._splitter = None

    def add_task(self, task):
        """A new task with a fresh head (e.g. on a trained model: main.py --from-model DIR); marked untrained."""
        self.tasks = {t.name: t for t in check_tasks([*self.tasks.values(), task])}
        self.heads[task.name] = task.make_head(self.encoder.hidden_size).to(self.device)
        if self.task_layers:
            self.branches[task.name] = self._new_branch()
        if self.trained_tasks is not None:
            self.trained_tasks[task.name] = False
        return task

    def _new_branch(self):
        """A private copy of the shared encoder's top task_layers layers (as they are now). The copies keep the
        encoder's config object, so a setting made on it (e.g. the attention implementation) reaches them too."""
        _, layers = self.encoder.embeddings_and_layers()
        config = self.encoder.encoder.config
        return nn.ModuleList(copy.deepcopy(layers[len(layers) - self.task_layers:], {id(config): config}))

    def first_task(self, kind):
        """The first task of a kind ('classification', 'multilabel', 'tagging'), or None."""
        return first_of(self.tasks, kind)

    @property
    def label_names(self):
        """Class names of the first classification task (the default pair's topic); None without one."""
        task = self.first_task("classification")
        return task.labels if task else None

    @property
    def tags(self):
        """Tag list of the first tagging task (the default pair's NER); None without one."""
        task = self.first_task("tagging")
        return task.labels if task else None

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    @property
    def device(self):
        return next(self.parameters()).device

    def check_task_names(self, names):
        """names (None = every task) as a list, refused when the model lacks one (naming the ones it has)."""
        return check_task_names(names, self.tasks)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, token_embeddings=None,
                shape_ids=None, positions=None, tasks=None, embedding=True):
        """{task name: logits, 'sentence_embedding': [B, H]} (the shared encoder's pooled, unnormalised sentence
        embedding: what the sentence heads read without task_layers). Sentence tasks give [B, n_labels]; tagging tasks [B, T, n_tags], or with positions[name] (a
        boolean mask [B, T] or (rows, cols)) only those tokens: [n_selected, n_tags], row-major (training tags the
        labelled first wordpieces only).

        shape_ids [B, T]: each token's word shape (tokenize_words); None counts every token as 'pad' (unknown).
        tasks: the heads to run (None = all). Pass token_embeddings (cached outputs of a frozen encoder) instead of
        input_ids to skip the encoder. embedding=False: with task_layers, leave the sentence embedding out (it costs
        the shared top layers, which no task reads); without task_layers it comes free and is always returned.
        """
        if shape_ids is None:
            reference = input_ids if input_ids is not None else token_embeddings[..., 0]
            shape_ids = torch.zeros(reference.shape[:2], dtype=torch.long, device=reference.device)
        names = list(self.tasks if tasks is None else tasks)
        if self.task_layers and names:
            if token_embeddings is not None:
                raise InputError("with task_layers each task reads its own top layers, so cached encoder outputs "
                                 "(token_embeddings) cannot stand in for the encoder; pass input_ids.")
            return self._forward_branches(input_ids, attention_mask, token_type_ids, shape_ids, positions, names,
                                          embedding)
        if token_embeddings is None:
            out = self.encoder(input_ids, attention_mask, token_type_ids)  # the sentence transformer, unchanged
            token_embeddings, sentence = out["token_embeddings"], out["sentence_embedding"]
        else:
            sentence = pool(token_embeddings, attention_mask, self.encoder.pooling)
        result = {name: self._head(name, token_embeddings, sentence, shape_ids, positions, attention_mask)
                  for name in names}
        result[EMBEDDING] = sentence
        return result

    def _head(self, name, token_embeddings, sentence, shape_ids, positions, attention_mask):
        return self.tasks[name].run_head(self.heads[name], token_embeddings, sentence, shape_ids, positions,
                                         attention_mask)

    def _forward_branches(self, input_ids, attention_mask, token_type_ids, shape_ids, positions, names, embedding):
        """forward() with task_layers: the shared lower layers once, then each task's own top layers and head; the
        shared top layers only for the sentence embedding."""
        _, layers = self.encoder.embeddings_and_layers()
        shared = len(layers) - self.task_layers
        hidden, mask = self.encoder.run_layers(input_ids, attention_mask, token_type_ids, stop=shared)
        pooling = self.encoder.pooling
        result = {}
        for name in names:
            tokens = apply_layers(self.branches[name], hidden, mask)
            sentence = pool(tokens, attention_mask, pooling)  # read by sentence tasks only (a cheap mean)
            result[name] = self._head(name, tokens, sentence, shape_ids, positions, attention_mask)
        if embedding:
            result[EMBEDDING] = pool(apply_layers(layers[shared:], hidden, mask), attention_mask, pooling)
        return result

    # ----------------------------------------------------------------- inference
    def head_is_trained(self, task):
        """False only where the saved record says this task's head was never trained; warns once."""
        return head_is_trained(task, self.tasks, self.trained_tasks, self._noted_untrained)

    def _forward_batch(self, input_ids, mask, shapes, precision, outputs, weights, tokens=None):
        """{name: fp32 CPU tensor} of the requested outputs of one padded batch (token embeddings from a feature cache
        in place of input_ids when given)."""
        if precision == "fast":
            return {k: torch.from_numpy(v) for k, v in self.fast.run(input_ids, mask, shapes, outputs).items()}
        device = self.device
        heads = [n for n in outputs if n in self.tasks]
        inputs = dict(input_ids=input_ids.to(device)) if tokens is None else dict(token_embeddings=tokens.to(device))
        if TOKENS in outputs:  # the shared encoder alone (a frozen encoder's feature cache)
            encoder_weights = {k[len("encoder."):]: v for k, v in weights.items() if k.startswith("encoder.")}
            out = run_in_precision(self.encoder, precision, device, encoder_weights, inputs["input_ids"],
                                   mask.to(device))
        else:
            out = run_in_precision(self, precision, device, weights, attention_mask=mask.to(device),
                                   shape_ids=shapes.to(device), tasks=heads, embedding=EMBEDDING in outputs, **inputs)
        return {k: v.float().cpu() for k, v in out.items() if k in outputs}

    @torch.no_grad()
    def run(self, rows, outputs=None, batch_size=32, precision="auto", cache=None, progress=None):
        """The one batch runner: per row of `rows` (tokenize_words() / batching.prepare_features() output: its
        input_ids, shape_ids and positions), the outputs asked for (None = every task) as fp32 CPU tensors: a task's
        row output (Task.row_output: a sentence task's logits [n_labels], a tagging task's logits at the row's words'
        first wordpieces [words, n_tags]), 'sentence_embedding' [H] (the shared encoder's), 'token_embeddings'
        [n_tokens, H] (the shared encoder's, padding stripped).

        Rows run in length-sorted batches (each padded to its longest row), in eval mode, without autograd (the
        results can be loss targets), in one precision (resolve_precision: 'auto', 'fp32' / 'no', 'bf16', 'fp16',
        'fast'). cache: per row its token embeddings (a frozen encoder's outputs) in place of the encoder. progress:
        a wrapper of the batch iterator (e.g. a tqdm). predict, predict_tags, encode, evaluation, a teacher's targets
        and the trainer's caches all run through here."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
        outputs = list(self.tasks) if outputs is None else list(outputs)
        unknown = [n for n in outputs if n not in self.tasks and n not in (EMBEDDING, TOKENS)]
        if unknown:
            raise InputError(f"this model has no output {unknown[0]!r}; its outputs: {', '.join(self.tasks)}, "
                             f"{EMBEDDING}, {TOKENS}.")
        if TOKENS in outputs and (len(outputs) > 1 or cache is not None):
            raise InputError(f"{TOKENS!r} (the shared encoder's outputs) is asked alone and without a cache.")
        precision = resolve_precision(precision, self.device, fast_available=self.fast is not None)
        ids, heads = rows["input_ids"], [n for n in outputs if n in self.tasks]
        was_training = self.training
        self.eval()
        weights = inference_weights(self, precision, len(ids), batch_size) if precision != "fast" else {}
        batches = length_sorted_batches(ids, batch_size, self.tokenizer.pad_token_id or 0)
        results = [{} for _ in ids]
        for batch, input_ids, mask in (progress(batches) if progress else batches):
            shapes, _ = pad_ids([rows["shape_ids"][j] for j in batch])
            tokens = None if cache is None else pad_rows([cache[j] for j in batch], mask.shape[1])
            out = self._forward_batch(input_ids, mask, shapes, precision, outputs, weights, tokens)
            for r, j in enumerate(batch):
                result = results[j]
                for n in heads:
                    result[n] = self.tasks[n].row_output(out[n], r, rows["positions"][j])
                if EMBEDDING in out:
                    result[EMBEDDING] = out[EMBEDDING][r]
                if TOKENS in out:
                    result[TOKENS] = out[TOKENS][r, :len(ids[j])].clone()
        self.train(was_training)
        return results

    def run_words(self, words_batch, outputs=None, batch_size=32, precision="auto"):
        """Per row of pre-split words: each task's decision (Task.row_prediction: a sentence task's probabilities,
        a tagging task's tag per word) and the sentence embedding, for the outputs asked for (None = every task).
        Rows longer than one window are tagged in overlapping windows (prediction.run_words)."""
        outputs = list(self.tasks) if outputs is None else list(outputs)
        return run_words(words_batch, outputs, self.tasks, self.tokenizer, self.encoder.max_length,
                         lambda rows, names: self.run(rows, names, batch_size, precision))

    @property
    def word_splitter(self):
        """The WordSplitter of the model's word_rules (spaCy's English rules as installed here when it has none)."""
        if self._splitter is None:
            self._splitter = WordSplitter(self.word_rules) if self.word_rules else english_splitter()
        return self._splitter

    def _prepare(self, texts):
        """Per text its prediction.Prepared: cleaning as in training, the model's word splitting."""
        return prepare_texts(texts, self.clean, lambda text: split_words(text, self.word_splitter))

    def predict(self, texts, batch_size=32, precision="auto", tasks=None):
        """Every task's output for raw strings, one encoder pass per window for all of them: {task name: output}.

        classification: {'label', 'score'}; multilabel: {'labels': [names over its threshold], 'scores': {name: p}};
        tagging: [{'text', 'type', 'start', 'end'}] with offsets into the string as given (text[start:end] is the
        entity), whatever cleaning is applied internally. tasks: the names to run (None = all). A single string
        gives one dict, a list gives a list of dicts.
        precision: 'auto' (the exported fast path when loaded from an export_fast() folder on the CPU, else bf16
        where the device runs it fast, else fp32), 'fp32', 'bf16', 'fp16' (CUDA) or 'fast'.
        """
        names = self.check_task_names(tasks)
        texts, single = check_texts(texts)
        prepared = self._prepare(texts)
        trained = {n: self.head_is_trained(n) for n in names} if texts else {}
        runs = self.run_words([p.words for p in prepared], names, batch_size, precision) if texts else []
        results = decode_rows(texts, prepared, runs, names, self.tasks, trained)
        return results[0] if single else results

    def annotate(self, texts, tasks=None, batch_size=32, precision="auto"):
        """Per text {task name: (where, value)}: each task's answer as a document annotation (Task.annotation: a score
        per label, character spans, a value), from the same pass predict() makes (spacy_component.py sets them)."""
        names = self.check_task_names(tasks)
        texts, _ = check_texts(texts)
        prepared = self._prepare(texts)
        runs = self.run_words([p.words for p in prepared], names, batch_size, precision) if texts else []
        trained = {n: self.head_is_trained(n) for n in names}
        outputs = decode_rows(texts, prepared, runs, names, self.tasks, trained)
        return [{n: self.tasks[n].annotation(run[n], out[n]) for n in names} for run, out in zip(runs, outputs)]

    def predict_tags(self, words_batch, batch_size=32, precision="auto", task=None):
        """One BIO tag per given word for pre-tokenised text (e.g. a CoNLL gold file), from the tagging task named
        (default: the first); precision as in predict()."""
        if not isinstance(words_batch, (list, tuple)) or not all(
                isinstance(ws, (list, tuple)) and all(isinstance(w, str) for w in ws) for ws in words_batch):
            raise InputTypeError("predict_tags expects a list of word lists (list[list[str]]).")
        if task is None and self.first_task("tagging") is None:
            raise InputError(f"this model has no tagging task (its tasks: {', '.join(self.tasks)}); predict_tags "
                             "tags words with one.")
        name = task or self.first_task("tagging").name
        if self.check_task_names([name]) and not self.tasks[name].reads_words:
            raise InputError(f"task {name!r} is a {self.tasks[name].kind} task; predict_tags needs a tagging task.")
        if not words_batch:
            resolve_precision(precision, self.device, fast_available=self.fast is not None)  # still check the flag
            return []
        runs = self.run_words([list(ws) for ws in words_batch], (name,), batch_size, precision)
        if not self.head_is_trained(name):
            return [["O"] * len(r[name]) for r in runs]
        return [r[name] for r in runs]

    def encode(self, texts, batch_size=32, normalize=False, convert_to="numpy", precision="auto"):
        """Sentence embeddings [N, H] (a single string: [H]) of the shared encoder, on exactly the input predict()
        feeds it (cleaned text, spaCy words, word shapes); runs through the fast path like predict(). For token
        embeddings or the bare encoder use model.encoder.encode()."""
        if convert_to not in ("numpy", "tensor"):
            raise InputError(f"convert_to must be 'numpy' or 'tensor', got {convert_to!r}.")
        texts, single = check_texts(texts)
        words = [p.words for p in self._prepare(texts)]
        if texts:
            runs = self.run_words(words, (EMBEDDING,), batch_size, precision)
            emb = torch.stack([r[EMBEDDING] for r in runs])
        else:
            resolve_precision(precision, self.device, fast_available=self.fast is not None)
            emb = torch.empty(0, self.encoder.hidden_size)
        if normalize:
            emb = nn.functional.normalize(emb, p=2, dim=-1)
        emb = emb[0] if single else emb
        return emb.numpy() if convert_to == "numpy" else emb

    # ----------------------------------------------------------------- save / load
    def config_dict(self):
        return {"format_version": FORMAT_VERSION, "tasks": [t.config() for t in self.tasks.values()],
                "pooling": self.encoder.pooling, "max_length": self.encoder.max_length, "clean": self.clean,
                "attention_dropout": self.encoder.attention_dropout, "hidden_size": self.encoder.hidden_size,
                "trained_tasks": self.trained_tasks, "task_layers": self.task_layers}

    def save_pretrained(self, path, results=None, conll=None):
        """The model folder, written to a temp dir, then renamed: encoder/ (Hugging Face format), heads.safetensors,
        task_layers.safetensors (with task layers), multitask_config.json, word_rules.json; config.json and the model's
        code (transformers' AutoModel with trust_remote_code loads it: model_code.py), modules.json and 1_Pooling/
        (sentence-transformers loads the shared encoder), README.md (a Hub model card, with the metrics of the run's
        results.json / conll_eval.json where given)."""
        return atomic_write_dir(path, lambda directory: self.write_files(directory, results, conll))

    def write_files(self, directory, results=None, conll=None):
        """What save_pretrained writes, into an existing directory (no atomicity of its own)."""
        self._write_weights(directory)
        self.write_config_files(directory)
        self._write_portable_files(directory, results, conll)

    def _write_portable_files(self, directory, results=None, conll=None, fast=None):
        """config.json and the code (transformers), modules.json and 1_Pooling/ (sentence-transformers), README.md (the
        Hub card, with the run's metrics and the fast export's measurements where given)."""
        with open(os.path.join(directory, HF_CONFIG_NAME), "w") as f:
            json.dump({"model_type": MODEL_TYPE, "architectures": ["MultiTaskModel"], "auto_map": AUTO_MAP}, f,
                      indent=2)
        write_code(directory, HF_ENTRY)
        write_sentence_transformers_files(directory, ENCODER_DIR, self.encoder.pooling, self.encoder.max_length,
                                          self.encoder.hidden_size)
        with open(os.path.join(directory, CARD_NAME), "w") as f:
            f.write(str(build_model_card(self, results, conll, fast)))

    def write_config_files(self, directory):
        """multitask_config.json (what the model is) and word_rules.json (how it splits words)."""
        with open(os.path.join(directory, CONFIG_NAME), "w") as f:
            json.dump(self.config_dict(), f, indent=2)
        with open(os.path.join(directory, WORD_RULES_NAME), "w", encoding="utf-8") as f:
            json.dump(self.word_rules or english_rules(), f, ensure_ascii=False)

    def _write_weights(self, directory):
        """encoder/, heads.safetensors and (with task layers) task_layers.safetensors."""
        os.makedirs(os.path.join(directory, ENCODER_DIR))
        self.encoder.write_files(os.path.join(directory, ENCODER_DIR))
        heads = {f"{name}.{k}": v for name, head in self.heads.items() for k, v in head.state_dict().items()}
        save_file({k: v.detach().cpu().contiguous() for k, v in heads.items()}, os.path.join(directory, HEADS_NAME))
        if self.task_layers:
            branches = {f"{name}.{k}": v for name, b in self.branches.items() for k, v in b.state_dict().items()}
            save_file({k: v.detach().cpu().contiguous() for k, v in branches.items()},
                      os.path.join(directory, TASK_LAYERS_NAME))

    def export_fast(self, path, texts=None, quantize=None, fuse=None, results=None, conll=None):
        """A folder for fast CPU serving: everything save_pretrained writes plus fast/ (the whole forward as an ONNX
        Runtime graph, and fast_model.py, which serves it without torch: serving.export_onnx). from_pretrained(path)
        loads it and predict / predict_tags / encode then run through ONNX Runtime (precision='auto' or 'fast'; 'fp32'
        etc. still use the torch weights).

        texts: held-out texts (not trained on): with quantize 'auto' (the default, serving.QUANTIZE) the fastest of
        serving.CANDIDATES (int8 ones) that keeps every task's answers on them is kept, fp32 without texts; or name
        a candidate. fuse: ONNX Runtime's transformer fusions (default serving.FUSE). The model card records the
        export kept and what each candidate measured. Atomic like save_pretrained."""
        def write(directory):
            self._write_weights(directory)
            self.write_config_files(directory)
            fast = export_onnx(self, os.path.join(directory, FAST_DIR), quantize or QUANTIZE,
                               FUSE if fuse is None else fuse, texts)
            self._write_portable_files(directory, results, conll, fast)

        return atomic_write_dir(path, write)

    @classmethod
    def from_pretrained(cls, path, device=None):
        """Load a directory written by save_pretrained() (format 6, or 5: written before folders carried their code
        and word rules; it splits words with spaCy's rules as installed); a partial, damaged or mismatched directory
        is a clear error naming the file (ModelLoadError)."""
        path = os.fspath(path)
        config, tasks = _read_saved_config(path)
        encoder = SentenceTransformer(os.path.join(path, ENCODER_DIR), pooling=config["pooling"],
                                      max_length=config["max_length"], attention_dropout=config["attention_dropout"])
        task_layers = config.get("task_layers", 0)  # absent: saved before task layers existed
        if task_layers and not os.path.exists(os.path.join(path, TASK_LAYERS_NAME)):
            raise ModelLoadError(f"'{path}' has task_layers={task_layers} in its {CONFIG_NAME} but no "
                                 f"{TASK_LAYERS_NAME} (the tasks' own top layers); re-save the model.")
        try:
            model = cls(encoder, tasks=tasks, clean=config["clean"], attention_dropout=config["attention_dropout"],
                        task_layers=task_layers)
        except InputError as e:
            raise ModelLoadError(f"{os.path.join(path, CONFIG_NAME)} cannot be rebuilt ({e}); re-save the model.") from e
        model.trained_tasks = config.get("trained_tasks")
        if config["format_version"] >= 6:
            model.word_rules = read_saved_json(os.path.join(path, WORD_RULES_NAME), required=("special_cases",))
        model._load_weights(path)
        fast_dir = os.path.join(path, FAST_DIR)
        if os.path.isdir(fast_dir):
            try:
                model.fast = FastRunner(fast_dir, threads=torch.get_num_threads())
            except ImportError:
                raise
            except Exception as e:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) share no useful base class
                raise ModelLoadError(f"The fast model in '{fast_dir}' could not be loaded ({str(e).splitlines()[0]}); "
                                     "re-export it with model.export_fast(dir) or main.py --export-fast DIR.") from e
        model.eval()  # as transformers and sentence-transformers load: no dropout until .train()
        return model.to(device) if device is not None else model

    def _load_weights(self, path):
        """The heads (and task layers) of a saved folder into this model; ModelLoadError when they do not fit."""
        heads = load_saved_tensors(os.path.join(path, HEADS_NAME))
        try:
            for name, head in self.heads.items():
                head.load_state_dict({k[len(name) + 1:]: v for k, v in heads.items() if k.startswith(name + ".")})
            if self.task_layers:
                branches = load_saved_tensors(os.path.join(path, TASK_LAYERS_NAME))
                for name, branch in self.branches.items():
                    branch.load_state_dict({k[len(name) + 1:]: v for k, v in branches.items()
                                            if k.startswith(name + ".")})
        except RuntimeError as e:
            sizes = ", ".join(f"{t.name} {len(t.labels)} labels" for t in self.tasks.values())
            raise ModelLoadError(
                f"The heads{' or task layers' if self.task_layers else ''} in '{path}' do not match its {CONFIG_NAME} "
                f"({sizes}, hidden size {self.encoder.hidden_size}); the directory was edited or mixed from two runs "
                f"— re-save the model. Detail: {str(e).splitlines()[0]}") from e
