"""The STS Benchmark: sentence pairs with human similarity scores (is the encoder still a good sentence embedder?).

    pairs = read_sts()              # (sentence1, sentence2, score 0-5) triples of STS_DEV (from the working dir)
    pairs = sts_pairs()             # the same, STS_DEV resolved against the project's root (main.py's runs)
    sts_spearman(model, pairs)      # Spearman x 100 between encode() cosines and the human scores
"""
import os

import numpy as np

from errors import InputError, InputFileNotFound
from metrics import spearman

STS_DEV = "../shared/data/stsbenchmark/sts-dev.csv"


def read_sts(path=STS_DEV) -> list[tuple[str, str, float]]:
    """(sentence1, sentence2, score 0-5) triples of an STS Benchmark file: tab-separated, no header, columns genre,
    file, years, id, score, sentence 1, sentence 2 (rows with extra trailing columns keep the first seven; quotes are
    literal text). FileNotFoundError / ValueError naming the file and line."""
    if not os.path.isfile(path):
        raise InputFileNotFound(f"no STS Benchmark file at {path!r} (expected ../shared/data/stsbenchmark/sts-dev.csv "
                                "relative to the project's root)")
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


def sts_pairs():
    """STS Benchmark dev pairs from STS_DEV (relative to the project's root, where main.py lies); a missing file is a
    FileNotFoundError naming the path."""
    path = STS_DEV
    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), path)
    return read_sts(path)


def sts_spearman(model, pairs, batch_size=64):
    """STS score: Spearman x 100 between the cosine of the two sentences' encode() embeddings and the human scores.

    model: anything with encode(texts, batch_size=, normalize=True) -> [N, H] (a MultiTaskSentenceTransformer, its
    .encoder, a sentence-transformers model); pairs: (sentence1, sentence2, score) triples, e.g.
    read_sts("../shared/data/stsbenchmark/sts-dev.csv").
    """
    if len(pairs) < 2:
        raise InputError(f"sts_spearman needs at least 2 sentence pairs, got {len(pairs)}.")
    first = np.asarray(model.encode([p[0] for p in pairs], batch_size=batch_size, normalize=True))
    second = np.asarray(model.encode([p[1] for p in pairs], batch_size=batch_size, normalize=True))
    return 100 * spearman((first * second).sum(-1), [p[2] for p in pairs])
