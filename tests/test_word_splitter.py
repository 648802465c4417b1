"""word_splitter.WordSplitter gives exactly the tokens and char offsets of spaCy's blank English tokenizer: on tricky
strings, a seeded fuzz, the rules after a JSON round trip, and (on development machines) every text of the real data."""
import json
import random
import re
import subprocess
import sys

import pytest
from conftest import ROOT, dev_data_path

import word_splitter

spacy = pytest.importorskip("spacy")

TRICKY = [
    "", " ", "   ", "\t", "\n", " \n ", "\r\n", "a", " a", "a ", "  a  ", "a  b", "a \tb", "a\t b", "a\n\nb", "a \n",
    "\ta", "a\xa0b", "a \xa0 b", "\xa0", "a\u2009b\u3000c", "\u2028x\u2029",
    "don't", "Don't", "DON'T", "don’t", "y'all", "Y'all", "'s", "it's", "John's", "James'", "I'm", "we'll", "'tis",
    "ain't!", "can't.", "gonna", "cannot", "She'd've", "rock'n'roll", "O'Neil", "'90s", "l'amour",
    "U.S.", "U.S.A.", "U.S.)", "(U.S.)", "the U.S. economy.", "a.m.", "p.m.", "10a.m.", "9p.m", "Dr.", "Dr. Smith",
    "Mr.", "Mrs.", "e.g.", "e.g.,", "i.e.", "etc.", "vs.", "Inc.", "Jan.", "Calif.", "Ph.D.", "No.", "St.",
    ":)", ":-)", ":(", ";)", ":P", "<3", "=)", "^_^", "o.O", "(:", "(:)", ":).", "::)", ":))", "(-:", ":-))",
    "(don't)", "\"don't\"", "don't.", "'don't'", "(Dr.)", "[a.m.]",
    "http://example.com", "https://www.example.com/path?a=1&b=2.", "(http://x.org/a-b)", "www.google.com,",
    "example.com.", "foo@bar.com", "<foo@bar.com>", "user.name+tag@mail.co.uk;", "#hashtag", "@mention", "#1",
    "1,000.50", "$5", "$5.00", "US$5", "5$", "€10", "£3m", "5km", "5 km", "10kg.", "30%", "-5", "+1", "1e5", "3:30pm",
    "1/2", "2020-01-01", "20°C", "20°C.", "5'11\"",
    "well-known", "state-of-the-art", "e-mail", "co-op", "--", "a--b", "---", "a—b", "a–b", "—", "–", "x-y-z",
    "...", "a...", "...a", "a...b", "…", "a…b", "....", ". . .", "?!", "!!!", "a?!",
    "\"quoted\"", "'single'", "“curly”", "‘single curly’", "«guillemets»", "„low“", "``tex''",
    "(brackets)", "[square]", "{curly}", "<angle>", "((nested))", "a(b)c", "f(x)=y",
    "naïve café", "Zürich's", "São Paulo", "Ελληνικά.", "Москва,", "日本語テキスト。", "中文，标点", "한국어!", "עברית",
    "👍", "👍🏽 ok", "🇺🇸", "ok👍", "¯\\_(ツ)_/¯", "C++", "C#", "A&B", "a/b", "and/or", "a\\b", "*bold*", "_under_",
    "It's 5 p.m. in the U.S., isn't it?! (Don't ask.)",
    "  Leading and trailing whitespace \t\n",
    "Wall St. Bears Claw Back Into the Black (Reuters) Reuters - Short-sellers, Wall Street's dwindling\\band of",
    # a run the special-case matcher passes over still blocks shorter runs; a special case left after a prefix or
    # before a suffix stops the peeling; a URL-looking rest is one token
    ">:((;who'll", "what've:’):>", '":-(((', "’d.", "°f.’", "There’sI.e.Ala.lovin", "hadn’tf.Ore.needntve",
]
PIECES = ["don't", "y'all", "'s", "U.S.", "a.m.", "Dr.", ":)", ":-)", "http://x.org/a-b?c=d", "www.foo.com", "a@b.co",
          "#tag", "1,000.50", "$5", "5km", "well-known", "--", "...", "…", '"', "'", "(", ")", "[", "]", "“", "”", "‘",
          "’", "—", "–", "-", ".", ",", ";", ":", "!", "?", "x", "A", "5", "naïve", "日本", "👍", "°C", "e.g.", "<3",
          "&", "%", "/", "*", "+", "=", "<", ">", "n't", "'ll", "C++", "3:30", "10a.m.", "'90s", "\xa0", "’s", "km²"]
SEPARATORS = ["", "", "", " ", " ", " ", "  ", "\t", "\n", " \n ", "\xa0", "\r\n", "\u3000"]


@pytest.fixture(scope="module")
def rules():
    return word_splitter.english_rules()


@pytest.fixture(scope="module")
def splitter(rules):
    return word_splitter.WordSplitter(rules)


@pytest.fixture(scope="module")
def spacy_tokens():
    tokenizer = spacy.blank("en").tokenizer
    return lambda text: [(t.text, t.idx) for t in tokenizer(text)]


def mismatches(texts, splitter, spacy_tokens):
    """(text, spaCy's tokens, the splitter's) for each text where they differ."""
    found = []
    for text in texts:
        expected, got = spacy_tokens(text), splitter.tokens(text)
        if got != expected:
            found.append((text, expected, got))
    return found


def test_tricky_strings_split_as_spacy_splits_them(splitter, spacy_tokens):
    assert not mismatches(TRICKY, splitter, spacy_tokens)


