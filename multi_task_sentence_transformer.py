"""A multi-task sentence transformer: one shared encoder, a topic head and a BIO NER head.

    model = MultiTaskSentenceTransformer()            # packaged MiniLM encoder, fresh heads
    model.predict("Apple opens a store in Paris.")
    # {'label': 'Sci/Tech', 'score': 0.93, 'entities': [{'text': 'Apple', 'type': 'ORG', 'start': 0, 'end': 5}, ...]}

The encoder is the `SentenceTransformer` module itself. NER is decided per word (the first wordpiece of
each word carries the word's tag); words come from spaCy's English tokenizer (`text_prep.split_words`),
the same segmentation the silver labels were made on. Nothing is loaded at import time.
"""
import json
import math
import os
from typing import NamedTuple

import torch
from torch import nn

from atomic_io import atomic_write_dir
from data_sources import AG_NEWS_LABELS
from errors import InputError, InputTypeError
from ner_tags import build_tag_list
from precision import AUTOCAST_DTYPES, resolve_precision
from sentence_transformer import (
    ModelLoadError,
    SentenceTransformer,
    check_texts,
    length_sorted_batches,
    load_saved_tensors,
    pad_ids,
    pool,
    read_saved_json,
    require_keys,
)
from text_prep import WORD_SHAPES, clean_text_with_spans, split_words, word_shape

CONFIG_NAME = "multitask_config.json"
HEADS_NAME = "heads.safetensors"
ENCODER_DIR = "encoder"
SAVED_CONFIG_KEYS = ("label_names", "tags", "pooling", "max_length", "clean", "classifier_dropout", "ner_dropout",
                     "attention_dropout", "ner_window", "ner_context")  # what from_pretrained reads
FORMAT_VERSION = 4  # 2: the NER head sees word shapes; 3: so did the encoder's input; 4: the NER head only (+context)
# Modules saved in heads.safetensors (everything outside the Hugging Face encoder directory).
HEAD_MODULES = ("classifier", "ner_head")
NER_WINDOW = 4   # word shapes of +-N neighbouring tokens reach the NER head
NER_CONTEXT = 1  # the NER head's hidden layer reads +-N neighbouring tokens (0 = the token alone)
IGNORE_INDEX = -100
# Long texts: a row longer than one window (max_length wordpieces) is tagged in overlapping word windows; consecutive
# windows share up to this fraction of a window's wordpieces (whole words), so every word near a cut also lies well
# inside a neighbouring window. Topic and sentence embedding read the first window only (as training does).
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


