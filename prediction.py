"""predict() around a batch runner: texts -> cleaned text and words -> wordpiece windows -> the runner's outputs ->
each task's decision -> predict()'s dicts.

    prepared = prepare_texts(texts, clean=True, split=splitter.split)   # per text: its words and where they came from
    rows = tokenize_words(tokenizer, words_batch, max_length)          # the first windows: ids, shapes, positions
    runs = run_words(words_batch, names, tasks, tokenizer, max_length, run)   # long rows in overlapping windows
    outputs = decode_rows(texts, prepared, runs, names, tasks, trained)

numpy and a `tokenizers.Tokenizer` only (a transformers tokenizer's `backend_tokenizer`, or tokenizer.json read by
`tokenizers`), no torch: the PyTorch model (multi_task_sentence_transformer) and the ONNX Runtime runner of an
exported folder (fast_model.py) both run this code; only their batch runners differ. Tagging is decided per word
(the first wordpiece of each word carries the word's tag).
"""
import math
import warnings
from typing import NamedTuple

import numpy as np

from errors import InputError, InputTypeError
from tasks import IGNORE_INDEX
from text_prep import clean_text_with_spans, word_shape

# Long texts: a row longer than one window (max_length wordpieces) is tagged in overlapping word windows; consecutive
# windows share up to this fraction of a window's wordpieces (whole words), so every word near a cut also lies well
# inside a neighbouring window. Sentence tasks and the sentence embedding read the first window only (as training).
WINDOW_OVERLAP = 0.25
EMBEDDING = "sentence_embedding"  # the runners' key for the pooled sentence embedding


def check_texts(texts):
    """A list of strings (a single string becomes a list of one); anything else is a clear TypeError."""
    if isinstance(texts, str):
        return [texts], True
    if texts is None or not isinstance(texts, (list, tuple)):
        raise InputTypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}.")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputTypeError(
                f"texts[{i}] is {type(t).__name__}, not str; pass strings only (decode bytes, drop None, str() numbers)."
            )
    return list(texts), False


def check_task_names(names, tasks):
    """names (None = every task of `tasks`) as a list, refused when one is not a task (naming the ones there are)."""
    if names is None:
        return list(tasks)
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in tasks]
    if unknown:
        raise InputError(f"this model has no task {unknown[0]!r}; its tasks: {', '.join(tasks)}.")
    return names


def head_is_trained(name, tasks, trained_tasks, noted):
    """False only where the saved record (trained_tasks: {name: bool}, None = unknown) says the task's head was never
    trained; warns once per name (noted: the names warned about)."""
    trained = trained_tasks is None or bool(trained_tasks.get(name, True))
    if not trained and name not in noted:
        noted.add(name)
        warnings.warn(f"this model's {name} head was never trained (trained_tasks={trained_tasks}), so predictions "
                      f"give {tasks[name].untrained_note}; train it with that task's loss switched on (main.py: "
                      f"--task-weights {name}=1, not in --freeze).", UserWarning, stacklevel=4)
    return trained


class Prepared(NamedTuple):
    """A text as predict() reads it: clean char i came from raw[raw_starts[i]:raw_ends[i]]; words and their offsets
    in the clean text."""
    raw_starts: list
    raw_ends: list
    words: list
    word_starts: list


def prepare_texts(texts, clean, split):
    """Per text its Prepared: cleaning as in training (text_prep.clean_text_with_spans, when clean), words by split
    (text -> (words, offsets): the model's word splitter)."""
    prepared = []
    for text in texts:
        cleaned, raw_starts, raw_ends = clean_text_with_spans(text) if clean else (
            text, range(len(text)), range(1, len(text) + 1))
        words, starts = split(cleaned)
        prepared.append(Prepared(raw_starts, raw_ends, words, starts))
    return prepared


def pad_arrays(id_lists, pad_value=0):
    """Right-pad lists of token ids into (ids [B, T], attention_mask [B, T]) int64 arrays, T the longest list."""
    width = max((len(x) for x in id_lists), default=0)
    ids = np.full((len(id_lists), width), pad_value, dtype=np.int64)
    mask = np.zeros((len(id_lists), width), dtype=np.int64)
    for row, x in enumerate(id_lists):
        ids[row, :len(x)] = x
        mask[row, :len(x)] = 1
    return ids, mask


def length_sorted_batches(id_lists, batch_size, pad_id=0):
    """Yield (indices, input_ids [B, T], attention_mask [B, T]) (numpy) over rows sorted longest first, each batch
    padded to its own longest row. Callers store each result at its index, which restores the input order (sorting
    by length keeps padding, and so wasted compute, small)."""
    order = sorted(range(len(id_lists)), key=lambda i: -len(id_lists[i]))
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        yield (indices, *pad_arrays([id_lists[i] for i in indices], pad_id))


def backend(tokenizer):
    """The `tokenizers.Tokenizer` of a tokenizer: a transformers tokenizer's backend_tokenizer, or itself."""
    return getattr(tokenizer, "backend_tokenizer", tokenizer)


def encode_words(tokenizer, words_batch, max_length=None, special_tokens=True):
    """tokenizers' Encodings of rows of pre-split words, truncated at max_length (None: not), never padded. The
    tokenizer's own truncation and padding settings are set for the call (a tokenizer.json may carry others)."""
    tokenizer = backend(tokenizer)
    if max_length:
        tokenizer.enable_truncation(max_length)
    else:
        tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer.encode_batch([list(w) for w in words_batch], is_pretokenized=True,
                                  add_special_tokens=special_tokens)


