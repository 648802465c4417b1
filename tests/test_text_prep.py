"""text_prep: AG News cleaning (on examples, on every row of the tests' data and of the development copy's real AG News) and word splitting (words a BERT
uncased tokenizer keeps, offsets into the text)."""
import re

import pytest
from helpers import zero_piece_words

import text_prep

# ---------------------------------------------------------------- cleaning

@pytest.mark.parametrize("raw, clean", [
    ("Oil Prices Slip Below  #36;46; Risks Abound", "Oil Prices Slip Below $46; Risks Abound"),
    ("Regulators Let Cingular Buy AT #38;T Wireless", "Regulators Let Cingular Buy AT&T Wireless"),
    ("Q amp;A: HP #39;s Livermore", "Q&A: HP's Livermore"),
    ("to be legalized as  quot;opt-out? quot; The R", 'to be legalized as "opt-out?" The R'),
    ("a record \\$55.8bn as oil", "a record $55.8bn as oil"),
    ("Wall Street's dwindling\\band of ultra-cynics", "Wall Street's dwindling band of ultra-cynics"),
    ("storm  #151; even with", "storm \u2014 even with"),
    ("Ch #225;vez declares", "Ch\u00e1vez declares"),
    ("is nbsp;exciting", "is exciting"),
    ("adapt &lt;strong&gt;Opinion&lt;/strong&gt; SAP", "adapt Opinion SAP"),
    ('Corp. &lt;A HREF="http://www.investor.reuters.com/FullQuote.aspx?ticker=KMRT.O target=/stocks/quickinfo/'
     'fullquote"&gt;KMRT.O&lt;/A&gt; on Monday', "Corp. KMRT.O on Monday"),
    ("Kmart Holding Corp. &lt;KMRT.O&gt; said", "Kmart Holding Corp. <KMRT.O> said"),
    ("Sysco Profit Rises; Sales Have Slowed", "Sysco Profit Rises; Sales Have Slowed"),
    ("Jos #233; Mourinho", "Jos\u00e9 Mourinho"),
    ("  \\\\  ", ""),
])
def test_clean_examples(raw, clean):
    assert text_prep.clean_text(raw) == clean
    got, offsets = text_prep.clean_text_with_offsets(raw)
    assert got == clean and len(offsets) == len(clean) + 1 and offsets[-1] == len(raw)
    got, starts, ends = text_prep.clean_text_with_spans(raw)
    assert got == clean and starts == offsets[:-1] and len(ends) == len(clean)
    assert all(s < e for s, e in zip(starts, ends))


def test_spans_are_tight():
    raw = 'Coach Jos #233; Mourinho of Kmart &lt;A HREF="x"&gt;KMRT.O&lt;/A&gt; said'
    clean, starts, ends = text_prep.clean_text_with_spans(raw)
    for name in ("Jos\u00e9", "Jos\u00e9 Mourinho", "KMRT.O", "Kmart KMRT.O"):
        s = clean.index(name)
        e = s + len(name)
        assert text_prep.clean_text(raw[starts[s]:ends[e - 1]]) == name
    s = clean.index("KMRT.O")
    assert raw[starts[s]:ends[s + 5]] == "KMRT.O"


def test_clean_the_tests_rows(ag_raw):
    check_cleaning([t for split in ("train", "test") for t in ag_raw[split]["text"]])


@pytest.mark.slow
def test_clean_real_rows(dev_ag_news_dir):
    """Every row of the development copy's real AG News (all its escapes and markup)."""
    import datasets

    raw = datasets.load_dataset(dev_ag_news_dir)
    check_cleaning([t for split in ("train", "test") for t in raw[split]["text"]])


def check_cleaning(texts):
    """No artefacts left, both cleaners agree, offsets map words back."""
    assert any("#36;" in t for t in texts)
    for raw in texts:
        clean, offsets = text_prep.clean_text_with_offsets(raw)
        assert clean == text_prep.clean_text(raw)
        _, starts_, ends = text_prep.clean_text_with_spans(raw)
        assert not re.search(r"#36;|#39;| quot;|&lt;|&gt;|&amp;|\\|</?[bB]>", clean), clean
        assert len(offsets) == len(clean) + 1 and offsets[-1] == len(raw)
        assert all(a <= b for a, b in zip(offsets, offsets[1:]))
        words, starts = text_prep.split_words(clean)
        for w, s in zip(words, starts):
            e = s + len(w)
            piece = raw[offsets[s]:offsets[e]]
            assert text_prep.clean_text(piece) == w, (raw, w, piece)
            tight = raw[starts_[s]:ends[e - 1]]
            assert text_prep.clean_text(tight) == w and tight == tight.strip(), (raw, w, tight)
            if not re.search(r"[&#;\\<>]", piece.rstrip()):
                assert piece.rstrip() == w  # plain chars map exactly
                assert all(raw[offsets[i]] == clean[i] for i in range(s, e))
    assert "$" in text_prep.clean_text(next(t for t in texts if "#36;" in t))


# ---------------------------------------------------------------- words

NASTY = ["\u200b", "\ufffd", "e\u0301", "\u0301", "\U0001F600", "a\u200bb", "\u00a0", "\u2028", "\x00", "\x7f",
         "\u202e", "\ufeff", "\ue000", "\u0378", "\u3000", "\u00ad", "\u0130", "\uff41", "\u5317\u4eac", "\u0e01\u0e31"]


def test_split_words_nasty(bert_tokenizer):
    for s in NASTY + ["".join(NASTY), " ".join(NASTY)]:
        for text in (s, f"x {s} y", f"x{s}y"):
            words, starts = text_prep.split_words(text)
            assert not zero_piece_words(bert_tokenizer, words), (text, words)
            assert all(text[st:st + len(w)] == w for w, st in zip(words, starts))
            assert all(w.strip() for w in words)
    # what the filter drops does vanish under BERT (the predicate is not needlessly strict)
    for s in ["\u200b", "\ufffd", "\u0301", "\u00ad", "\ufeff", "\x00"]:
        assert text_prep.split_words(s) == ([], []) and zero_piece_words(bert_tokenizer, [s]) == [s]
    assert text_prep.split_words("e\u0301")[0] == ["e\u0301"]
    assert text_prep.split_words("") == ([], []) and text_prep.split_words(" \n\t ") == ([], [])
