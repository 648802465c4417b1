"""Scores: topic classification, NER entities and rank correlation, as plain Python numbers and lists (JSON-ready).

    classification_metrics(y_true, y_pred, n_labels)  # accuracy, macro-F1, confusion matrix
    f1_scores(gold, pred)                             # micro- and macro-F1 of multi-hot label matrices
    ner_metrics(gold, pred)                           # entity-level P/R/F1, micro and per type (conlleval rules)
    spearman(x, y)                                    # Spearman rank correlation, ties at average ranks

numpy only, so a model folder carries them: each equals, to the bit, what scikit-learn (accuracy_score, f1_score,
confusion_matrix), seqeval (classification_report) and scipy (spearmanr) give (tests/test_metrics.py holds them to it).
"""
import numpy as np

from ner_tags import bio_spans


def _f1(tp, true, pred):
    """Per label F1 = 2 tp / (true + pred), 0 where a label is neither true nor predicted (float64 arrays)."""
    denom = np.asarray(true, dtype=np.float64) + np.asarray(pred, dtype=np.float64)
    safe = np.where(denom == 0, 1.0, denom)
    return np.where(denom == 0, 0.0, 2.0 * np.asarray(tp, dtype=np.float64) / safe)


def classification_metrics(y_true, y_pred, n_labels):
    """{'accuracy', 'macro_f1', 'confusion_matrix'} of class ids 0..n_labels-1. The macro-F1 averages all n_labels
    classes: a class never predicted, never true, or neither, scores 0. No rows is a ValueError (evaluate() scores a
    task only when some row carries it)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if not len(y_true) or len(y_true) != len(y_pred):
        raise ValueError(f"classification_metrics needs as many predictions as labels, at least one "
                         f"({len(y_true)} labels, {len(y_pred)} predictions)")
    matrix = np.zeros((n_labels, n_labels), dtype=np.int64)  # rows: true class, columns: predicted
    known = (y_true >= 0) & (y_true < n_labels) & (y_pred >= 0) & (y_pred < n_labels)
    np.add.at(matrix, (y_true[known], y_pred[known]), 1)
    tp = np.diag(matrix)
    return {"accuracy": float(np.average(y_true == y_pred)),
            "macro_f1": float(np.average(_f1(tp, matrix.sum(1), matrix.sum(0)))),
            "confusion_matrix": matrix.tolist()}


def f1_scores(gold, pred):
    """(micro-F1, macro-F1) of two multi-hot matrices [rows, labels] (1 = the label applies)."""
    gold, pred = np.asarray(gold, dtype=bool), np.asarray(pred, dtype=bool)
    tp, true, predicted = (gold & pred).sum(0), gold.sum(0), pred.sum(0)
    micro = _f1([tp.sum()], [true.sum()], [predicted.sum()])[0]
    return float(micro), float(np.average(_f1(tp, true, predicted)))


def _divide(numerator, denominator):
    return numerator / denominator if denominator else 0.0


def ner_metrics(gold, pred):
    """Entity-level P/R/F1 per type and micro (conlleval rules: ner_tags.bio_spans), on words; an entity counts when
    its type, first and last word all match. Rows are scored as one sequence with an 'O' after each row."""
    def entities(rows):
        flat = [tag for row in rows for tag in [*row, "O"]]
        by_type = {}
        for kind, first, end in bio_spans(flat):
            by_type.setdefault(kind, set()).add((first, end))
        return by_type

    true, predicted = entities(gold), entities(pred)
    per_type, totals = {}, np.zeros(3, dtype=np.int64)  # totals: tp, true, predicted
    for kind in sorted(set(true) | set(predicted)):
        t, p = true.get(kind, set()), predicted.get(kind, set())
        counts = np.array([len(t & p), len(t), len(p)])
        totals += counts
        per_type[kind] = {**_prf(*counts), "support": int(counts[1])}
    micro = _prf(*totals)
    return {"precision": micro["precision"], "recall": micro["recall"], "f1": micro["f1"], "per_type": per_type}


def _prf(tp, true, predicted):
    """Precision, recall and F1 as seqeval computes them (F1 = 2 p r / (p + r), 0 when both are 0)."""
    precision, recall = _divide(int(tp), int(predicted)), _divide(int(tp), int(true))
    denom = precision + recall
    return {"precision": precision, "recall": recall, "f1": 2.0 * precision * recall / denom if denom else 0.0}


def _average_ranks(x):
    """Ranks 1..n of x, ties at their average rank (float64)."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = 0.5 * (start + 1 + end)
    return ranks


def spearman(x, y):
    """Spearman rank correlation of two sequences (ties get their average rank); NaN for fewer than 2 values, a
    constant sequence or a NaN in either."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) <= 1 or (x[0] == x).all() or (y[0] == y).all() or np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    ranked = np.column_stack((_average_ranks(x), _average_ranks(y)))
    return float(np.corrcoef(ranked, rowvar=False)[1, 0])


def fmt(score):
    """A metric for printing: 4 decimals, or '-' for a task no row carries (None)."""
    return "-" if score is None else f"{score:.4f}"
