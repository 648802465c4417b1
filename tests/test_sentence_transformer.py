import time

import numpy as np
import pytest
import torch
from helpers import tiny_sentence_transformer

import sentence_transformer as st_module
from sentence_transformer import ModelLoadError, SentenceTransformer, pool

MIXED = ["short", "a somewhat longer sentence with several more words in it", "", "mid length text here"]


@pytest.fixture(scope="module")
def minilm():
    return SentenceTransformer()


@pytest.fixture(scope="module")
def ag_texts(ag_news_dir):
    from datasets import load_dataset

    return list(load_dataset(ag_news_dir, split="test")["text"][:1000])


def test_import_loads_nothing():
    import subprocess
    import sys

    code = ("import sys, sentence_transformer; "
            "print(any(m.startswith(('transformers.models', 'spacy', 'datasets')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=st_module.__file__.rsplit("/", 1)[0])
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.slow
def test_parity_with_sentence_transformers(minilm, ag_texts):
    from sentence_transformers import SentenceTransformer as Reference

    ref = Reference(st_module.packaged_model_path(), device="cpu")
    theirs = ref.encode(ag_texts, batch_size=64, normalize_embeddings=True)
    ours = minilm.encode(ag_texts, batch_size=64, normalize=True)
    assert ours.shape == (len(ag_texts), 384)
    assert np.abs(ours - theirs).max() < 1e-5


def test_cls_pooling_is_first_state(packaged_model_path):
    model = SentenceTransformer(packaged_model_path, pooling="cls")
    batch = model.tokenize(MIXED)
    with torch.no_grad():
        hidden = model.encoder(**batch).last_hidden_state
        out = model(batch["input_ids"], batch["attention_mask"])
    assert torch.equal(out["sentence_embedding"], hidden[:, 0])
    assert torch.allclose(model.encode(MIXED, convert_to="tensor"), hidden[:, 0], atol=1e-5)


@pytest.mark.parametrize("mode", ["mean", "max", "cls"])
def test_pooling_ignores_padding(mode):
    model = tiny_sentence_transformer(pooling=mode).eval()
    batch = model.tokenize(MIXED)
    assert (batch["attention_mask"] == 0).any()  # the batch really is padded
    with torch.no_grad():
        padded = model(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
        for i, text in enumerate(MIXED):
            alone = model.tokenize([text])
            single = model(alone["input_ids"], alone["attention_mask"])["sentence_embedding"][0]
            assert torch.allclose(padded[i], single, atol=1e-5), (mode, text)


def test_max_pooling_matches_manual():
    h = torch.tensor([[[1.0, -5.0], [3.0, -1.0], [99.0, 99.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(h, mask, "max").tolist() == [[3.0, -1.0]]
    assert pool(h, mask, "mean").tolist() == [[2.0, -3.0]]


def test_invalid_pooling_lists_valid_ones():
    with pytest.raises(ValueError, match="mean, cls, max"):
        tiny_sentence_transformer(pooling="median")


def test_encode_shapes_and_order():
    model = tiny_sentence_transformer()
    one = model.encode("hello world")
    assert one.shape == (32,)
    many = model.encode(MIXED, batch_size=2)
    assert many.shape == (4, 32)
    # Order restored despite length sorting: each row equals the text encoded alone.
    for i, text in enumerate(MIXED):
        assert np.allclose(many[i], model.encode(text), atol=1e-5)
    assert model.encode([]).shape == (0, 32)
    normed = model.encode(MIXED, normalize=True, convert_to="tensor")
    assert torch.allclose(normed.norm(dim=1), torch.ones(4), atol=1e-5)


def test_token_output_strips_padding():
    model = tiny_sentence_transformer()
    toks = model.encode(MIXED, output="token")
    lengths = [len(model.tokenizer(t)["input_ids"]) for t in MIXED]
    assert [t.shape for t in toks] == [(n, 32) for n in lengths]
    assert model.encode("", output="token").shape == (2, 32)  # [CLS] [SEP]


def test_awkward_texts():
    model = tiny_sentence_transformer(max_length=64)
    texts = ["", "   \n\t ", "word " * 10000, "naïve café — 東京 😀🚀", "\u200b"]
    emb = model.encode(texts)
    assert emb.shape == (5, 32) and np.isfinite(emb).all()
    assert len(model.encode("word " * 10000, output="token")) == 64  # truncated at max_length


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["ok", None], ["ok", 1.5], {"a": 1}])
def test_non_strings_are_type_errors(bad):
    model = tiny_sentence_transformer()
    with pytest.raises(TypeError, match="str"):
        model.encode(bad)


@pytest.mark.slow
def test_bf16_agrees_with_fp32(minilm, ag_texts):
    fp32 = minilm.encode(ag_texts[:64], normalize=True)
    bf16 = minilm.encode(ag_texts[:64], normalize=True, precision="bf16")
    assert (fp32 * bf16).sum(1).min() > 0.99


def test_unknown_model_fails_fast_and_names_offline_options(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.time()
    with pytest.raises(ModelLoadError, match="packaged default"):
        SentenceTransformer("no-such-org/no-such-model-xyz")
    assert time.time() - start < 10


def test_missing_local_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        SentenceTransformer(str(tmp_path / "missing"))


def test_save_load_round_trip(tmp_path):
    model = tiny_sentence_transformer(pooling="max", max_length=48)
    path = model.save_pretrained(tmp_path / "st")
    loaded = SentenceTransformer.from_pretrained(path)
    assert loaded.pooling == "max" and loaded.max_length == 48
    assert np.allclose(model.encode(MIXED), loaded.encode(MIXED), atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["st"]


def test_load_rejects_plain_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="save"):
        SentenceTransformer.from_pretrained(tmp_path)


def test_display_token_embeddings(capsys):
    model = tiny_sentence_transformer()
    model.display_token_embeddings = True
    model.encode("hello world")
    out = capsys.readouterr().out
    assert "token embeddings (1, 4, 32)" in out and "sentence embedding (1, 32)" in out
