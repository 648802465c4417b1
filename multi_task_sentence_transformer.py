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
import math
import os
import warnings
from typing import NamedTuple

import torch
from safetensors.torch import save_file
from torch import nn

import serving
from atomic_io import atomic_write_dir
from errors import InputError, InputTypeError
from model_card import CARD_NAME, build_model_card  # the Hub's README.md; main.py adds the run's metrics
from precision import inference_weights, resolve_precision, run_in_precision
from sentence_transformer import (
    ModelLoadError,
    SentenceTransformer,
    apply_layers,
    check_texts,
    length_sorted_batches,
    load_saved_tensors,
    pad_ids,
    pool,
    read_saved_json,
    require_keys,
)
from tasks import (  # noqa: F401
    IGNORE_INDEX,
    TAGGING_CONTEXT,
    TAGGING_WINDOW,
    Task,
    bio_to_spans,
    check_tasks,
    default_tasks,
    first_of,
)
from text_prep import clean_text_with_spans, split_words, word_shape

CONFIG_NAME = "multitask_config.json"
HEADS_NAME = "heads.safetensors"
TASK_LAYERS_NAME = "task_layers.safetensors"  # each task's private top layers (task_layers > 0), keys "<task>.<param>"
ENCODER_DIR = "encoder"
SAVED_CONFIG_KEYS = ("tasks", "pooling", "max_length", "clean", "attention_dropout")  # what from_pretrained reads
FORMAT_VERSION = 5  # 2: NER head sees word shapes; 3: so did the encoder; 4: the NER head only (+context); 5: tasks
EMBEDDING = "sentence_embedding"  # forward()'s and run()'s key for the pooled sentence embedding
TOKENS = "token_embeddings"      # run()'s key for the shared encoder's token embeddings
# Long texts: a row longer than one window (max_length wordpieces) is tagged in overlapping word windows; consecutive
# windows share up to this fraction of a window's wordpieces (whole words), so every word near a cut also lies well
# inside a neighbouring window. Sentence tasks and the sentence embedding read the first window only (as training).
WINDOW_OVERLAP = 0.25


def tokenize_words(tokenizer, words_batch, max_length, tag_ids_batch=None):
    """Wordpiece ids for pre-split words, their word shapes, and word-aligned labels when tag ids are given.

    Returns a dict of per-row lists: input_ids; shape_ids (each piece carries its word's WORD_SHAPES index,
    0 on special tokens); positions (index of each word's first wordpiece) and word_index (which word each
    of those is: words that become zero wordpieces have none); labels (only with tag ids): the
    word's tag id on its first wordpiece, IGNORE_INDEX on every other piece and on special tokens. Words cut
    off by truncation at max_length have no position (training skips them; inference tags them in later windows,
    MultiTaskSentenceTransformer._run).
    """
    enc = tokenizer(words_batch, is_split_into_words=True, truncation=True, max_length=max_length)
    out = {"input_ids": enc["input_ids"], "shape_ids": [], "positions": [], "word_index": [], "labels": []}
    for row, words in enumerate(words_batch):
        word_ids = enc.word_ids(row)
        shapes = [word_shape(w) for w in words]
        firsts = [t for t, w in enumerate(word_ids) if w is not None and (t == 0 or word_ids[t - 1] != w)]
        out["positions"].append(firsts)
        out["word_index"].append([word_ids[t] for t in firsts])
        out["shape_ids"].append([0 if w is None else shapes[w] for w in word_ids])
        if tag_ids_batch is not None:
            row_labels = [IGNORE_INDEX] * len(word_ids)
            for t in firsts:
                row_labels[t] = tag_ids_batch[row][word_ids[t]]
            out["labels"].append(row_labels)
    return out


def plan_windows(counts, budget, overlap):
    """[(first_word, end_word)] windows over a row whose words have `counts` wordpieces each: every window holds as
    many whole words as fit in `budget` pieces (at least one word: a longer word is cut at the window's end), and
    starts at the words of the previous one's last `overlap` pieces (fewer where the next word would not fit)."""
    windows, start, n = [], 0, len(counts)
    while True:
        end, used = start, 0
        while end < n and (end == start or used + counts[end] <= budget):
            used += counts[end]
            end += 1
        windows.append((start, end))
        if end >= n:
            return windows
        nxt, shared = end, 0  # back off over the shared words, leaving room for the next word (progress)
        while nxt - 1 > start and shared + counts[nxt - 1] <= min(overlap, budget - counts[end]):
            nxt -= 1
            shared += counts[nxt]
        start = nxt


class Window(NamedTuple):
    """One encoder window of a row for windowed tagging: the row's first window, or a later one of a long row."""
    row: int              # index of the row in the batch
    input_ids: list       # wordpiece ids with special tokens
    shape_ids: list       # each piece's word shape
    positions: list       # the positions of the words' first pieces
    word_index: list      # the row's word index of each of those positions
    at_start: bool        # the window starts at the row's start (no cut before it)
    at_end: bool          # the window ends at the row's end (no cut after it)