def test_every_special_case_glued_to_punctuation_splits_as_spacy_splits_it(rules, splitter, spacy_tokens):
    rng = random.Random(0)
    glue = ["", "(", ")", ".", ",", "'", '"', ":", "-", "!", "?", "...", "’", "”", "s", "1", " "]
    texts = [rng.choice(glue) + rng.choice(glue) + special + rng.choice(glue) + rng.choice(glue)
             for special in rules["special_cases"] for _ in range(2)]
    assert not mismatches(texts, splitter, spacy_tokens)


def test_a_seeded_fuzz_splits_as_spacy_splits_it(rules, splitter, spacy_tokens):
    rng = random.Random(1234)
    specials = sorted(rules["special_cases"])
    texts = []
    for _ in range(3000):
        parts = [rng.choice(SEPARATORS)] if rng.random() < 0.3 else []
        for _ in range(rng.randint(1, 8)):
            parts += [rng.choice(specials) if rng.random() < 0.3 else rng.choice(PIECES), rng.choice(SEPARATORS)]
        texts.append("".join(parts))
    found = mismatches(texts, splitter, spacy_tokens)
    assert not found, f"{len(found)} of {len(texts)} differ, e.g. {found[:3]}"


def test_without_faster_heuristics_too(rules, spacy_tokens):
    """faster_heuristics off: every special case goes to the matcher pass."""
    tokenizer = spacy.blank("en").tokenizer
    tokenizer.faster_heuristics = False
    splitter = word_splitter.WordSplitter(word_splitter.tokenizer_rules(tokenizer))
    rng = random.Random(7)
    specials = sorted(rules["special_cases"])
    texts = TRICKY + ["".join(rng.choice(specials + PIECES) for _ in range(rng.randint(1, 4))) for _ in range(500)]
    assert not mismatches(texts, splitter, lambda text: [(t.text, t.idx) for t in tokenizer(text)])


def test_other_settings_follow_spacy_too():
    """Branches English never takes: a token_match, an infix at the very start or of no width, no URL pattern, special
    cases given as {"ORTH": ...}."""
    from spacy.tokenizer import Tokenizer  # spaCy: optional, as above

    special_cases = {"ab-c": [{"ORTH": "ab"}, {"ORTH": "-c"}], ":)": [{"ORTH": ":)"}]}
    tokenizer = Tokenizer(spacy.blank("en").vocab, rules=special_cases,
                          prefix_search=re.compile(r"^[(:]").search, suffix_search=re.compile(r"[).]$").search,
                          infix_finditer=re.compile(r"-|(?=x)|~+").finditer, token_match=re.compile(r"#\w+").match)
    splitter = word_splitter.WordSplitter(json.loads(json.dumps(word_splitter.tokenizer_rules(tokenizer))))
    texts = ["-a-b", "a-b-", "(x-y)", "#tag-x)", "(#tag-x)", "(ab-c)", "ab-c.", "axbx", "xx", "~~a~b", "--", "(:)",
             ":):)", "a-b c~~d  x-", "((ab-c))", "http://a.b/c-d"]
    assert not mismatches(texts, splitter, lambda text: [(t.text, t.idx) for t in tokenizer(text)])


def test_rules_survive_a_json_round_trip(rules, splitter):
    text = json.dumps(rules)
    again = word_splitter.WordSplitter(json.loads(text))
    assert [again.tokens(t) for t in TRICKY] == [splitter.tokens(t) for t in TRICKY]
    assert rules["spacy_version"] == spacy.__version__ and len(rules["special_cases"]) > 1000


def test_a_bounded_cache_changes_nothing(spacy_tokens, rules):
    small = word_splitter.WordSplitter(rules, max_cache_size=5)
    assert not mismatches(TRICKY * 2, small, spacy_tokens)
    assert len(small._cache) == 5


def test_special_cases_that_do_not_spell_their_key_are_refused(rules):
    with pytest.raises(ValueError, match="do not spell"):
        word_splitter.WordSplitter({**rules, "special_cases": {"don't": ["do", "not"]}})


def test_whitespace_is_what_str_isspace_says_for_every_character():
    """The splitter cuts at regex \\s, spaCy at str.isspace(): the same characters."""
    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    assert re.sub(r"\S", "", everything) == "".join(c for c in everything if c.isspace())


def test_importing_it_imports_only_the_standard_library():
    code = ("import sys; before = set(sys.modules); import word_splitter; "
            "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['word_splitter']"


def real_texts():
    """Every text of the development data: AG News train + test, BBC, STS-B dev sentences, CoNLL-2003 train
    sentences (words joined by spaces)."""
    import pandas as pd  # heavy: only for the development data

    texts = {"ag_news": [t for split in ("train", "test")
                         for t in pd.read_parquet(dev_data_path(f"ag_news/{split}.parquet"), columns=["text"])["text"]],
             "bbc": list(pd.read_csv(dev_data_path("bbc_sport_politics/bbc-text.csv"))["text"]),
             "sts": [], "conll": []}
    with open(dev_data_path("stsbenchmark/sts-dev.csv"), encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")[:7]
            texts["sts"] += fields[5:7] if len(fields) == 7 else []
    words = []
    with open(dev_data_path("conll2003/train.txt"), encoding="utf-8") as f:
        for line in list(f) + [""]:
            columns = line.split()
            if columns and columns[0] != "-DOCSTART-":
                words.append(columns[0])
            elif not columns and words:
                texts["conll"].append(" ".join(words))
                words = []
    return texts


@pytest.mark.slow
def test_every_text_of_the_real_data_splits_as_spacy_splits_it(splitter, spacy_tokens):
    for name, texts in real_texts().items():
        assert len(texts) > 100, name
        found = mismatches(texts, splitter, spacy_tokens)
        assert not found, f"{name}: {len(found)} of {len(texts)} texts differ, e.g. {found[:2]}"
