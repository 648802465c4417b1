"""Rows to training batches: tokenised features (first-wordpiece NER labels, word shapes), batches grouped by length
(deterministic per seed and epoch, so a resumed run skips exactly the batches done) and padded batch tensors.

    features = prepare_features(rows, model)              # rows: words / ner_tags / label (create_ner_dataset)
    for indices in length_grouped_batches(lengths, 32, seed, epoch):
        batch = collate(features, indices, pad_ids_value(model))
"""
import numpy as np
import torch

from errors import InputError
from multi_task_sentence_transformer import IGNORE_INDEX, tokenize_words
from sentence_transformer import pad_ids


def prepare_features(rows, model, batch_size=1000):
    """Tokenise once: input_ids, word-aligned ner_labels (first wordpiece only), label, gold word tags.

    Rows may carry one task's labels only (create_ner_dataset's partial-label schema): label -1 = no topic label
    (no classification loss, not scored), ner_tags None = no NER tags (every ner_label IGNORE_INDEX: no NER loss,
    not scored; never "all O").
    """
    tag_to_id = {t: i for i, t in enumerate(model.tags)}
    words, tags, labels = list(rows["words"]), list(rows["ner_tags"]), list(rows["label"])
    for i, (w, t) in enumerate(zip(words, tags)):
        if t is not None and len(w) != len(t):
            raise InputError(f"row {i}: {len(w)} words but {len(t)} ner_tags; each word needs exactly one tag "
                             "(or ner_tags None for a row without NER tags).")
    unknown = {t for row in tags if row is not None for t in row} - set(tag_to_id)
    if unknown:
        raise InputError(f"tags {sorted(unknown)} are not in the model's tag list; build the model with the "
                         "dataset's tags (MultiTaskSentenceTransformer(tags=tags)).")
    n_labels = len(model.label_names)
    bad = [i for i, y in enumerate(labels) if not (isinstance(y, (int, np.integer)) and -1 <= y < n_labels)]
    if bad:
        raise InputError(f"row {bad[0]}: label {labels[bad[0]]!r} is outside 0..{n_labels - 1} (or -1: no topic "
                         f"label) ({len(bad)} such rows); fix the labels or the model's label_names.")
    features = {"input_ids": [], "shape_ids": [], "ner_labels": [], "word_index": [], "label": labels, "ner_tags": tags,
                "words": words}  # words: evaluate() tags rows longer than one window in windows
    for start in range(0, len(words), batch_size):
        chunk = tags[start:start + batch_size]
        enc = tokenize_words(model.tokenizer, words[start:start + batch_size], model.encoder.max_length,
                             [[tag_to_id[t] for t in row] if row is not None else [IGNORE_INDEX] * len(ws)
                              for row, ws in zip(chunk, words[start:start + batch_size])])
        features["input_ids"] += enc["input_ids"]
        features["shape_ids"] += enc["shape_ids"]
        features["ner_labels"] += enc["labels"]
        features["word_index"] += enc["word_index"]
    return features


def length_grouped_batches(lengths, batch_size, seed, epoch, bucket_batches=50):
    """Batches of similar length: shuffle (seed, epoch), sort within buckets, shuffle the batch order.

    Deterministic for a given (seed, epoch), so a resumed run can skip exactly the batches already done.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    bucket = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start:start + bucket].tolist(), key=lambda i: -lengths[i])
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(features, indices, pad_id, cache=None):
    """A padded batch of the given rows; with a feature cache, token embeddings replace input_ids.

    ner_rows / ner_cols index the labelled first wordpieces and ner_targets holds their tags, found here on
    the host: a boolean mask applied on the GPU would make the host wait for its count every step.
    """
    input_ids, mask = pad_ids([features["input_ids"][i] for i in indices], pad_id)
    ner, _ = pad_ids([features["ner_labels"][i] for i in indices], IGNORE_INDEX)
    shapes, _ = pad_ids([features["shape_ids"][i] for i in indices])
    ner_rows, ner_cols = (ner != IGNORE_INDEX).nonzero(as_tuple=True)
    batch = {"attention_mask": mask, "ner_labels": ner, "shape_ids": shapes,
             "labels": torch.tensor([features["label"][i] for i in indices]),
             "ner_rows": ner_rows, "ner_cols": ner_cols, "ner_targets": ner[ner_rows, ner_cols]}
    if cache is None:
        batch["input_ids"] = input_ids
    else:
        emb = torch.zeros(len(indices), mask.shape[1], cache[indices[0]].shape[-1])
        for row, i in enumerate(indices):
            emb[row, :len(cache[i])] = cache[i]
        batch["token_embeddings"] = emb
    return batch


def pad_ids_value(model):
    return model.tokenizer.pad_token_id or 0


def to_device(batch, device):
    """Copy a batch to the device; on CUDA from pinned memory without blocking (a plain copy waits: a host sync)."""
    if device.type != "cuda":
        return {k: v.to(device) for k, v in batch.items()}
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
