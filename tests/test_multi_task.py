import numpy as np
import pytest
import torch
from helpers import tag_capitalised_words, tiny_multitask

from multi_task_sentence_transformer import MultiTaskSentenceTransformer
from ner_tags import bio_spans as bio_to_spans
from ner_tags import build_tag_list
from prediction import tokenize_words
from sentence_transformer import ModelLoadError
from tasks import IGNORE_INDEX
from text_prep import WORD_SHAPES, word_shape

TEXTS = ["Apple buys Google in Paris", "", "   ", "naïve café in 東京 😀 " * 3, "word " * 3000,
         "Oil hit  #36;50 a barrel,  quot;analysts quot; say\\Reuters"]
# Each text with the entities a NER head that tags runs of capitalised words finds (helpers.tag_capitalised_words).
ENTITY_TEXTS = [("Apple buys Google in Paris", ["Apple", "Google", "Paris"]), ("", []), ("   ", []),
                ("naïve Café in 東京 😀 São Paulo", ["Café", "São Paulo"]),
                ("Barack Obama visits the U.N. in New York", ["Barack Obama", "U.N.", "New York"]),
                ("word " * 3000 + "Paris", ["Paris"]),  # Paris lies beyond the first window (max_length)
                ("Oil hit  #36;50 a barrel,  quot;analysts quot; say\\Reuters &lt;b&gt;Corp&lt;/b&gt;",
                 ["Oil", "Reuters &lt;b&gt;Corp"])]  # one span across the markup, in the raw string


def test_forward_shapes():
    model = tiny_multitask()
    batch = model.encoder.tokenize(["a b c", "longer text here ok"])
    out = model(batch["input_ids"], batch["attention_mask"])
    assert out["topic"].shape == (2, 4)
    assert out["ner"].shape == (2, batch["input_ids"].shape[1], len(build_tag_list()))
    assert model.label_names == ["World", "Sports", "Business", "Sci/Tech"] and model.tags[0] == "O"


def test_encoder_is_the_sentence_transformer_module():
    from sentence_transformer import SentenceTransformer

    model = tiny_multitask()
    assert isinstance(model.encoder, SentenceTransformer)
    assert model.encoder.encode("hi").shape == (32,)


def test_labels_on_first_wordpiece_only():
    model = tiny_multitask()
    words = [["Unbelievably", "long", "Schwarzenegger", "x"]]
    enc = tokenize_words(model.tokenizer, words, 64, [[1, 2, 3, 4]])
    ids, positions, labels = enc["input_ids"], enc["positions"], enc["labels"]
    pieces = model.tokenizer.convert_ids_to_tokens(ids[0])
    labelled = [(pieces[t], lab) for t, lab in enumerate(labels[0]) if lab != IGNORE_INDEX]
    assert [lab for _, lab in labelled] == [1, 2, 3, 4]
    assert all(not p.startswith("##") for p, _ in labelled)
    assert labels[0][0] == IGNORE_INDEX and labels[0][-1] == IGNORE_INDEX  # [CLS], [SEP]
    assert sum(p.startswith("##") for p in pieces) > 0  # some words really were split
    assert positions[0] == [t for t, lab in enumerate(labels[0]) if lab != IGNORE_INDEX]


def test_word_shapes_follow_each_piece():
    model = tiny_multitask()
    words = [["NASA", "launches", "Schwarzenegger", "iPhone", "2004", "!", "I"]]
    enc = tokenize_words(model.tokenizer, words, 64)
    assert [WORD_SHAPES[word_shape(w)] for w in words[0]] == ["UPPER", "lower", "Title", "mIxed", "digit", "other",
                                                              "Title"]
    pieces = enc["shape_ids"][0]
    assert pieces[0] == 0 and pieces[-1] == 0 and len(pieces) == len(enc["input_ids"][0])
    assert [pieces[t] for t in enc["positions"][0]] == [word_shape(w) for w in words[0]]


def test_bio_to_spans():
    assert bio_to_spans(["B-ORG", "I-ORG", "O", "I-PER", "I-PER", "B-LOC", "I-ORG"]) == [
        ("ORG", 0, 2), ("PER", 3, 5), ("LOC", 5, 6), ("ORG", 6, 7)]
    assert bio_to_spans([]) == [] and bio_to_spans(["O", "O"]) == []


