"""metrics.py against hand-computed values (a class never predicted, ties in Spearman ranks, JSON-ready outputs) and,
to the bit, against the libraries it stands in for (scikit-learn, seqeval, scipy), so a model folder can carry it."""
import json
import math

import numpy as np
import pytest

from metrics import classification_metrics, f1_scores, ner_metrics, spearman
from ner_tags import bio_spans


def test_metrics():
    m = classification_metrics([0, 1, 1, 2], [0, 1, 2, 2], 3)
    assert m["accuracy"] == 0.75 and m["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    n = ner_metrics([["B-ORG", "I-ORG", "O", "B-PER"]], [["B-ORG", "I-ORG", "O", "O"]])
    assert n["precision"] == 1.0 and n["recall"] == 0.5 and n["per_type"]["ORG"]["f1"] == 1.0


def test_macro_f1_counts_every_class_even_one_never_predicted_or_seen():
    # class 0: P 1/2 R 1/2 F1 0.5; class 1: P 2/3 R 1 F1 0.8; class 2 never predicted: 0; class 3 absent: 0
    m = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 4)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0 + 0) / 4)
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert type(m["accuracy"]) is float and type(m["macro_f1"]) is float
    assert all(type(c) is int for row in m["confusion_matrix"] for c in row)
    assert json.loads(json.dumps(m)) == m


def test_classification_metrics_match_the_textbook_formulas():
    """Per-class F1 = 2PR / (P + R) (0 where undefined), macro = their mean over all classes; up to rounding."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 7))
        y, p = rng.integers(0, n, 40), rng.integers(0, n, 40)
        cm = np.zeros((n, n), dtype=int)
        np.add.at(cm, (y, p), 1)
        tp = np.diag(cm)
        prec = np.divide(tp, cm.sum(0), out=np.zeros(n), where=cm.sum(0) > 0)
        rec = np.divide(tp, cm.sum(1), out=np.zeros(n), where=cm.sum(1) > 0)
        f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(n), where=prec + rec > 0)
        m = classification_metrics(y.tolist(), p.tolist(), n)
        assert m["confusion_matrix"] == cm.tolist()
        assert m["accuracy"] == tp.sum() / len(y)
        assert m["macro_f1"] == pytest.approx(f1.mean(), abs=1e-12)


def test_classification_metrics_need_rows():
    with pytest.raises(ValueError):
        classification_metrics([], [], 3)


def test_ner_metrics_without_entities_and_json_ready():
    n = ner_metrics([["O", "O"]], [["O", "O"]])
    assert n == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "per_type": {}}
    n = ner_metrics([["B-ORG", "O", "B-PER", "I-PER"]], [["B-ORG", "O", "B-LOC", "I-LOC"]])
    assert n["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}  # never in gold
    assert n["per_type"]["PER"]["support"] == 1 and n["precision"] == 0.5 and n["recall"] == 0.5
    assert json.loads(json.dumps(n)) == n


def test_spearman_matches_the_textbook_definition_with_ties():
    x, y = [1, 2, 2, 3, 10], [5, 6, 7, 7, 1]
    rx, ry = [1, 2.5, 2.5, 4, 5], [2, 3, 4.5, 4.5, 1]  # average ranks of ties

    def pearson(a, b):
        ma, mb = sum(a) / len(a), sum(b) / len(b)
        cov = sum((p - ma) * (q - mb) for p, q in zip(a, b))
        return cov / (sum((p - ma) ** 2 for p in a) * sum((q - mb) ** 2 for q in b)) ** 0.5

    assert spearman(x, y) == pytest.approx(pearson(rx, ry))
    assert spearman(x, y) == pytest.approx(-5 / 38)  # by hand: cov -1.25, both sums of squares 9.5
    assert type(spearman(x, y)) is float


def test_spearman_of_float32_cosines_and_a_constant_sequence():
    cosines = np.array([0.5, 0.25, 0.75, 0.25], dtype=np.float32)  # encode() gives float32
    assert spearman(cosines, [2.0, 1.0, 3.0, 1.0]) == pytest.approx(1.0)
    assert spearman(cosines, [3.0, 4.0, 1.0, 4.0]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # undefined: NaN, as scipy gives
    assert math.isnan(spearman([1.0], [2.0])) and math.isnan(spearman([1.0, float("nan")], [2.0, 3.0]))


def test_classification_and_multilabel_scores_equal_scikit_learns_to_the_bit():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    rng = np.random.default_rng(1)
    for _ in range(300):
        n, rows = int(rng.integers(1, 8)), int(rng.integers(1, 60))
        y, p = rng.integers(0, n, rows), rng.integers(0, n, rows)
        m = classification_metrics(y.tolist(), p.tolist(), n)
        assert m["accuracy"] == float(accuracy_score(y, p))
        assert m["macro_f1"] == float(f1_score(y, p, labels=list(range(n)), average="macro", zero_division=0))
        assert m["confusion_matrix"] == confusion_matrix(y, p, labels=list(range(n))).tolist()
        gold, pred = rng.integers(0, 2, (rows, n + 1)), rng.integers(0, 2, (rows, n + 1))  # multi-label: >= 2 labels
        assert f1_scores(gold, pred) == (float(f1_score(gold, pred, average="micro", zero_division=0)),
                                         float(f1_score(gold, pred, average="macro", zero_division=0)))


def test_entity_scores_equal_seqevals_to_the_bit():
    from seqeval.metrics import classification_report

    rng = np.random.default_rng(2)
    pool = ["O", "O", "O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    for _ in range(300):
        gold = [[str(t) for t in rng.choice(pool, int(rng.integers(0, 12)))] for _ in range(int(rng.integers(1, 6)))]
        pred = [[str(t) for t in rng.choice(pool, len(row))] for row in gold]
        report = classification_report(gold, pred, output_dict=True, zero_division=0)
        m = ner_metrics(gold, pred)
        micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
        assert (m["precision"], m["recall"], m["f1"]) == (micro["precision"], micro["recall"], micro["f1-score"])
        assert m["per_type"] == {k: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"],
                                     "support": v["support"]} for k, v in report.items() if not k.endswith("avg")}


def test_bio_spans_equal_seqevals_get_entities():
    from seqeval.metrics.sequence_labeling import get_entities

    rng = np.random.default_rng(3)
    pool = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "I-LOC"]
    for _ in range(3000):
        tags = [str(t) for t in rng.choice(pool, int(rng.integers(0, 12)))]
        assert bio_spans(tags) == [(kind, first, last + 1) for kind, first, last in get_entities(tags)]


def test_spearman_equals_scipys_to_the_bit():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(4)
    for _ in range(300):
        n = int(rng.integers(2, 40))
        x, y = rng.integers(0, 6, n).astype(float), rng.normal(size=n).astype(np.float32)
        expected = float(spearmanr(x, y).statistic)
        assert spearman(x, y) == expected or (math.isnan(expected) and math.isnan(spearman(x, y)))
