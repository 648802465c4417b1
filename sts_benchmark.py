"""The STS Benchmark: sentence pairs with human similarity scores (is the encoder still a good sentence embedder?).

    pairs = read_sts(path)          # (sentence1, sentence2, score 0-5) triples of an STS Benchmark file
    pairs, source = sts_pairs()     # the dev pairs from the data root, else the Hub, else (None, "not measured: why")
    sts_spearman(model, pairs)      # Spearman x 100 between encode() cosines and the human scores

A run without the STS Benchmark (no data root holding it, no Hub) is not stopped: its results say "not measured".
"""
import os

import numpy as np

import data_root as roots
import hub  # hub.hub_reachable(): one quick probe instead of minutes of retries
from errors import InputError, InputFileNotFound
from metrics import spearman
from texts_and_tables import hf_datasets

HUB_ID = roots.HUB_SOURCES["stsbenchmark"]  # scores scaled to 0-1; split "validation" is the dev split
NOT_MEASURED = "not measured"


def read_sts(path) -> list[tuple[str, str, float]]:
    """(sentence1, sentence2, score 0-5) triples of an STS Benchmark file: tab-separated, no header, columns genre,
    file, years, id, score, sentence 1, sentence 2 (rows with extra trailing columns keep the first seven; quotes are
    literal text). FileNotFoundError / ValueError naming the file and line."""
    if not os.path.isfile(path):
        raise InputFileNotFound(f"no STS Benchmark file at {path!r}; pass the dev file (tab-separated: genre, file, "
                                "years, id, score, sentence 1, sentence 2), or fill a data root: python main.py "
                                "--fetch-data")
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            try:
                score = float(fields[4])
                if len(fields) < 7 or not 0 <= score <= 5:
                    raise ValueError
            except (ValueError, IndexError):
                raise InputError(f"{path}, line {line_no}: not an STS Benchmark row (7 tab-separated columns, score "
                                 "0-5 in the 5th)") from None
            pairs.append((fields[5], fields[6], score))
    if not pairs:
        raise InputError(f"{path} holds no sentence pairs")
    return pairs


def sts_pairs(data_root="auto"):
    """(pairs, source) of the STS Benchmark dev split: from the data root's stsbenchmark/sts-dev.csv (data_root:
    a folder, None for none, "auto" to look as data_root.find_data_root does), else from the Hub when it answers,
    else (None, "not measured: <why>") -- a run without it goes on and records that."""
    root = roots.find_data_root() if data_root == "auto" else data_root
    path = roots.sts_file(root)
    if path:
        return read_sts(path), path
    if hub.hub_reachable():
        try:
            load_dataset = hf_datasets().load_dataset

            return roots.sts_hub_pairs(load_dataset), f"hub:{HUB_ID} (validation)"
        except Exception as e:  # network and datasets errors share no base; the check is optional
            return None, f"{NOT_MEASURED}: the Hub's {HUB_ID} could not be loaded ({type(e).__name__})"
    where = f"the data root {root}" if root else "no data root"
    return None, (f"{NOT_MEASURED}: no {roots.STS_FILE} ({where}) and the Hub is not reachable; "
                  f"{roots.FETCH_COMMAND} fills a data root")


def sts_spearman(model, pairs, batch_size=64):
    """STS score: Spearman x 100 between the cosine of the two sentences' encode() embeddings and the human scores.

    model: anything with encode(texts, batch_size=, normalize=True) -> [N, H] (a MultiTaskSentenceTransformer, its
    .encoder, a sentence-transformers model); pairs: (sentence1, sentence2, score) triples (read_sts, sts_pairs).
    """
    if len(pairs) < 2:
        raise InputError(f"sts_spearman needs at least 2 sentence pairs, got {len(pairs)}.")
    first = np.asarray(model.encode([p[0] for p in pairs], batch_size=batch_size, normalize=True))
    second = np.asarray(model.encode([p[1] for p in pairs], batch_size=batch_size, normalize=True))
    return 100 * spearman((first * second).sum(-1), [p[2] for p in pairs])
