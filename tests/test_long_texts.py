"""Long texts: rows longer than max_length wordpieces are tagged in overlapping windows (no entity is lost), while the
topic and the sentence embedding read the first window; entity offsets index the raw text; evaluate() scores NER on
the whole row. A tiny encoder with max_length 16 makes texts of many windows cheap."""
import numpy as np
import pytest
import torch
from helpers import tag_capitalised_words, tiny_multitask

from batching import prepare_features
from multi_task_sentence_transformer import MultiTaskSentenceTransformer
from prediction import plan_windows, tokenize_words
from trainer_sentence_transformer import evaluate

MAX_LENGTH = 16  # 14 wordpieces per window besides [CLS] and [SEP]


def short_window_model(seed=0):
    """The deterministic capitalised-word tagger (runs of Title/UPPER words are one ORG entity) on a tiny encoder
    whose windows hold 16 wordpieces."""
    model = tag_capitalised_words(tiny_multitask(seed=seed))
    model.encoder.max_length = MAX_LENGTH
    return model


def expected_tags(words):
    """What the capitalised-word tagger gives a word that sees its left neighbour: B on a capitalised word after an
    uncapitalised one, I on one after another capitalised word. A word at a window's start sees no left neighbour
    (it would be B), so a right answer on every word needs each word tagged in a window with context on its left."""
    caps = [w[:1].isupper() for w in words]
    return ["O" if not c else ("I-ORG" if i and caps[i - 1] else "B-ORG") for i, c in enumerate(caps)]


def filler(n, offset=0):
    return [f"w{offset + k}" for k in range(n)]  # 'w12' -> pieces 'w', '##12': several pieces per word


def test_plan_windows_cover_every_word_with_overlap():
    assert plan_windows([1] * 10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert plan_windows([1] * 5, 8, 2) == [(0, 5)]
    assert plan_windows([3, 1, 1, 6, 1, 1], 4, 1) == [(0, 2), (1, 3), (3, 4), (4, 6)]  # a 6-piece word: alone, cut
    counts = [1, 2, 3] * 40
    plan = plan_windows(counts, 14, 3)
    assert plan[0][0] == 0 and plan[-1][1] == len(counts)
    for (s0, e0), (s1, e1) in zip(plan, plan[1:]):
        assert s0 < s1 <= e0 < e1  # each window starts later, overlaps or touches the previous, and reaches further
    assert all(sum(counts[s:e]) <= 14 for s, e in plan)


def test_every_word_of_a_long_row_is_tagged_from_a_window_with_context():
    model = short_window_model()
    # "New York" at every position of a 40-word row: some pairs straddle a window cut, where the second word, seen
    # from the later window alone, would be a B (no left context) and the first word, seen from the earlier one, O.
    rows = [filler(k) + ["New", "York"] + filler(40 - k, k) for k in range(0, 41)]
    n_pieces = len(tokenize_words(model.tokenizer, [rows[0]], 10_000)["input_ids"][0])
    assert n_pieces > 5 * MAX_LENGTH  # several windows
    got = model.predict_tags(rows, batch_size=64)  # ~300 windows: several batches
    assert [len(t) for t in got] == [len(r) for r in rows]  # one tag per word
    for row, tags in zip(rows, got):
        assert tags == expected_tags(row), row


def tag_words_before_capitalised(model):
    """A tagger that needs right context: B-ORG on every word whose next token is capitalised, O elsewhere (built
    like helpers.tag_capitalised_words, reading the next token's shape). A word at a window's end sees no next token
    (it would be O), so this catches a merge that keeps the earlier window's tag of a word near its cut."""
    from text_prep import WORD_SHAPES

    tag_capitalised_words(model)  # shape s -> unit vector s; everything else in the head zeroed below
    head, tags = model.heads["ner"], model.tags
    dim = head.shape_embedding.embedding_dim
    n = head.hidden.in_channels - (2 * head.window + 1) * dim
    with torch.no_grad():
        for module in (head.hidden, head.linear):
            module.weight.zero_()
            module.bias.zero_()
        for s in (WORD_SHAPES.index("Title"), WORD_SHAPES.index("UPPER")):
            head.hidden.weight[0, n + (head.window + 1) * dim + s, head.context] = 1.0
        head.linear.bias[tags.index("O")] = 0.5
        head.linear.weight[tags.index("B-ORG"), 0] = 2.0
    return model


def test_words_near_a_cut_take_the_tag_of_the_window_with_more_context():
    model = tag_words_before_capitalised(tiny_multitask())
    model.encoder.max_length = MAX_LENGTH
    small = ["the", "a", "of", "and", "to", "in"]  # one wordpiece each: the next token is the next word
    rows = [[small[j % 6] for j in range(k)] + ["Paris"] + [small[j % 6] for j in range(40 - k)] for k in range(41)]
    got = model.predict_tags(rows)
    for row, tags in zip(rows, got):
        k = row.index("Paris")
        assert tags == ["B-ORG" if j == k - 1 else "O" for j in range(len(row))], k


def test_late_entities_are_found_and_index_the_raw_text():
    model = short_window_model()
    # AG News escapes early on (cleaning shifts every later character), entities in the first, middle and last window
    text = ("Oil hit  #36;50 a barrel &amp; more, quot;analysts quot; say " + " ".join(filler(30))
            + " then Barack Obama met " + " ".join(filler(30, 30)) + " in São Paulo. Last: Reuters")
    out = model.predict(text)
    found = [e["text"] for e in out["ner"]]
    assert found == ["Oil", "Barack Obama", "São Paulo", "Last", "Reuters"]
    for e in out["ner"]:
        assert text[e["start"]:e["end"]] == e["text"] and e["type"] == "ORG"
    assert out["ner"][-1]["end"] == len(text)


def test_topic_and_embedding_read_the_first_window_only():
    model = short_window_model().eval()  # no dropout in the direct forward below
    head = "Apple buys Google in Paris for a lot of money, say the analysts"
    texts = [head, head + " and " + " ".join(filler(60)) + " then New York", head + " more words " * 40]
    out = model.predict(texts, precision="fp32")
    emb = model.encode(texts, precision="fp32")
    # the first window, computed directly: the row truncated at max_length, as in training
    from text_prep import split_words

    enc = tokenize_words(model.tokenizer, [split_words(texts[1])[0]], MAX_LENGTH)
    ids = torch.tensor(enc["input_ids"])
    with torch.no_grad():
        logits = model(ids, torch.ones_like(ids), shape_ids=torch.tensor(enc["shape_ids"]))["topic"]
        first_window_embedding = model.encoder(ids, torch.ones_like(ids))["sentence_embedding"][0]
    probs = logits.softmax(-1)[0]
    topics = [o["topic"] for o in out]
    assert topics[1]["label"] == model.label_names[int(probs.argmax())]
    assert topics[1]["score"] == pytest.approx(float(probs.max()), abs=1e-6)
    assert topics[1]["score"] == pytest.approx(topics[2]["score"], abs=1e-6)
    assert topics[1]["label"] == topics[2]["label"]
    assert np.allclose(emb[1], first_window_embedding, atol=1e-6)
    assert np.allclose(emb[1], emb[2], atol=1e-6)
    assert out[1]["ner"][-1]["text"] == "New York"


def test_fast_path_finds_the_same_entities_on_a_long_text(tmp_path):
    model = short_window_model(seed=3)
    path = model.export_fast(tmp_path / "fast", quantize="fp32")
    fast = MultiTaskSentenceTransformer.from_pretrained(path)
    assert fast.fast is not None and fast.encoder.max_length == MAX_LENGTH
    texts = [" ".join(filler(25)) + " Barack Obama " + " ".join(filler(25, 25)) + " New York Times",
             "Short text in Paris"]
    calls = []
    run = fast.fast.run
    fast.fast.run = lambda *a, **k: calls.append(a[0].shape) or run(*a, **k)
    got, ref = fast.predict(texts), model.predict(texts, precision="fp32")
    assert len(calls) >= 1 and sum(shape[0] for shape in calls) > 2  # later windows ran through ONNX Runtime too
    assert [p["ner"] for p in got] == [p["ner"] for p in ref]
    assert [e["text"] for e in got[0]["ner"]] == ["Barack Obama", "New York Times"]
    assert [p["topic"]["label"] for p in got] == [p["topic"]["label"] for p in ref]


def long_rows():
    words = filler(20) + ["Barack", "Obama"] + filler(20, 20) + ["New", "York", "Times"]
    return {"words": [words, ["Apple", "buys", "Google"]], "ner_tags": [expected_tags(words),
                                                                       ["B-ORG", "O", "B-ORG"]], "label": [0, 1]}


def test_evaluate_counts_entities_beyond_the_first_window():
    model = short_window_model()
    rows = long_rows()
    features = prepare_features(rows, model)
    assert len(features["word_index"][0]) < 20  # the first window ends long before the late entities
    m = evaluate(model, rows)
    assert m["ner"]["recall"] == 1.0 and m["ner"]["f1"] == 1.0
    # the frozen-encoder feature cache holds first windows only: long rows are still tagged whole, live
    cache = [model.encoder(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))["token_embeddings"][0]
             for ids in features["input_ids"]]
    assert evaluate(model, features, cache=cache)["ner"]["f1"] == 1.0