def test_predict_offsets_index_the_raw_string(monkeypatch):
    model = tiny_multitask()
    # Force every word to be its own entity, so every word's offsets are checked against the raw text.
    monkeypatch.setattr(model, "run_words", lambda words_batch, *args, **kwargs: [
        {"topic": torch.tensor([0.1, 0.2, 0.3, 0.4]), "ner": ["B-ORG"] * len(ws)} for ws in words_batch])
    raw = "Oil hit  #36;50 a barrel,  quot;analysts quot; say\\Reuters &lt;b&gt;Corp&lt;/b&gt;"
    (result,) = model.predict([raw])
    assert result["topic"]["label"] == "Sci/Tech" and result["topic"]["score"] == pytest.approx(0.4)
    assert result["ner"], result
    for e in result["ner"]:
        assert raw[e["start"]:e["end"]] == e["text"]
    found = {e["text"] for e in result["ner"]}
    assert {"Oil", "Reuters", "#36;", "Corp", "analysts"} <= found  # '$' in the clean text maps back to its escape


@pytest.mark.parametrize("text, entities", ENTITY_TEXTS)
def test_predict_awkward_texts(text, entities):
    model = tag_capitalised_words(tiny_multitask())
    out = model.predict(text)
    assert set(out) == {"topic", "ner"} and set(out["topic"]) == {"label", "score"}
    assert out["topic"]["label"] in model.label_names and 0 < out["topic"]["score"] <= 1
    assert [e["text"] for e in out["ner"]] == entities
    for e in out["ner"]:
        assert text[e["start"]:e["end"]] == e["text"] and e["type"] == "ORG"


def test_predict_tags_one_per_word():
    model = tiny_multitask()
    words = [["EU", "rejects", "German", "call"], [], ["\u200b", "x"]]
    tags = model.predict_tags(words)
    assert [len(t) for t in tags] == [4, 0, 2]
    assert tags[2][0] == "O"
    assert all(t in model.tags for row in tags for t in row)


def test_predict_rejects_non_strings():
    model = tiny_multitask()
    with pytest.raises(TypeError):
        model.predict(["ok", None])
    with pytest.raises(TypeError):
        model.predict_tags(["not", "nested"])


def test_save_load_round_trip(tmp_path):
    model = tag_capitalised_words(tiny_multitask(seed=3))
    path = model.save_pretrained(tmp_path / "m")
    loaded = MultiTaskSentenceTransformer.from_pretrained(path)
    assert loaded.tags == model.tags and loaded.label_names == model.label_names
    expected = model.predict(TEXTS)
    assert [e["text"] for e in expected[0]["ner"]] == ["Apple", "Google", "Paris"]  # the heads' state is seen
    assert loaded.predict(TEXTS) == expected
    assert tiny_multitask(seed=3).predict(TEXTS) != expected  # a model without those heads differs
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp dirs left