def tokenize_words(tokenizer, words_batch, max_length, tag_ids_batch=None):
    """Wordpiece ids for pre-split words, their word shapes, and word-aligned labels when tag ids are given.

    Returns a dict of per-row lists: input_ids; shape_ids (each piece carries its word's WORD_SHAPES index, 0 on
    special tokens); positions (index of each word's first wordpiece) and word_index (which word each of those is:
    words that become zero wordpieces have none); labels (only with tag ids): the word's tag id on its first
    wordpiece, IGNORE_INDEX on every other piece and on special tokens. Words cut off by truncation at max_length have
    no position (training skips them; inference tags them in later windows, run_words).
    """
    out = {"input_ids": [], "shape_ids": [], "positions": [], "word_index": [], "labels": []}
    for row, (words, enc) in enumerate(zip(words_batch, encode_words(tokenizer, words_batch, max_length))):
        word_ids = enc.word_ids
        shapes = [word_shape(w) for w in words]
        firsts = [t for t, w in enumerate(word_ids) if w is not None and (t == 0 or word_ids[t - 1] != w)]
        out["input_ids"].append(enc.ids)
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


def later_windows(tokenizer, words_batch, enc, max_length):
    """Windows 2.. (Window) of the rows longer than one window (plan_windows); their first window (enc: tokenize_words
    of the rows) is then cut at its end. Rows shorter than max_length pieces were never cut, so only full-length rows
    are counted."""
    budget = max_length - backend(tokenizer).post_processor.num_special_tokens_to_add(False)
    full = [i for i, ids in enumerate(enc["input_ids"]) if len(ids) >= max_length and words_batch[i]]
    if not full:
        return []
    pieces = encode_words(tokenizer, [words_batch[i] for i in full], special_tokens=False)
    later, parts = [], []
    for k, i in enumerate(full):
        counts = [0] * len(words_batch[i])
        for w in pieces[k].word_ids:
            if w is not None:
                counts[w] += 1
        if sum(counts) <= budget:
            continue  # exactly one window long
        plan = plan_windows(counts, budget, max(0, int(budget * WINDOW_OVERLAP)))
        for start, end in plan[1:]:
            later.append((i, start, end == len(counts)))
            parts.append(words_batch[i][start:end])
    enc_later = tokenize_words(tokenizer, parts, max_length)
    return [Window(i, enc_later["input_ids"][k], enc_later["shape_ids"][k], enc_later["positions"][k],
                   [start + w for w in enc_later["word_index"][k]], at_start=False, at_end=at_end)
            for k, (i, start, at_end) in enumerate(later)]


def run_words(words_batch, outputs, tasks, tokenizer, max_length, run):
    """Per row of pre-split words: each task's decision (Task.row_prediction: a sentence task's probabilities, a
    tagging task's tag per word) and the sentence embedding, for the outputs asked for (task names, EMBEDDING).

    run(rows, outputs): the batch runner (per row of {input_ids, shape_ids, positions} its row outputs). Sentence
    tasks and the embedding read the row's first window (the row truncated at max_length, as in training). Per-word
    outputs cover the whole row: a row longer than one window is also cut into overlapping word windows
    (plan_windows), every window runs through the same batches, and each word takes its tag from the window where it
    lies farthest from a cut edge (the most context on both sides)."""
    per_word = [n for n in outputs if n in tasks and tasks[n].reads_words]
    enc = tokenize_words(tokenizer, words_batch, max_length)  # first windows
    later = later_windows(tokenizer, words_batch, enc, max_length) if per_word else []
    cut = {w.row for w in later}  # rows whose first window is cut at its end
    windows = [Window(i, enc["input_ids"][i], enc["shape_ids"][i], enc["positions"][i], enc["word_index"][i],
                      at_start=True, at_end=i not in cut) for i in range(len(words_batch))] + later
    outs = run({"input_ids": [w.input_ids for w in windows], "shape_ids": [w.shape_ids for w in windows],
                "positions": [w.positions for w in windows]}, outputs)
    results = [{} for _ in words_batch]
    for window, out in zip(windows, outs):
        if window.at_start:  # the row's first window: sentence tasks and the embedding
            results[window.row].update({n: tasks[n].row_prediction(v) if n in tasks else v
                                        for n, v in out.items() if n not in per_word})
    for i, chosen in enumerate(best_windows(windows) if per_word else []):
        for n in per_word:
            logits = [np.asarray(outs[j][n][k]) for _, j, k in chosen]
            logits = np.stack(logits) if logits else np.zeros((0, len(tasks[n].labels)), dtype=np.float32)
            results[i][n] = tasks[n].row_prediction(logits, [w for w, _, _ in chosen], len(words_batch[i]))
    return results


def decode_rows(texts, prepared, runs, names, tasks, trained):
    """predict()'s dict per text: each task's output (Task.decode) from its decision in runs, offsets into the text as
    given. trained: {name: whether the head was trained} (an untrained head answers its empty output)."""
    return [{n: tasks[n].decode(run[n], trained[n], text, spans) for n in names}
            for text, spans, run in zip(texts, prepared, runs)]
