"""spaCy's blank English word split, without spaCy.

A model trained on the words spaCy's tokenizer makes must split text the same way where spaCy is not installed (a
torch-only or onnxruntime-only box). english_rules() reads spaCy's English settings (affix regexes, URL pattern, special
cases) into a JSON-ready dict, written beside a model when it is saved; WordSplitter replays the algorithm of spaCy's
Cython tokenizer (spacy/tokenizer.pyx) on those rules in plain Python: the same tokens at the same char offsets.
Only the standard library is imported; spaCy only inside the functions that read the rules.
"""
import re

RULES_FORMAT = 1
_NON_SPACE = re.compile(r"\S+")  # sre's \s is Py_UNICODE_ISSPACE, the test spaCy's str.isspace() makes


def _spacy():
    try:  # optional: only where the rules are read, never where they are used
        import spacy
    except ImportError as e:
        raise ImportError("reading spaCy's word-split rules needs spaCy (pip install spacy); a saved model carries "
                          "its rules (word_rules.json) and splits without it") from e
    return spacy


def english_rules() -> dict:
    """The rules of spaCy's blank English tokenizer (spacy.blank("en").tokenizer): see tokenizer_rules."""
    return tokenizer_rules(_spacy().blank("en").tokenizer)


def tokenizer_rules(tokenizer) -> dict:
    """What a spaCy tokenizer needs to split text, as a JSON-ready dict: the affix / token / URL regex patterns (None
    where unset), the special cases as string -> ORTH pieces (their NORMs change no boundary), faster_heuristics and
    the spaCy version read."""
    spacy = _spacy()
    patterns = {}
    for name, compiled in (("prefix", tokenizer.prefix_search), ("suffix", tokenizer.suffix_search),
                           ("infix", tokenizer.infix_finditer), ("token_match", tokenizer.token_match),
                           ("url_match", tokenizer.url_match)):
        regex = None if compiled is None else compiled.__self__
        if regex is not None and re.compile(regex.pattern).flags != regex.flags:
            raise ValueError(f"spaCy's {name} regex has flags {regex.flags} its pattern does not carry")
        patterns[name] = None if regex is None else regex.pattern
    orth = spacy.symbols.ORTH
    special_cases = {string: [piece[orth] if orth in piece else piece["ORTH"] for piece in pieces]
                     for string, pieces in sorted(tokenizer.rules.items())}
    return {"format": RULES_FORMAT, "spacy_version": spacy.__version__, **patterns,
            "faster_heuristics": bool(tokenizer.faster_heuristics), "special_cases": special_cases}


def _compiled(pattern, method):
    return None if pattern is None else getattr(re.compile(pattern), method)


