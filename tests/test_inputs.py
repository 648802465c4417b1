"""Bad and awkward input, end to end: each gives a defined result or a clear error that names the fix.

More cases live beside the code they check (test_sentence_transformer, test_create_ner_dataset, test_multi_task,
test_trainer, test_main); this module covers the paths that cross modules.
"""
import math

import pytest
from helpers import TOY_ROWS, quiet_config, tag_capitalised_words, tiny_multitask

AWKWARD = ["", " \t\n ", "Word " * 2_000, "Zürich – São Paulo 東京 😀🚀", "Übermensch GmbH\u200b announces"]
# What a NER head that tags runs of capitalised words predicts (helpers.tag_capitalised_words); the 10,000-character
# text spans many 64-piece windows, which predict() tags in overlapping windows: all 2,000 words are one entity.
EXPECTED_ENTITIES = [[], [], [" ".join(["Word"] * 2_000)], ["Zürich", "São Paulo"], ["Übermensch"]]


@pytest.fixture(scope="module")
def model():
    return tag_capitalised_words(tiny_multitask())


def test_empty_lists(model):
    assert model.predict([]) == []
    assert model.predict_tags([]) == []
    assert model.encoder.encode([]).shape == (0, 32)
    assert model.encoder.encode([], output="token") == []


def test_awkward_texts_give_defined_results(model):
    results = model.predict(AWKWARD)
    assert len(results) == len(AWKWARD)
    for text, r, expected in zip(AWKWARD, results, EXPECTED_ENTITIES):
        assert r["topic"]["label"] in model.label_names
        assert [e["text"] for e in r["ner"]] == expected
        assert all(text[e["start"]:e["end"]] == e["text"] for e in r["ner"])
    tokens = model.encoder.encode(AWKWARD, output="token")
    assert len(tokens[2]) == model.encoder.max_length  # the 10,000-character text is truncated
    one_long_word = model.predict("X" * 10_000)  # one word of 10,000 characters: BERT reads it as [UNK]
    assert one_long_word["ner"] == [{"text": "X" * 10_000, "type": "ORG", "start": 0, "end": 10_000}]


@pytest.mark.parametrize("bad", [None, 42, b"bytes", ["fine", None], ["fine", 3.5], ["fine", b"x"]])
def test_non_text_is_a_type_error_everywhere(model, bad):
    with pytest.raises(TypeError, match="str"):
        model.predict(bad)
    with pytest.raises(TypeError, match="str"):
        model.encoder.encode(bad)


def test_long_rows_are_truncated_in_training(tmp_path):
    from batching import prepare_features
    from trainer_sentence_transformer import MultiTaskTrainer

    model = tiny_multitask()
    # the only entity stands beyond max_length: truncated away in training, and scored as a missed entity
    rows = {"words": [["word"] * 5000 + ["Paris"], ["short"]], "ner_tags": [["O"] * 5000 + ["B-GPE"], ["O"]],
            "label": [0, 1]}
    features = prepare_features(rows, model)
    assert max(len(ids) for ids in features["input_ids"]) == model.encoder.max_length
    metrics = MultiTaskTrainer(model, rows, rows, quiet_config(tmp_path, batch_size=2)).train()[-1]["val"]
    gpe = metrics["ner"]["per_type"]["GPE"]
    assert gpe["support"] == 1 and gpe["recall"] == 0.0  # words beyond max_length are scored as 'O', not dropped


def test_unknown_spacy_model_names_both_install_routes():
    from create_ner_dataset import SpacyModelNotFound, load_spacy

    with pytest.raises(SpacyModelNotFound) as err:
        load_spacy("xx_no_such_pipeline")
    assert "spacy download" in str(err.value) and "pip install" in str(err.value)


def test_trainer_rejects_bad_config():
    from trainer_sentence_transformer import TrainConfig

    for bad in ({"epochs": -1}, {"batch_size": 0}, {"lr": 0}, {"mixed_precision": "fp8"}, {"warmup_ratio": 1.5}):
        with pytest.raises(ValueError, match="TrainConfig"):
            TrainConfig(**bad)
    with pytest.raises(TypeError):  # attention dropout is a model setting now (MultiTaskSentenceTransformer)
        TrainConfig(attention_dropout=0.0)


def test_freeze_more_layers_than_exist(tmp_path):
    from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig

    with pytest.raises(ValueError, match="freeze_encoder=True"):
        MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None, TrainConfig(freeze_layers=9, output_dir=str(tmp_path)))


def test_fp16_on_cpu_names_the_alternatives(tmp_path):
    import torch

    from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig

    if torch.cuda.is_available():
        pytest.skip("fp16 is valid on a CUDA machine")
    with pytest.raises(ValueError, match="'bf16' or 'fp32'"):
        MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None, TrainConfig(mixed_precision="fp16",
                                                                       output_dir=str(tmp_path)))


def test_batch_of_empty_texts_trains_without_nan(tmp_path):
    from trainer_sentence_transformer import MultiTaskTrainer

    rows = {"words": [[], [], ["Paris"], []], "ner_tags": [[], [], ["B-GPE"], []], "label": [0, 1, 2, 3]}
    config = quiet_config(tmp_path, epochs=2, batch_size=2)
    history = MultiTaskTrainer(tiny_multitask(), rows, rows, config).train()  # a batch may hold no word at all
    assert all(math.isfinite(r["train_loss"]["ner"]) and r["train_loss"]["ner"] > 0 for r in history)  # not NaN
