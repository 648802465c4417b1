"""Every encoder family the README lists, as a tiny random model: encode, train with freeze_layers=1, predict with
exact character offsets, save/load, export. Tokenizers are built offline (RoBERTa's byte-level BPE is trained here on
AG News text)."""
import numpy as np
import pytest
import torch
from helpers import TOY_ROWS

from multi_task_sentence_transformer import MultiTaskSentenceTransformer
from sentence_transformer import SentenceTransformer
from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig

FAMILIES = ["bert", "distilbert", "roberta", "mpnet"]
HIDDEN, LAYERS = 32, 2


@pytest.fixture(scope="module")
def ag_texts(ag_news_dir):
    from datasets import load_dataset

    return list(load_dataset(ag_news_dir, split="test")["text"][:400])


@pytest.fixture(scope="module")
def bert_vocab():
    from transformers import AutoTokenizer

    import sentence_transformer

    return AutoTokenizer.from_pretrained(sentence_transformer.packaged_model_path())


@pytest.fixture(scope="module")
def roberta_tokenizer_dir(ag_texts, tmp_path_factory):
    """A byte-level BPE vocabulary trained on AG News text, saved as RoBERTa tokenizer files (no prefix space)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(ag_texts, vocab_size=1200, min_frequency=2,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    raw = tmp_path_factory.mktemp("bpe")
    bpe.save_model(str(raw))
    out = tmp_path_factory.mktemp("roberta_tok")
    RobertaTokenizerFast(vocab=str(raw / "vocab.json"), merges=str(raw / "merges.txt"), add_prefix_space=False,
                         model_max_length=512).save_pretrained(out)
    return out


def build(family, bert_vocab, roberta_tokenizer_dir):
    """(tiny random encoder, tokenizer) of one family, attention dropout 0 as the models default to."""
    import transformers as tf

    torch.manual_seed(0)
    if family == "roberta":
        tokenizer = tf.AutoTokenizer.from_pretrained(roberta_tokenizer_dir, add_prefix_space=True)
    elif family == "mpnet":
        specials = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]
        words = [w for w, _ in sorted(bert_vocab.get_vocab().items(), key=lambda x: x[1]) if not w.startswith("[")]
        tokenizer = tf.MPNetTokenizerFast(vocab={w: i for i, w in enumerate(specials + words)}, model_max_length=512)
    else:
        tokenizer = bert_vocab
    common = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    if family == "distilbert":
        config = tf.DistilBertConfig(dim=HIDDEN, n_layers=LAYERS, n_heads=2, hidden_dim=2 * HIDDEN,
                                     attention_dropout=0.0, **common)
        return tf.DistilBertModel(config), tokenizer
    sizes = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=2 * HIDDEN,
                 attention_probs_dropout_prob=0.0, **common)
    if family == "bert":
        return tf.BertModel(tf.BertConfig(**sizes), add_pooling_layer=False), tokenizer
    if family == "roberta":  # 514 position rows, of which 512 are usable (positions start after padding_idx)
        return tf.RobertaModel(tf.RobertaConfig(max_position_embeddings=514, **sizes), add_pooling_layer=False), tokenizer
    return tf.MPNetModel(tf.MPNetConfig(max_position_embeddings=514, **sizes), add_pooling_layer=False), tokenizer


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_family(family, bert_vocab, roberta_tokenizer_dir, ag_texts, tmp_path):
    from text_prep import clean_text, split_words

    encoder, tokenizer = build(family, bert_vocab, roberta_tokenizer_dir)
    st = SentenceTransformer(encoder=encoder, tokenizer=tokenizer, max_length=4096)
    assert st.encoder.config.model_type == family
    assert st.max_length == 512  # the tokenizer's model_max_length; for RoBERTa/MPNet also the usable positions
    assert st.attention_dropout == 0.0
    assert st.encode("A short text.").shape == (HIDDEN,)
    assert st.encode(["word " * 2000]).shape == (1, HIDDEN)  # truncated to what the positions allow
    saved = tokenizer.model_max_length
    try:
        tokenizer.model_max_length = 100
        assert SentenceTransformer(encoder=encoder, tokenizer=tokenizer, max_length=4096).max_length == 100
        tokenizer.model_max_length = int(1e30)  # unset: the usable position embeddings decide (RoBERTa: 514 - 2)
        unset = SentenceTransformer(encoder=encoder, tokenizer=tokenizer, max_length=4096)
        assert unset.max_length == 512
        assert unset.encode(["word " * 2000]).shape == (1, HIDDEN)
    finally:
        tokenizer.model_max_length = saved

    model = MultiTaskSentenceTransformer(st)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = TrainConfig(epochs=1, batch_size=12, lr=1e-2, warmup_ratio=0, freeze_layers=1, output_dir=str(tmp_path / "run"),
                         show_progress=False, plots=False, save_every_steps=0, resume=False, mixed_precision="no")
    trainer = MultiTaskTrainer(model, TOY_ROWS, None, config)
    assert trainer.train()[-1]["global_step"] == 2
    embeddings, layers = model.encoder.embeddings_and_layers()
    frozen = {id(p) for m in (embeddings, layers[0]) for p in m.parameters()}
    assert frozen and len(layers) == LAYERS
    for name, p in model.named_parameters():
        assert torch.equal(before[name], p.detach()) == (id(p) in frozen), name

    # Every word an entity (B-ORG): each entity's offsets must slice exactly its word from the raw text.
    with torch.no_grad():
        model.heads["ner"].linear.bias.fill_(-20.0)
        model.heads["ner"].linear.bias[model.tags.index("B-ORG")] = 20.0
    texts = [t for t in ag_texts if "#36;" in t or "quot;" in t][:3] + ag_texts[:2]
    results = model.predict(texts)
    for text, result in zip(texts, results):
        words, _ = split_words(clean_text(text))
        assert len(result["ner"]) == len(words) > 5, (text, result)
        for e, word in zip(result["ner"], words):
            assert text[e["start"]:e["end"]] == e["text"] and e["type"] == "ORG"
            assert clean_text(e["text"]) == word

    path = model.save_pretrained(tmp_path / "model")
    loaded = MultiTaskSentenceTransformer.from_pretrained(path)
    assert loaded.encoder.encoder.config.model_type == family and loaded.encoder.attention_dropout == 0.0
    assert loaded.encoder.max_length == 512
    assert loaded.predict(texts) == results
    assert np.abs(loaded.encoder.encode(texts) - model.encoder.encode(texts)).max() < 1e-6
    assert not any("pooler" in n for n, _ in loaded.named_parameters())  # built without the unused pooler

    from sentence_transformers import SentenceTransformer as Reference

    exported = Reference(str(model.save_pretrained(tmp_path / "st")), device="cpu")
    assert np.abs(exported.encode(texts) - model.encoder.encode(texts)).max() < 1e-5


def test_byte_level_bpe_needs_prefix_space(roberta_tokenizer_dir, bert_vocab, tmp_path):
    from transformers import AutoTokenizer

    encoder, _ = build("roberta", bert_vocab, roberta_tokenizer_dir)
    plain = AutoTokenizer.from_pretrained(roberta_tokenizer_dir)  # saved without a prefix space
    with pytest.raises(ValueError, match="add_prefix_space=True"):
        SentenceTransformer(encoder=encoder, tokenizer=plain)
    encoder.save_pretrained(tmp_path / "enc")
    plain.save_pretrained(tmp_path / "enc")
    st = SentenceTransformer(str(tmp_path / "enc"))  # loading by path turns it on
    assert st.tokenizer.add_prefix_space is True
    # A pre-split word gets the same pieces as inside running text.
    from prediction import tokenize_words

    ids = tokenize_words(st.tokenizer, [["Oil", "prices", "rose"]], 64)["input_ids"][0]
    assert ids == st.tokenizer("Oil prices rose")["input_ids"]


def test_attention_dropout_is_set_at_load(tmp_path, bert_vocab, roberta_tokenizer_dir):
    for family, key in (("bert", "attention_probs_dropout_prob"), ("distilbert", "attention_dropout")):
        encoder, tokenizer = build(family, bert_vocab, roberta_tokenizer_dir)
        encoder.save_pretrained(tmp_path / family)
        tokenizer.save_pretrained(tmp_path / family)
        st = SentenceTransformer(str(tmp_path / family), attention_dropout=0.25)
        assert getattr(st.encoder.config, key) == 0.25 and st.attention_dropout == 0.25
        assert SentenceTransformer.from_pretrained(st.save_pretrained(tmp_path / f"{family}_st")).attention_dropout == 0.25
    with pytest.raises(ValueError, match="attention_dropout=None"):
        SentenceTransformer(encoder=encoder, tokenizer=tokenizer, attention_dropout=0.5)  # built with 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        SentenceTransformer(str(tmp_path / "bert"), attention_dropout=1.5)