def best_windows(windows):
    """Per row, [(word, window index, k)]: for each word of the row the window (and its k-th first wordpiece) where
    the word lies farthest from a cut edge, pieces of context counted on the nearer cut side (a side at the text's own
    start / end is no cut); words in order. Words with no wordpiece in any window are absent."""
    best = {}  # (row, word) -> (edge distance, window index, k)
    for j, window in enumerate(windows):
        last = len(window.input_ids) - 2  # the last content piece (before [SEP])
        for k, (t, w) in enumerate(zip(window.positions, window.word_index)):
            edge = min(t - 1 if not window.at_start else math.inf, last - t if not window.at_end else math.inf)
            if edge > best.get((window.row, w), (-1,))[0]:
                best[(window.row, w)] = (edge, j, k)
    rows = [[] for _ in range(1 + max((w.row for w in windows), default=-1))]
    for (row, w), (_, j, k) in sorted(best.items()):
        rows[row].append((w, j, k))
    return rows


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


def check_task_layers(task_layers, encoder):
    """task_layers as an int in 0..the encoder's layer count (InputError naming the fix otherwise)."""
    if isinstance(task_layers, bool) or not isinstance(task_layers, int) or task_layers < 0:
        raise InputError(f"task_layers must be a whole number >= 0 (0 = every task reads the shared encoder), got "
                         f"{task_layers!r}.")
    if task_layers:
        encoder.check_splittable()
        _, layers = encoder.embeddings_and_layers()
        if task_layers > len(layers):
            raise InputError(f"task_layers={task_layers} but the encoder has {len(layers)} layers; pick 1.."
                             f"{len(layers)} (or 0: every task reads the shared encoder).")
    return task_layers