class WordSplitter:
    """spaCy's tokenizer on rules from english_rules() / tokenizer_rules() (or a JSON round trip of them):
    tokens(text) gives what `[(t.text, t.idx) for t in tokenizer(text)]` gives, whitespace tokens included.

    Works as tokenizer.pyx does: text is cut at whitespace into chunks (one ' ' after a chunk is its trailing space,
    other whitespace makes tokens); a chunk is a special case, or loses prefixes and suffixes until none match, the
    rest splitting at infixes unless it is a URL; last, a phrase-matcher pass re-splits runs of tokens that spell a
    special case the chunk pass could not see (the faster_heuristics rule picks which). A chunk's split is cached
    (at most max_cache_size chunks; past that nothing more is kept)."""

    def __init__(self, rules: dict, max_cache_size: int = 50_000):
        if rules.get("format", RULES_FORMAT) != RULES_FORMAT:
            raise ValueError(f"word-split rules of format {rules.get('format')!r}; this code reads {RULES_FORMAT}")
        self._prefix = _compiled(rules["prefix"], "search")
        self._suffix = _compiled(rules["suffix"], "search")
        self._infix = _compiled(rules["infix"], "finditer")
        self._token_match = _compiled(rules["token_match"], "match")
        self._url_match = _compiled(rules["url_match"], "match")
        self._specials = {}
        for string, pieces in rules["special_cases"].items():
            if not pieces or "".join(pieces) != string:
                raise ValueError(f"special case {string!r}: pieces {pieces!r} do not spell it")
            self._specials[string] = tuple(pieces)
        self._faster_heuristics = bool(rules["faster_heuristics"])
        self.max_cache_size = max_cache_size
        self._cache = {}
        self._patterns = self._special_patterns()

    def tokens(self, text: str) -> list[tuple[str, int]]:
        """Every token spaCy's tokenizer makes of `text` (whitespace tokens included), as (text, char offset)."""
        found = self._chunk_pass(text, True)
        if self._patterns and found:
            found = self._special_case_pass(text, found)
        return found

    # ---- the chunk pass (Tokenizer._tokenize_affixes) ----------------------------------------------------------------

    def _chunk_pass(self, text, with_specials):
        """Tokens of text's whitespace-separated chunks and of its whitespace (a chunk's one trailing ' ' aside)."""
        found = []
        end = 0
        for chunk in _NON_SPACE.finditer(text):
            start = chunk.start()
            if start > end:
                self._add_space(text, end, start, found, with_specials)
            self._add_chunk(chunk.group(), start, found, with_specials)
            end = chunk.end()
        if end < len(text):
            self._add_space(text, end, len(text), found, with_specials)
        return found

    def _add_space(self, text, start, end, found, with_specials):
        """Whitespace text[start:end]: after a chunk, a first ' ' is that chunk's trailing space; the rest a chunk."""
        if start and text[start] == " ":
            start += 1
        if start < end:
            self._add_chunk(text[start:end], start, found, with_specials)

    def _add_chunk(self, chunk, start, found, with_specials):
        if with_specials:
            pieces = self._cache.get(chunk)
            if pieces is None:
                pieces = self._specials.get(chunk) or tuple(self._split_chunk(chunk, True))
                if len(self._cache) < self.max_cache_size:
                    self._cache[chunk] = pieces
        else:
            pieces = self._split_chunk(chunk, False)
        if len(pieces) == 1:
            found.append((chunk, start))
            return
        for piece in pieces:
            found.append((piece, start))
            start += len(piece)

    def _split_chunk(self, chunk, with_specials):
        """Tokenizer._tokenize: prefixes, then the middle (special case, URL or infix split), then suffixes."""
        if with_specials and chunk in self._specials:
            return list(self._specials[chunk])
        prefixes, middle, suffixes = self._split_affixes(chunk, with_specials)
        suffixes.reverse()
        return prefixes + self._split_middle(middle, with_specials) + suffixes

    def _split_affixes(self, string, with_specials):
        """Tokenizer._split_affixes: peel prefixes and suffixes off until none matches, the rest is a special case,
        or the token_match matches; -> (prefixes, rest, suffixes innermost last)."""
        specials = self._specials if with_specials else {}
        prefixes, suffixes = [], []
        last_size = 0
        while string and len(string) != last_size:
            if (self._token_match and self._token_match(string)) or string in specials:
                break
            last_size = len(string)
            pre_len = _match_len(self._prefix, string)
            if pre_len and pre_len < len(string) and string[pre_len:] in specials:
                prefixes.append(string[:pre_len])
                string = string[pre_len:]
                break
            suf_len = _match_len(self._suffix, string[pre_len:])
            if suf_len and suf_len < len(string) and string[:-suf_len] in specials:
                suffixes.append(string[-suf_len:])
                string = string[:-suf_len]
                break
            if pre_len and suf_len and pre_len + suf_len <= len(string):
                prefixes.append(string[:pre_len])
                suffixes.append(string[-suf_len:])
                string = string[pre_len:-suf_len]
            elif pre_len:
                prefixes.append(string[:pre_len])
                string = string[pre_len:]
            elif suf_len:
                suffixes.append(string[-suf_len:])
                string = string[:-suf_len]
        return prefixes, string, suffixes

    def _split_middle(self, string, with_specials):
        """Tokenizer._attach_tokens for what the affixes left: a special case, a token_match / URL, or infix pieces."""
        if not string:
            return []
        if with_specials:
            known = self._specials.get(string) or self._cache.get(string)
            if known:
                return list(known)
        if (self._token_match and self._token_match(string)) or (self._url_match and self._url_match(string)):
            return [string]
        pieces = []
        start = 0
        for infix in self._infix(string) if self._infix else ():
            infix_start, infix_end = infix.span()
            if infix_start == 0:  # an infix at the very start is no split (it stays with what follows)
                continue
            if infix_start != start:
                pieces.append(string[start:infix_start])
            if infix_start != infix_end:
                pieces.append(string[infix_start:infix_end])
            start = infix_end
        if string[start:]:
            pieces.append(string[start:])
        return pieces

    # ---- the special-case matcher pass (Tokenizer._apply_special_cases) ---------------------------------------------

    def _special_patterns(self):
        """The PhraseMatcher spaCy builds in add_special_case: for each special case with an affix, an infix or a
        space (every one without faster_heuristics), the tokens the chunk pass makes of it without special cases;
        as {first token: {pattern, ...}}."""
        patterns = {}
        for string in sorted(self._specials):
            if self._faster_heuristics and not (_match_len(self._prefix, string) or _match_len(self._suffix, string)
                                                or (self._infix and any(True for _ in self._infix(string)))
                                                or " " in string):
                continue
            pattern = tuple(piece for piece, _ in self._chunk_pass(string, False))
            patterns.setdefault(pattern[0], set()).add(pattern)
        return patterns

    def _special_case_pass(self, text, found):
        """Runs of tokens spelling a matcher pattern: the longest first (then the leftmost), skipped where its first or
        last token is in a run already taken or passed over (spaCy's _filter_special_spans); a run whose text (spaces
        included) is a special case becomes that special case's pieces."""
        runs = []
        words = None
        for i, (word, _) in enumerate(found):
            for pattern in self._patterns.get(word, ()):
                words = words or [w for w, _ in found]
                if tuple(words[i:i + len(pattern)]) == pattern:
                    runs.append((i, i + len(pattern)))
        if not runs:
            return found
        kept, seen = [], set()
        for start, end in sorted(set(runs), key=lambda run: (run[0] - run[1], run[0])):
            if start not in seen and end - 1 not in seen:
                kept.append((start, end))
            seen.update(range(start, end))
        result, done = [], 0
        for start, end in sorted(kept):
            result += found[done:start]
            first, last = found[start][1], found[end - 1][1] + len(found[end - 1][0])
            pieces = self._specials.get(text[first:last])
            if pieces:
                for piece in pieces:
                    result.append((piece, first))
                    first += len(piece)
            else:
                result += found[start:end]
            done = end
        return result + found[done:]


def _match_len(search, string):
    """Tokenizer.find_prefix / find_suffix: the length of the regex's first match (0 for none)."""
    if search is None:
        return 0
    found = search(string)
    return 0 if found is None else found.end() - found.start()