def bio_to_spans(tags):
    """[(type, first_word, end_word_exclusive)] from BIO tags; a stray I- (or an I- of another type) starts a span
    (seqeval's get_entities, whose end is inclusive)."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, first, last + 1) for kind, first, last in get_entities(list(tags))]


class NerHead(nn.Module):
    """Per-token tag logits from the token embedding and the word shapes in a window around the token.

    The uncased encoder cannot see capitalisation, which spaCy's teacher leans on (it reads shapes in a window
    of +-4 tokens). Case enters the model here only: the head gets the shapes of the token and its `window`
    neighbours on each side, and a hidden layer lets shape and meaning interact (a linear head could only add a
    per-shape bias). With context > 0 that hidden layer is a convolution over [token embedding; shapes] of the
    token and its `context` neighbours, so a word's tag can also depend on how its neighbours read and are cased.
    The head stays one layer wide (cheap next to the encoder), which keeps the frozen-encoder feature cache fast.
    """

    def __init__(self, hidden, n_tags, dropout=0.1, shape_dim=16, window=2, context=0):
        super().__init__()
        self.window, self.context = window, context
        self.dropout = nn.Dropout(dropout)
        self.shape_embedding = nn.Embedding(len(WORD_SHAPES), shape_dim)
        features = hidden + (2 * window + 1) * shape_dim
        if context:
            self.hidden = nn.Conv1d(features, hidden, kernel_size=2 * context + 1, padding=context)
        else:
            self.hidden = nn.Linear(features, hidden)
        self.linear = nn.Linear(hidden, n_tags)

    def forward(self, token_embeddings, shape_ids, positions=None, attention_mask=None):
        """Logits [B, T, n_tags]; with a boolean positions mask [B, T], only those tokens: [n_selected, n_tags].
        attention_mask [B, T] zeroes padding before the context layer (so padding never reaches a token)."""
        padded = nn.functional.pad(shape_ids, (self.window, self.window))  # shape 0 ('pad') beyond the ends
        length = shape_ids.shape[1]
        windows = torch.stack([padded[:, k:k + length] for k in range(2 * self.window + 1)], -1)
        if self.context:
            if attention_mask is not None:
                token_embeddings = token_embeddings * attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
            shapes = self.shape_embedding(windows).flatten(-2).to(token_embeddings.dtype)
            features = torch.cat([self.dropout(token_embeddings), shapes], dim=-1)
            hidden = self.hidden(features.transpose(1, 2)).transpose(1, 2)
            if positions is not None:
                hidden = hidden[positions]
            return self.linear(nn.functional.gelu(hidden))
        if positions is not None:
            token_embeddings, windows = token_embeddings[positions], windows[positions]
        shapes = self.shape_embedding(windows).flatten(-2).to(token_embeddings.dtype)
        features = torch.cat([self.dropout(token_embeddings), shapes], dim=-1)
        return self.linear(nn.functional.gelu(self.hidden(features)))


class MultiTaskSentenceTransformer(nn.Module):
    """Shared SentenceTransformer encoder + classification head (pooled embedding) + NER head (token embeddings).

    encoder: a SentenceTransformer, or a model name / directory (None = packaged all-MiniLM-L6-v2).
    label_names: topic names (default AG News'); tags: BIO tag list (default ner_tags.build_tag_list()).
    classifier_dropout / ner_dropout: dropout before each linear head.
    clean: apply text_prep.clean_text to raw text in predict() (as the training data was cleaned).
    """

    def __init__(self, encoder=None, label_names=None, tags=None, classifier_dropout=0.1, ner_dropout=0.1,
                 pooling="mean", max_length=256, clean=True, attention_dropout=0.0, ner_window=NER_WINDOW,
                 ner_context=NER_CONTEXT):
        super().__init__()
        if not isinstance(encoder, SentenceTransformer):
            encoder = SentenceTransformer(encoder, pooling=pooling, max_length=max_length,
                                          attention_dropout=attention_dropout)
        elif attention_dropout is not None and encoder.attention_dropout != attention_dropout:
            raise InputError(f"The given encoder has attention_dropout={encoder.attention_dropout}, not "
                             f"{attention_dropout}; build it with that setting, or pass attention_dropout=None.")
        self.encoder = encoder
        self.label_names = list(label_names if label_names is not None else AG_NEWS_LABELS)
        self.tags = list(tags if tags is not None else build_tag_list())
        if not self.label_names or not self.tags or self.tags[0] != "O":
            raise InputError("label_names must be non-empty and tags must start with 'O' (see build_tag_list()).")
        self.clean = clean
        self.classifier_dropout, self.ner_dropout = classifier_dropout, ner_dropout
        self.ner_window, self.ner_context = ner_window, ner_context
        hidden = encoder.hidden_size
        self.classifier = nn.Sequential(nn.Dropout(classifier_dropout), nn.Linear(hidden, len(self.label_names)))
        self.ner_head = NerHead(hidden, len(self.tags), ner_dropout, window=ner_window, context=ner_context)
        self.fast = None  # a serving.FastRunner when loaded from an export_fast() folder
        # {"topic": bool, "ner": bool}: which heads training has taught (set by the trainer, saved with the model);
        # None where unknown (a model built by hand, or saved before this was recorded): then every head answers.
        self.trained_tasks = None
        self._noted_untrained = set()

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    @property
    def device(self):
        return next(self.parameters()).device

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, token_embeddings=None,
                shape_ids=None, ner_positions=None):
        """{'cls_logits': [B, n_labels], 'ner_logits': [B, T, n_tags], 'sentence_embedding': [B, H]} (the pooled,
        unnormalised sentence embedding the topic head reads; the trainer's embedding distillation uses it).

        shape_ids [B, T]: each token's word shape (tokenize_words); None counts every token as 'pad' (unknown).
        ner_positions [B, T] (bool): tag only these tokens (e.g. first wordpieces); ner_logits is then
        [n_selected, n_tags], in row-major order. Training uses it to skip tokens that carry no label.
        Pass token_embeddings (cached outputs of a frozen encoder) instead of input_ids to skip the encoder.
        """
        if shape_ids is None:
            reference = input_ids if input_ids is not None else token_embeddings[..., 0]
            shape_ids = torch.zeros(reference.shape[:2], dtype=torch.long, device=reference.device)
        if token_embeddings is None:
            out = self.encoder(input_ids, attention_mask, token_type_ids)  # the sentence transformer, unchanged
            token_embeddings, sentence = out["token_embeddings"], out["sentence_embedding"]
        else:
            sentence = pool(token_embeddings, attention_mask, self.encoder.pooling)
        return {"cls_logits": self.classifier(sentence),
                "ner_logits": self.ner_head(token_embeddings, shape_ids, ner_positions, attention_mask),
                "sentence_embedding": sentence}

    # ----------------------------------------------------------------- inference
    def head_is_trained(self, task):
        """False only where the saved record says this head ('topic' or 'ner') was never trained; notes it once."""
        trained = self.trained_tasks is None or bool(self.trained_tasks.get(task, True))
        if not trained and task not in self._noted_untrained:
            import warnings

            self._noted_untrained.add(task)
            what = {"topic": "no topic label (label and score are None)", "ner": "no entities (every tag is 'O')"}[task]
            warnings.warn(f"this model's {task} head was never trained (trained_tasks={self.trained_tasks}), so "
                          f"predictions give {what}; train it with that task's loss switched on (e.g. main.py "
                          f"without --w-{'cls' if task == 'topic' else 'ner'} 0).", UserWarning, stacklevel=3)
        return trained

    def _forward_batch(self, input_ids, mask, shapes, precision, outputs):
        """{name: CPU tensor} for the requested outputs (cls_logits, ner_logits, sentence_embedding) of one batch."""
        if precision == "fast":
            return {k: torch.from_numpy(v) for k, v in self.fast.run(input_ids, mask, shapes, outputs).items()}
        device = self.device
        with torch.autocast(device.type, dtype=AUTOCAST_DTYPES.get(precision), enabled=precision != "fp32"):
            out = self(input_ids.to(device), mask.to(device), shape_ids=shapes.to(device))
        return {k: v.float().cpu() for k, v in out.items() if k in outputs}

    @torch.inference_mode()
    def _run(self, words_batch, batch_size, precision="auto", outputs=("cls_logits", "ner_logits")):
        """Per row: {'probs': topic probabilities [n_labels], 'tags': one tag per word, 'embedding': [H]} (the keys
        `outputs` asks for) for pre-split words.

        Topic probabilities and the embedding read the row's first window (the row truncated at max_length, as in
        training). Tags cover the whole row: a row longer than one window is also cut into overlapping word windows
        (plan_windows), every window runs through the same length-sorted batches, and each word takes its tag from
        the window where it lies farthest from a cut edge (the most context on both sides)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
        precision = resolve_precision(precision, self.device, fast_available=self.fast is not None)
        was_training = self.training
        self.eval()
        max_length = self.encoder.max_length
        enc = tokenize_words(self.tokenizer, words_batch, max_length)  # first windows, exactly as before
        later = self._later_windows(words_batch, enc) if "ner_logits" in outputs else []
        cut = {w.row for w in later}  # rows whose first window is cut at its end
        windows = [Window(i, enc["input_ids"][i], enc["shape_ids"][i], enc["positions"][i], enc["word_index"][i],
                          at_start=True, at_end=i not in cut) for i in range(len(words_batch))] + later
        results = [{} for _ in words_batch]
        best = {}  # (row, word) -> edge distance of the window its tag came from
        for i, words in enumerate(words_batch):
            if "ner_logits" in outputs:
                results[i]["tags"] = ["O"] * len(words)  # words with no wordpiece stay 'O'
        ids = [w.input_ids for w in windows]
        for batch, input_ids, mask in length_sorted_batches(ids, batch_size, self.tokenizer.pad_token_id or 0):
            shapes, _ = pad_ids([windows[j].shape_ids for j in batch])
            out = self._forward_batch(input_ids, mask, shapes, precision, outputs)
            probs = out["cls_logits"].softmax(-1) if "cls_logits" in out else None
            tag_ids = out["ner_logits"].argmax(-1).tolist() if "ner_logits" in out else None
            for row, j in enumerate(batch):
                window = windows[j]
                i, at_start, at_end = window.row, window.at_start, window.at_end
                if at_start:  # the row's first window: topic and embedding
                    if probs is not None:
                        results[i]["probs"] = probs[row]
                    if "sentence_embedding" in out:
                        results[i]["embedding"] = out["sentence_embedding"][row]
                if tag_ids is None:
                    continue
                last = len(window.input_ids) - 2  # the last content piece (before [SEP])
                for t, w in zip(window.positions, window.word_index):
                    # pieces of context on the nearer cut side (a side at the text's own start / end is no cut)
                    edge = min(t - 1 if not at_start else math.inf, last - t if not at_end else math.inf)
                    if edge > best.get((i, w), -1):
                        best[(i, w)] = edge
                        results[i]["tags"][w] = self.tags[tag_ids[row][t]]
        self.train(was_training)
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
        """Per text: (raw_starts, raw_ends, words, word_starts); cleaning as in training, spaCy word splitting."""
        prepared = []
        for text in texts:
            # raw_starts[i]:raw_ends[i] is the stretch of the raw text that produced clean char i.
            clean, raw_starts, raw_ends = clean_text_with_spans(text) if self.clean else (
                text, range(len(text)), range(1, len(text) + 1))
            words, starts = split_words(clean)
            prepared.append((raw_starts, raw_ends, words, starts))
        return prepared

    def predict(self, texts, batch_size=32, precision="auto"):
        """Topic and entities for raw strings: {'label', 'score', 'entities': [{'text','type','start','end'}]}.

        Offsets index the string as given (text[start:end] is the entity), whatever cleaning is applied
        internally. A single string gives one dict, a list gives a list of dicts.
        precision: 'auto' (the exported fast path when loaded from an export_fast() folder on the CPU, else bf16
        where the device runs it fast, else fp32), 'fp32', 'bf16', 'fp16' (CUDA) or 'fast'.
        """
        texts, single = check_texts(texts)
        prepared = self._prepare(texts)
        topic, ner = (self.head_is_trained(t) for t in ("topic", "ner")) if texts else (True, True)
        runs = self._run([p[2] for p in prepared], batch_size, precision) if texts else []
        results = []
        for text, (raw_starts, raw_ends, words, starts), run in zip(texts, prepared, runs):
            probs, word_tags = run["probs"], run["tags"] if ner else []
            entities = []
            for kind, first, end in bio_to_spans(word_tags):
                s, e = starts[first], starts[end - 1] + len(words[end - 1])
                start, stop = raw_starts[s], raw_ends[e - 1]
                entities.append({"text": text[start:stop], "type": kind, "start": start, "end": stop})
            best = int(probs.argmax())
            label, score = (self.label_names[best], float(probs[best])) if topic else (None, None)
            results.append({"label": label, "score": score, "entities": entities})
        return results[0] if single else results

    def predict_tags(self, words_batch, batch_size=32, precision="auto"):
        """One BIO tag per given word, for pre-tokenised text (e.g. a CoNLL gold file); precision as in predict()."""
        if not isinstance(words_batch, (list, tuple)) or not all(
                isinstance(ws, (list, tuple)) and all(isinstance(w, str) for w in ws) for ws in words_batch):
            raise InputTypeError("predict_tags expects a list of word lists (list[list[str]]).")
        if not words_batch:
            resolve_precision(precision, self.device, fast_available=self.fast is not None)  # still check the flag
            return []
        runs = self._run([list(ws) for ws in words_batch], batch_size, precision, outputs=("ner_logits",))
        if not self.head_is_trained("ner"):
            return [["O"] * len(r["tags"]) for r in runs]
        return [r["tags"] for r in runs]

    def encode(self, texts, batch_size=32, normalize=False, convert_to="numpy", precision="auto"):
        """Sentence embeddings [N, H] (a single string: [H]) of the shared encoder, on exactly the input predict()
        feeds it (cleaned text, spaCy words, word shapes); runs through the fast path like predict(). For token
        embeddings or the bare encoder use model.encoder.encode()."""
        if convert_to not in ("numpy", "tensor"):
            raise InputError(f"convert_to must be 'numpy' or 'tensor', got {convert_to!r}.")
        texts, single = check_texts(texts)
        words = [p[2] for p in self._prepare(texts)]
        if texts:
            runs = self._run(words, batch_size, precision, outputs=("sentence_embedding",))
            emb = torch.stack([r["embedding"] for r in runs])
        else:
            resolve_precision(precision, self.device, fast_available=self.fast is not None)
            emb = torch.empty(0, self.encoder.hidden_size)
        if normalize:
            emb = nn.functional.normalize(emb, p=2, dim=-1)
        emb = emb[0] if single else emb
        return emb.numpy() if convert_to == "numpy" else emb

    # ----------------------------------------------------------------- save / load
    def config_dict(self):
        return {"format_version": FORMAT_VERSION, "label_names": self.label_names, "tags": self.tags,
                "pooling": self.encoder.pooling, "max_length": self.encoder.max_length, "clean": self.clean,
                "classifier_dropout": self.classifier_dropout, "ner_dropout": self.ner_dropout,
                "attention_dropout": self.encoder.attention_dropout, "ner_window": self.ner_window,
                "ner_context": self.ner_context, "hidden_size": self.encoder.hidden_size,
                "trained_tasks": self.trained_tasks}

    def save_pretrained(self, path):
        """encoder/ (HF format), heads.safetensors, multitask_config.json; written to a temp dir, then renamed."""
        return atomic_write_dir(path, self.write_files)

    def write_files(self, directory):
        """What save_pretrained writes, into an existing directory (no atomicity of its own)."""
        from safetensors.torch import save_file

        os.makedirs(os.path.join(directory, ENCODER_DIR))
        self.encoder.write_files(os.path.join(directory, ENCODER_DIR))
        heads = {f"{name}.{k}": v for name in HEAD_MODULES for k, v in getattr(self, name).state_dict().items()}
        save_file({k: v.detach().cpu().contiguous() for k, v in heads.items()}, os.path.join(directory, HEADS_NAME))
        with open(os.path.join(directory, CONFIG_NAME), "w") as f:
            json.dump(self.config_dict(), f, indent=2)
        from model_card import CARD_NAME, build_model_card  # the Hub's README.md; main.py adds the run's metrics

        with open(os.path.join(directory, CARD_NAME), "w") as f:
            f.write(str(build_model_card(self)))

    def export_fast(self, path, quantize=None, fuse=None):
        """A folder for fast CPU serving: everything save_pretrained writes plus fast/ (the whole forward as an ONNX
        Runtime graph, see serving.export_onnx). from_pretrained(path) loads it and predict / predict_tags / encode
        then run through ONNX Runtime (precision='auto' or 'fast'; 'fp32' etc. still use the torch weights).
        quantize: 'none' | 'ffn' | 'encoder' (default serving.QUANTIZE); fuse: ONNX Runtime's transformer fusions
        (default serving.FUSE). Atomic like save_pretrained."""
        import serving

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
        missing = [n for n in (CONFIG_NAME, HEADS_NAME, ENCODER_DIR) if not os.path.exists(os.path.join(path, n))]
        if missing:
            raise ModelLoadError(
                f"'{path}' is not a complete saved multi-task model (missing {', '.join(missing)}); point at a "
                "directory written by save_pretrained() (main.py writes <output-dir>/model), or re-run training."
            )
        config = read_saved_json(os.path.join(path, CONFIG_NAME), required=("format_version",))
        if config.get("format_version") != FORMAT_VERSION:
            raise ModelLoadError(
                f"'{path}' was saved in format {config.get('format_version')}, this code reads format "
                f"{FORMAT_VERSION} (the NER head or the encoder's input changed); retrain it with main.py, or load it with the code "
                "version that wrote it.")
        require_keys(config, os.path.join(path, CONFIG_NAME), SAVED_CONFIG_KEYS)  # every key, before any load
        encoder = SentenceTransformer(os.path.join(path, ENCODER_DIR), pooling=config["pooling"],
                                      max_length=config["max_length"], attention_dropout=config["attention_dropout"])
        model = cls(encoder, label_names=config["label_names"], tags=config["tags"], clean=config["clean"],
                    classifier_dropout=config["classifier_dropout"], ner_dropout=config["ner_dropout"],
                    attention_dropout=config["attention_dropout"], ner_window=config["ner_window"],
                    ner_context=config["ner_context"])
        model.trained_tasks = config.get("trained_tasks")  # absent in models saved before it was recorded
        heads = load_saved_tensors(os.path.join(path, HEADS_NAME))
        try:
            for name in HEAD_MODULES:
                getattr(model, name).load_state_dict({k[len(name) + 1:]: v for k, v in heads.items()
                                                      if k.startswith(name + ".")})
        except RuntimeError as e:
            raise ModelLoadError(
                f"The heads in '{path}' do not match its {CONFIG_NAME} ({len(config['label_names'])} labels, "
                f"{len(config['tags'])} tags, hidden size {encoder.hidden_size}); the directory was edited or mixed "
                f"from two runs — re-save the model. Detail: {str(e).splitlines()[0]}"
            ) from e
        fast_dir = os.path.join(path, "fast")
        if os.path.isdir(fast_dir):
            import serving

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

        The encoder is exactly what the heads read (no input of its own besides token ids), so the exported
        embeddings are the ones model.encoder.encode() gives. Written by sentence-transformers' own Transformer and
        Pooling modules."""
        from sentence_transformers import SentenceTransformer as Reference
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

        enc = self.encoder

        def write(directory):
            enc.encoder.save_pretrained(directory)  # the HF files Transformer() reads, then re-saves beside its own
            enc.tokenizer.save_pretrained(directory)
            transformer = Transformer(directory, max_seq_length=enc.max_length)
            pooling = Pooling(enc.hidden_size, pooling_mode=enc.pooling)
            Reference(modules=[transformer, pooling], device="cpu").save(directory)

        return atomic_write_dir(path, write)
