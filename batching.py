"""Rows to training batches: tokenised features (each task's labels, tagging labels on first wordpieces, word
shapes), batches grouped by length (deterministic per seed and epoch, so a resumed run skips exactly the batches
done), the rows an epoch sees under a sampling choice, and padded batch tensors.

    features = prepare_features(rows, model)              # rows: words + one column per task (task.column)
    for indices in length_grouped_batches(lengths, 32, seed, epoch):
        batch = collate(features, indices, pad_ids_value(model), tasks=model.tasks)
"""
import numpy as np
import torch

from errors import InputError
from prediction import tokenize_words
from sentence_transformer import pad_ids

SAMPLINGS = ("proportional", "temperature", "round-robin")


def _column(rows, name):
    """A column of a datasets.Dataset or a dict of lists as a list; None when rows have no such column."""
    names = rows.column_names if hasattr(rows, "column_names") else list(rows)
    return list(rows[name]) if name in names else None


def prepare_features(rows, model, batch_size=1000):
    """Tokenise once: input_ids, word shapes, first-wordpiece positions and word_index, and per task its row values
    (`values[task]`, read from rows[task.column]; a missing column = no row carries the task) and, for tagging
    tasks, word-aligned token labels (`token_labels[task]`: the tag id on each word's first wordpiece,
    IGNORE_INDEX elsewhere and on every piece of a row without tags, which then adds no loss and is not scored).
    Each task checks its own values (Task.check_values) and refuses what it cannot train on.
    """
    words = _column(rows, "words")
    if words is None:
        raise InputError("rows need a 'words' column (lists of words; create_ner_dataset and task_data make it).")
    values = {}
    for task in model.tasks.values():
        column = _column(rows, task.column)
        values[task.name] = task.read_values([task.missing] * len(words) if column is None else column, words)
    features = {"input_ids": [], "shape_ids": [], "positions": [], "word_index": [], "words": words,
                "values": values, "token_labels": {}}  # words: evaluate() tags rows longer than one window
    for start in range(0, len(words), batch_size):
        enc = tokenize_words(model.tokenizer, words[start:start + batch_size], model.encoder.max_length)
        for key in ("input_ids", "shape_ids", "positions", "word_index"):
            features[key] += enc[key]
    for task in model.tasks.values():
        aligned = task.token_targets(features, values[task.name])
        if aligned is not None:
            features["token_labels"][task.name] = aligned
    return features


def label_counts(features, tasks):
    """{task: per row, how many things it is scored on}: 1 / 0 for sentence tasks, labelled words for tagging."""
    return {task.name: task.label_counts(features) for task in tasks.values()}


def epoch_rows(groups, sampling, temperature, seed, epoch):
    """The rows one epoch sees, from each row's data group (its source): None = every row once (proportional, the
    concatenation). temperature: group g gets N * n_g^(1/T) / sum_h n_h^(1/T) rows of the N in all; round-robin:
    N / G rows each. A group's rows are drawn without replacement, cycling (shuffled anew each cycle) where it gets
    more rows than it has. Deterministic per (seed, epoch)."""
    if sampling == "proportional":
        return None
    sizes = np.bincount(groups)
    power = 0.0 if sampling == "round-robin" else 1.0 / temperature
    shares = sizes.astype(float) ** power * (sizes > 0)
    exact = len(groups) * shares / shares.sum()
    quota = np.floor(exact).astype(int)
    for g in np.argsort(-(exact - quota), kind="stable")[:len(groups) - quota.sum()]:  # largest remainders: N in all
        quota[g] += 1
    rng = np.random.default_rng([seed, epoch, 7])
    members = [np.flatnonzero(np.asarray(groups) == g) for g in range(len(sizes))]
    rows = []
    for g, want in enumerate(quota):
        pool = members[g]
        while want > 0 and len(pool):
            take = rng.permutation(pool)[:want]
            rows += take.tolist()
            want -= len(take)
    return rows


def length_grouped_batches(lengths, batch_size, seed, epoch, bucket_batches=50, rows=None):
    """Batches of similar length: shuffle (seed, epoch), sort within buckets, shuffle the batch order.

    rows: the row indices this epoch sees (epoch_rows; None = every row once). Deterministic for a given
    (seed, epoch), so a resumed run can skip exactly the batches already done.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths)) if rows is None else np.asarray(rows)[rng.permutation(len(rows))]
    bucket = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start:start + bucket].tolist(), key=lambda i: -lengths[i])
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def feature_rows(features, rows):
    """The given rows of prepare_features() / tokenize_words() output as MultiTaskSentenceTransformer.run reads them
    (their input_ids, shape_ids and positions)."""
    return {k: [features[k][i] for i in rows] for k in ("input_ids", "shape_ids", "positions")}


def collate(features, indices, pad_id, cache=None, tasks=(), every_word=()):
    """A padded batch of the given rows; with a feature cache, token embeddings replace input_ids.

    Per task (tasks: the model's {name: task}): a sentence task's targets under its name; a tagging task's labelled
    first wordpieces as `name.rows` / `name.cols` and their tags under its name, found here on the host (a boolean
    mask applied on the GPU would make the host wait for its count every step). A tagging task named in every_word
    gets every word's first wordpiece instead (a teacher has a distribution there), its tag IGNORE_INDEX where the
    row has none (no task loss); on a row with tags these are the same words in the same order.
    """
    input_ids, mask = pad_ids([features["input_ids"][i] for i in indices], pad_id)
    shapes, _ = pad_ids([features["shape_ids"][i] for i in indices])
    batch = {"attention_mask": mask, "shape_ids": shapes}
    for name, task in dict(tasks).items():
        batch.update(task.collate(features, indices, name in every_word))
    if cache is None:
        batch["input_ids"] = input_ids
    else:
        emb = torch.zeros(len(indices), mask.shape[1], cache[indices[0]].shape[-1])
        for row, i in enumerate(indices):
            emb[row, :len(cache[i])] = cache[i]
        batch["token_embeddings"] = emb
    return batch


def positions(batch, tasks):
    """forward()'s positions for a collated batch: each tagging task's labelled first wordpieces."""
    found = {name: t.batch_positions(batch) for name, t in dict(tasks).items()}
    return {name: p for name, p in found.items() if p is not None}


def pad_ids_value(model):
    return model.tokenizer.pad_token_id or 0


def to_device(batch, device):
    """Copy a batch to the device; on CUDA from pinned memory without blocking (a plain copy waits: a host sync)."""
    if device.type != "cuda":
        return {k: v.to(device) for k, v in batch.items()}
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