def test_partial_or_mismatched_model_dir(tmp_path):
    import json

    model = tiny_multitask()
    path = model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "heads.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="missing heads.safetensors"):
        MultiTaskSentenceTransformer.from_pretrained(path)
    path = model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "multitask_config.json").read_text())
    ner = next(t for t in config["tasks"] if t["name"] == "ner")
    ner["labels"] = ner["labels"][:5]  # fewer tags than the saved head has
    (tmp_path / "m" / "multitask_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="do not match"):
        MultiTaskSentenceTransformer.from_pretrained(path)


def test_the_saved_folder_loads_in_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer as Reference

    model = tiny_multitask()
    model.encoder.pooling = "max"
    path = model.save_pretrained(tmp_path / "st")  # the model folder is a sentence-transformers folder too
    ref = Reference(path, device="cpu")
    texts = ["a short one", "a somewhat longer sentence for padding", ""]
    assert np.abs(ref.encode(texts) - model.encoder.encode(texts)).max() < 1e-5


def test_export_after_training_is_what_the_heads_read(tmp_path):
    """After real training steps: sentence-transformers' load of the export, model.encoder.encode() and the sentence
    embedding the classifier reads inside predict() are one and the same."""
    from helpers import TOY_ROWS
    from sentence_transformers import SentenceTransformer as Reference

    from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig

    model = tiny_multitask(seed=2)
    before = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
    config = TrainConfig(epochs=2, batch_size=8, lr=3e-3, warmup_ratio=0, output_dir=str(tmp_path / "run"),
                         show_progress=False, plots=False, save_every_steps=0, resume=False, mixed_precision="no")
    MultiTaskTrainer(model, TOY_ROWS, None, config).train()
    assert all(not torch.equal(before[n], p) for n, p in model.encoder.named_parameters())  # the encoder trained
    texts = [" ".join(words) for words in TOY_ROWS["words"][:6]] + ["NASA and the European Union meet in Geneva"]
    ours = model.encoder.encode(texts)
    exported = Reference(str(model.save_pretrained(tmp_path / "st")), device="cpu").encode(texts)
    assert np.abs(exported - ours).max() < 1e-5
    model.eval()
    with torch.no_grad():
        probs = model.heads["topic"](torch.from_numpy(ours)).softmax(-1)
    predicted = model.predict(texts, precision="fp32")  # the fp32 head read above, whatever `auto` is here
    assert [p["topic"]["label"] for p in predicted] == [model.label_names[i] for i in probs.argmax(-1)]
    assert np.allclose([p["topic"]["score"] for p in predicted], probs.max(-1).values.numpy(), atol=1e-5)
    assert len({p["topic"]["label"] for p in predicted}) > 1  # the trained classifier really tells texts apart


def test_tags_must_start_with_o():
    with pytest.raises(ValueError, match="'O'"):
        tiny_multitask(tags=["B-ORG", "O"])


def test_from_pretrained_returns_eval_mode(tmp_path):
    """As transformers and sentence-transformers load: no dropout until .train(), so a direct forward is predict's."""
    from sentence_transformer import SentenceTransformer

    model = tiny_multitask(classifier_dropout=0.5)
    model.save_pretrained(tmp_path / "m")
    loaded = MultiTaskSentenceTransformer.from_pretrained(tmp_path / "m")
    assert not any(m.training for m in loaded.modules())
    emb = loaded.encode(["Apple opens a store in Paris."], convert_to="tensor", precision="fp32")
    with torch.no_grad():
        direct = loaded.heads["topic"](emb).softmax(-1)  # the head read directly gives predict's score
    predicted = loaded.predict("Apple opens a store in Paris.", precision="fp32")["topic"]
    assert abs(float(direct.max()) - predicted["score"]) < 1e-5
    model.encoder.save_pretrained(tmp_path / "st")
    assert not any(m.training for m in SentenceTransformer.from_pretrained(tmp_path / "st").modules())


@pytest.mark.parametrize("untrained", ["topic", "ner"])
def test_a_head_that_never_trained_says_so(tmp_path, untrained):
    from helpers import TOY_ROWS, quiet_config

    from trainer_sentence_transformer import MultiTaskTrainer

    model = tag_capitalised_words(tiny_multitask())  # a NER head that would find entities if asked
    MultiTaskTrainer(model, TOY_ROWS, TOY_ROWS, quiet_config(tmp_path, task_weights={untrained: 0.0})).train()
    trained = "topic" if untrained == "ner" else "ner"
    assert model.trained_tasks == {trained: True, untrained: False}
    loaded = MultiTaskSentenceTransformer.from_pretrained(tmp_path / "best_model")
    assert loaded.trained_tasks == model.trained_tasks  # recorded with the saved model
    with pytest.warns(UserWarning, match=f"{untrained} head was never trained"):
        out = loaded.predict("Apple opens a store in Paris.")
    tags = loaded.predict_tags([["Apple", "opens", "in", "Paris"]])[0]
    if untrained == "ner":
        assert out["ner"] == [] and tags == ["O"] * 4 and out["topic"]["label"] in loaded.label_names
    else:
        assert out["topic"] == {"label": None, "score": None} and out["ner"] and tags != ["O"] * 4
    # a later stage that freezes the trained head keeps it marked trained (it learned before)
    MultiTaskTrainer(loaded, TOY_ROWS, None, quiet_config(tmp_path / "stage2", freeze_tasks=(trained,))).train()
    assert loaded.trained_tasks == {"topic": True, "ner": True}


def test_models_without_a_record_answer_with_every_head(tmp_path):
    """A model built by hand or saved before the record existed: every head answers, no note."""
    import json
    import warnings

    model = tag_capitalised_words(tiny_multitask())
    model.save_pretrained(tmp_path / "m")
    config_file = tmp_path / "m" / "multitask_config.json"
    config = json.loads(config_file.read_text())
    del config["trained_tasks"]  # as written before this key existed
    config_file.write_text(json.dumps(config))
    loaded = MultiTaskSentenceTransformer.from_pretrained(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = loaded.predict("Apple opens a store in Paris.")
    assert loaded.trained_tasks is None and out["topic"]["label"] is not None and out["ner"]
