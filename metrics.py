"""Scores: topic classification, NER entities and rank correlation, as plain Python numbers and lists (JSON-ready).

    classification_metrics(y_true, y_pred, n_labels)  # accuracy, macro-F1, confusion matrix (scikit-learn)
    ner_metrics(gold, pred)                           # entity-level P/R/F1, micro and per type (seqeval)
    spearman(x, y)                                    # Spearman rank correlation, ties at average ranks (scipy)

scikit-learn, seqeval and scipy are imported on first use (each takes seconds to import).
"""
import warnings


def classification_metrics(y_true, y_pred, n_labels):
    """{'accuracy', 'macro_f1', 'confusion_matrix'} of class ids 0..n_labels-1. The macro-F1 averages all n_labels
    classes: a class never predicted, never true, or neither, scores 0. No rows is a ValueError (as it was an error
    before scikit-learn: evaluate() scores a task only when some row carries it)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score  # scikit-learn: seconds to import

    labels = list(range(n_labels))
    with warnings.catch_warnings():  # a one-class model's 1x1 matrix is right: labels= is given
        warnings.filterwarnings("ignore", "A single label was found", UserWarning)
        matrix = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "confusion_matrix": matrix}


def ner_metrics(gold, pred):
    """Entity-level P/R/F1 per type and micro (seqeval, conlleval rules), on words; padding is never scored."""
    from seqeval.metrics import classification_report  # seqeval: loaded on first use

    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    per_type = {k: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"],
                    "support": int(v["support"])}
                for k, v in report.items() if not k.endswith("avg")}
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    return {"precision": float(micro["precision"]), "recall": float(micro["recall"]),
            "f1": float(micro["f1-score"]), "per_type": per_type}


def spearman(x, y):
    """Spearman rank correlation of two sequences (ties get their average rank; NaN for a constant sequence)."""
    from scipy.stats import spearmanr  # scipy: seconds to import

    return float(spearmanr(x, y).statistic)


def fmt(score):
    """A metric for printing: 4 decimals, or '-' for a task no row carries (None)."""
    return "-" if score is None else f"{score:.4f}"