class MultiTaskSentenceTransformer(nn.Module):
    """Shared SentenceTransformer encoder + one head per task (tasks.py): sentence tasks read the pooled embedding,
    tagging tasks the token embeddings.

    encoder: a SentenceTransformer, or a model name / directory (None = packaged all-MiniLM-L6-v2).
    tasks: Task objects (tasks.py). Without them, the default pair: 'topic' (label_names, default AG News') and 'ner'
    (tags, default ner_tags.build_tag_list()), with classifier_dropout / ner_dropout / ner_window / ner_context.
    clean: apply text_prep.clean_text to raw text in predict() (as the training data was cleaned).
    task_layers: K > 0 gives every task a private copy of the encoder's top K layers (started from the shared ones):
    the shared encoder runs its lower layers once, each task's copy continues from there and its head reads the
    result. The shared encoder (all its layers) stays the sentence embedding of encode(). BERT and RoBERTa encoders.
    """

    def __init__(self, encoder=None, label_names=None, tags=None, classifier_dropout=0.1, ner_dropout=0.1,
                 pooling="mean", max_length=256, clean=True, attention_dropout=0.0, ner_window=TAGGING_WINDOW,
                 ner_context=TAGGING_CONTEXT, tasks=None, task_layers=0):
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
        self.fast = None  # a serving.FastRunner when loaded from an export_fast() folder
        # {task: bool}: which heads training has taught (set by the trainer, saved with the model); None where
        # unknown (a model built by hand): then every head answers.
        self.trained_tasks = None
        self._noted_untrained = set()

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
        if names is None:
            return list(self.tasks)
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self.tasks]
        if unknown:
            raise InputError(f"this model has no task {unknown[0]!r}; its tasks: {', '.join(self.tasks)}.")
        return names

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
        trained = self.trained_tasks is None or bool(self.trained_tasks.get(task, True))
        if not trained and task not in self._noted_untrained:
            self._noted_untrained.add(task)
            warnings.warn(f"this model's {task} head was never trained (trained_tasks={self.trained_tasks}), so "
                          f"predictions give {self.tasks[task].untrained_note}; train it with that task's loss switched on (main.py: "
                          f"--task-weights {task}=1, not in --freeze).", UserWarning, stacklevel=3)
        return trained

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

        Sentence tasks and the embedding read the row's first window (the row truncated at max_length, as in
        training). Per-word outputs cover the whole row: a row longer than one window is also cut into overlapping
        word windows (plan_windows), every window runs through the same batches (run()), and each word takes its
        tag from the window where it lies farthest from a cut edge (the most context on both sides)."""
        outputs = list(self.tasks) if outputs is None else list(outputs)
        per_word = [n for n in outputs if n in self.tasks and self.tasks[n].reads_words]
        enc = tokenize_words(self.tokenizer, words_batch, self.encoder.max_length)  # first windows
        later = self._later_windows(words_batch, enc) if per_word else []
        cut = {w.row for w in later}  # rows whose first window is cut at its end
        windows = [Window(i, enc["input_ids"][i], enc["shape_ids"][i], enc["positions"][i], enc["word_index"][i],
                          at_start=True, at_end=i not in cut) for i in range(len(words_batch))] + later
        outs = self.run({"input_ids": [w.input_ids for w in windows], "shape_ids": [w.shape_ids for w in windows],
                         "positions": [w.positions for w in windows]}, outputs, batch_size, precision)
        results = [{} for _ in words_batch]
        for window, out in zip(windows, outs):
            if window.at_start:  # the row's first window: sentence tasks and the embedding
                results[window.row].update({n: self.tasks[n].row_prediction(v) if n in self.tasks else v
                                            for n, v in out.items() if n not in per_word})
        if per_word:
            for i, chosen in enumerate(best_windows(windows)):
                for n in per_word:
                    logits = [outs[j][n][k] for _, j, k in chosen]
                    logits = torch.stack(logits) if logits else torch.zeros(0, len(self.tasks[n].labels))
                    results[i][n] = self.tasks[n].row_prediction(logits, [w for w, _, _ in chosen],
                                                                 len(words_batch[i]))
        return results

    def _later_windows(self, words_batch, enc):
        """Windows 2.. (Window) of the rows longer than one window (plan_windows); their first window is then cut at
        its end. Rows shorter than max_length pieces were never cut, so only full-length rows are counted."""
        max_length = self.encoder.max_length
        budget = max_length - self.tokenizer.num_special_tokens_to_add(pair=False)
        full = [i for i, ids in enumerate(enc["input_ids"]) if len(ids) >= max_length and words_batch[i]]
        if not full:
            return []
        pieces = self.tokenizer([words_batch[i] for i in full], is_split_into_words=True, add_special_tokens=False,
                                verbose=False)  # verbose=False: no 'longer than the maximum' warning
        later, parts = [], []
        for k, i in enumerate(full):
            counts = [0] * len(words_batch[i])
            for w in pieces.word_ids(k):
                if w is not None:
                    counts[w] += 1
            if sum(counts) <= budget:
                continue  # exactly one window long
            plan = plan_windows(counts, budget, max(0, int(budget * WINDOW_OVERLAP)))
            for start, end in plan[1:]:
                later.append((i, start, end == len(counts)))
                parts.append(words_batch[i][start:end])
        enc_later = tokenize_words(self.tokenizer, parts, max_length)
        return [Window(i, enc_later["input_ids"][k], enc_later["shape_ids"][k], enc_later["positions"][k],
                       [start + w for w in enc_later["word_index"][k]], at_start=False, at_end=at_end)
                for k, (i, start, at_end) in enumerate(later)]

    def _prepare(self, texts):
        """Per text its spans: (raw_starts, raw_ends, words, word_starts); cleaning as in training, spaCy word
        splitting."""
        prepared = []
        for text in texts:
            # raw_starts[i]:raw_ends[i] is the stretch of the raw text that produced clean char i.
            clean, raw_starts, raw_ends = clean_text_with_spans(text) if self.clean else (
                text, range(len(text)), range(1, len(text) + 1))
            words, starts = split_words(clean)
            prepared.append((raw_starts, raw_ends, words, starts))
        return prepared

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
        runs = self.run_words([p[2] for p in prepared], names, batch_size, precision) if texts else []
        results = [{n: self.tasks[n].decode(run[n], trained[n], text, spans) for n in names}
                   for text, spans, run in zip(texts, prepared, runs)]
        return results[0] if single else results

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
        words = [p[2] for p in self._prepare(texts)]
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

    def save_pretrained(self, path):
        """encoder/ (HF format), heads.safetensors, multitask_config.json; written to a temp dir, then renamed."""
        return atomic_write_dir(path, self.write_files)

    def write_files(self, directory):
        """What save_pretrained writes, into an existing directory (no atomicity of its own)."""
        os.makedirs(os.path.join(directory, ENCODER_DIR))
        self.encoder.write_files(os.path.join(directory, ENCODER_DIR))
        heads = {f"{name}.{k}": v for name, head in self.heads.items() for k, v in head.state_dict().items()}
        save_file({k: v.detach().cpu().contiguous() for k, v in heads.items()}, os.path.join(directory, HEADS_NAME))
        if self.task_layers:
            branches = {f"{name}.{k}": v for name, b in self.branches.items() for k, v in b.state_dict().items()}
            save_file({k: v.detach().cpu().contiguous() for k, v in branches.items()},
                      os.path.join(directory, TASK_LAYERS_NAME))
        with open(os.path.join(directory, CONFIG_NAME), "w") as f:
            json.dump(self.config_dict(), f, indent=2)

        with open(os.path.join(directory, CARD_NAME), "w") as f:
            f.write(str(build_model_card(self)))

    def export_fast(self, path, quantize=None, fuse=None):
        """A folder for fast CPU serving: everything save_pretrained writes plus fast/ (the whole forward as an ONNX
        Runtime graph, see serving.export_onnx). from_pretrained(path) loads it and predict / predict_tags / encode
        then run through ONNX Runtime (precision='auto' or 'fast'; 'fp32' etc. still use the torch weights).
        quantize: 'none' | 'ffn' | 'encoder' (default serving.QUANTIZE); fuse: ONNX Runtime's transformer fusions
        (default serving.FUSE). Atomic like save_pretrained."""
        def write(directory):
            self.write_files(directory)
            serving.export_onnx(self, os.path.join(directory, serving.FAST_DIR), quantize or serving.QUANTIZE,
                                serving.FUSE if fuse is None else fuse)

        return atomic_write_dir(path, write)

    @classmethod
    def from_pretrained(cls, path, device=None):
        """Load a directory written by save_pretrained(); a partial, damaged or mismatched directory is a clear error
        naming the file (ModelLoadError)."""
        path = os.fspath(path)
        missing = missing_saved_parts(path)
        if missing:
            raise ModelLoadError(
                f"'{path}' is not a complete saved multi-task model (missing {', '.join(missing)}); point at a "
                "directory written by save_pretrained() (main.py writes <output-dir>/model), or re-run training."
            )
        config = read_saved_json(os.path.join(path, CONFIG_NAME), required=("format_version",))
        if config.get("format_version") != FORMAT_VERSION:
            raise ModelLoadError(
                f"'{path}' was saved in format {config.get('format_version')}, this code reads format "
                f"{FORMAT_VERSION} (format 5 saves any number of tasks); retrain it with main.py, or load it with the code "
                "version that wrote it.")
        require_keys(config, os.path.join(path, CONFIG_NAME), SAVED_CONFIG_KEYS)  # every key, before any load
        try:
            tasks = [Task.from_config(t) for t in config["tasks"]]
        except (InputError, TypeError, AttributeError) as e:
            raise ModelLoadError(f"the tasks in {os.path.join(path, CONFIG_NAME)} cannot be rebuilt ({e}); the file "
                                 "was edited or damaged: re-save the model.") from e
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
        heads = load_saved_tensors(os.path.join(path, HEADS_NAME))
        try:
            for name, head in model.heads.items():
                head.load_state_dict({k[len(name) + 1:]: v for k, v in heads.items() if k.startswith(name + ".")})
            if task_layers:
                branches = load_saved_tensors(os.path.join(path, TASK_LAYERS_NAME))
                for name, branch in model.branches.items():
                    branch.load_state_dict({k[len(name) + 1:]: v for k, v in branches.items()
                                            if k.startswith(name + ".")})
        except RuntimeError as e:
            sizes = ", ".join(f"{t.name} {len(t.labels)} labels" for t in tasks)
            raise ModelLoadError(
                f"The heads{' or task layers' if task_layers else ''} in '{path}' do not match its {CONFIG_NAME} ({sizes}, hidden size {encoder.hidden_size}); "
                f"the directory was edited or mixed from two runs — re-save the model. Detail: "
                f"{str(e).splitlines()[0]}") from e
        fast_dir = os.path.join(path, "fast")
        if os.path.isdir(fast_dir):
            try:
                model.fast = serving.FastRunner(fast_dir)
            except ImportError:
                raise
            except Exception as e:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) share no useful base class
                raise ModelLoadError(f"The fast model in '{fast_dir}' could not be loaded ({str(e).splitlines()[0]}); "
                                     "re-export it with model.export_fast(dir) or main.py --export-fast DIR.") from e
        model.eval()  # as transformers and sentence-transformers load: no dropout until .train()
        return model.to(device) if device is not None else model

    def export_sentence_transformers(self, path):
        """A folder that `sentence_transformers.SentenceTransformer(path)` loads: this encoder plus its pooling.

        The encoder takes no input of its own besides token ids, so the exported embeddings are the ones
        model.encoder.encode() gives (the shared encoder's; with task_layers the heads read their own top layers). Written by sentence-transformers' own Transformer and
        Pooling modules."""
        from sentence_transformers import SentenceTransformer as Reference  # optional: only for this check
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

        enc = self.encoder

        def write(directory):
            enc.encoder.save_pretrained(directory)  # the HF files Transformer() reads, then re-saves beside its own
            enc.tokenizer.save_pretrained(directory)
            transformer = Transformer(directory, max_seq_length=enc.max_length)
            pooling = Pooling(enc.hidden_size, pooling_mode=enc.pooling)
            Reference(modules=[transformer, pooling], device="cpu").save(directory)

        return atomic_write_dir(path, write)
