"""Rows that carry one task's labels only: label -1 (no topic) and ner_tags None (no NER), in one batch; and the STS
Benchmark score of the encoder."""
import pytest
import torch
from helpers import quiet_config, tiny_multitask

from batching import prepare_features
from ner_tags import build_tag_list
from sts_benchmark import read_sts, sts_spearman
from trainer_sentence_transformer import MultiTaskTrainer, evaluate

TAGS = build_tag_list()
BOTH = {"words": ["Apple", "buys", "Google", "in", "Paris"], "ner_tags": ["B-ORG", "O", "B-ORG", "O", "B-GPE"],
        "label": 3}
OTHER = {"words": ["Barack", "Obama", "visits", "Berlin"], "ner_tags": ["B-PERSON", "I-PERSON", "O", "B-GPE"],
         "label": 0}


def rows(*items):
    return {k: [dict(item)[k] for item in items] for k in ("words", "ner_tags", "label")}


def first_step_losses(tmp_path, data, **kw):
    """The logged losses of one step over all rows (the model before any update: the loss the step trains on)."""
    model = tiny_multitask(tags=TAGS)
    for module in model.modules():  # no dropout anywhere: the loss depends on the rows alone
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    config = quiet_config(tmp_path / "run", batch_size=len(data["label"]), warmup_ratio=0, **kw)
    record = MultiTaskTrainer(model, data, None, config).train()[0]
    return record["train_loss"]["topic"], record["train_loss"]["ner"]


def test_a_row_without_ner_tags_adds_no_ner_loss_and_is_not_all_o(tmp_path):
    topic_only = {**OTHER, "ner_tags": None}
    all_o = {**OTHER, "ner_tags": ["O"] * 4}
    _, alone = first_step_losses(tmp_path / "a", rows(BOTH))
    _, with_none = first_step_losses(tmp_path / "b", rows(BOTH, topic_only))
    _, with_o = first_step_losses(tmp_path / "c", rows(BOTH, all_o))
    assert with_none == pytest.approx(alone, rel=1e-5)  # the NER mean is over BOTH's words only
    assert abs(with_o - alone) > 1e-3  # "all O" would be a different loss


def test_a_row_without_topic_label_adds_no_topic_loss(tmp_path):
    ner_only = {**OTHER, "label": -1}
    cls_alone, _ = first_step_losses(tmp_path / "a", rows(BOTH))
    cls_mixed, ner_mixed = first_step_losses(tmp_path / "b", rows(BOTH, ner_only))
    cls_labelled, ner_labelled = first_step_losses(tmp_path / "c", rows(BOTH, OTHER))
    assert cls_mixed == pytest.approx(cls_alone, rel=1e-5)  # the topic mean is over BOTH only, not halved
    assert abs(cls_labelled - cls_alone) > 1e-4
    assert ner_mixed == pytest.approx(ner_labelled, rel=1e-5)  # its NER tags still count


def test_ner_only_and_topic_only_rows_train_in_one_batch(tmp_path):
    data = rows(BOTH, {**OTHER, "label": -1}, {**OTHER, "ner_tags": None}, {**BOTH, "label": -1, "ner_tags": None})
    cls, ner = first_step_losses(tmp_path, data, epochs=1)
    assert cls > 0 and ner > 0


def test_evaluate_scores_each_task_on_the_rows_that_carry_its_labels():
    model = tiny_multitask(tags=TAGS)
    mixed = evaluate(model, rows(BOTH, {**OTHER, "label": -1}, {**OTHER, "ner_tags": None}))
    assert mixed["rows"] == {"topic": 2, "ner": 2}
    assert sum(map(sum, mixed["confusion_matrix"])) == 2
    reference = evaluate(model, rows(BOTH, OTHER))  # the same predictions on fully labelled rows
    assert mixed["accuracy"] == reference["accuracy"] and mixed["ner"] == reference["ner"]
    none = evaluate(model, rows({**BOTH, "label": -1}))
    assert none["accuracy"] is None and none["confusion_matrix"] is None and none["ner"] is not None
    assert evaluate(model, rows({**BOTH, "ner_tags": None}))["ner"] is None


def test_labels_outside_the_classes_are_still_an_error():
    with pytest.raises(ValueError, match="task 'topic', row 0: label -2"):
        prepare_features(rows({**BOTH, "label": -2}), tiny_multitask(tags=TAGS))
    with pytest.raises(ValueError, match="task 'ner', row 0: 4 words but 3 tags"):
        prepare_features(rows({**OTHER, "ner_tags": ["O"] * 3}), tiny_multitask(tags=TAGS))


def test_sts_benchmark_reader_and_score_on_real_pairs(packaged_model_path, tmp_path):
    """The real STS-B dev file (development data) reads to its 1,500 pairs and the packaged encoder scores well."""
    from conftest import dev_data_path

    from sentence_transformer import SentenceTransformer

    pairs = read_sts(str(dev_data_path("stsbenchmark/sts-dev.csv")))
    assert len(pairs) == 1500
    assert pairs[0] == ("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", 5.0)
    few = pairs[:60]
    encoder = SentenceTransformer(packaged_model_path)
    score = sts_spearman(encoder, few)
    assert score > 70  # the packaged all-MiniLM-L6-v2: 86.7 on all 1,500 pairs
    shuffled = [(a, b, s) for (a, b, _), (_, _, s) in zip(few, few[7:] + few[:7])]
    assert abs(sts_spearman(encoder, shuffled)) < 40  # scores of other pairs: no agreement
    bad = tmp_path / "bad.csv"
    bad.write_text("genre\tfile\tyear\t1\tnot-a-score\ta\tb\n")
    with pytest.raises(ValueError, match="line 1"):
        read_sts(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.csv.*--fetch-data"):
        read_sts(str(tmp_path / "missing.csv"))