class Gathered(Exception):
    pass


class ShardStub:
    """An accelerator stand-in for process `rank` of 2: gather_for_metrics joins this process's results with the
    other process's (recorded from its own call, which stops there)."""

    def __init__(self, rank, other=None):
        self.num_processes, self.process_index, self.other, self.mine = 2, rank, other, None

    def gather_for_metrics(self, results, use_gather_object=True):
        self.mine = results
        if self.other is None:
            raise Gathered
        return results + self.other


def test_evaluate_shards_long_rows_over_processes():
    model = short_window_model()
    rows = long_rows()
    rows = {k: v + v[::-1] for k, v in rows.items()}  # long, short, short, long: each process gets a long row
    second = ShardStub(1)
    with pytest.raises(Gathered):
        evaluate(model, rows, accelerator=second)
    assert sorted(i for i, _ in second.mine) == [1, 3]
    m = evaluate(model, rows, accelerator=ShardStub(0, other=second.mine))
    assert m["ner"]["f1"] == 1.0 and m["ner"]["per_type"]["ORG"]["support"] == 8


def test_packaged_minilm_tags_a_long_bbc_text(packaged_model_path, bbc_csv):
    """The packaged encoder (windows of 32 pieces) on a long lower-cased BBC-like article with names put at its start
    and end."""
    import csv

    with open(bbc_csv, newline="") as f:
        article = next(csv.DictReader(f))["text"]
    text = "Tony Blair said " + article + " according to Reuters"
    model = tag_capitalised_words(MultiTaskSentenceTransformer(packaged_model_path, max_length=32))
    out = model.predict(text)
    assert [e["text"] for e in out["ner"]] == ["Tony Blair", "Reuters"]  # the article itself is lower-case
    assert all(text[e["start"]:e["end"]] == e["text"] for e in out["ner"])
    assert out["ner"][-1]["end"] == len(text)
