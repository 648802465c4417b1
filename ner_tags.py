"""The NER tag scheme: spaCy's (OntoNotes) entity types, their CoNLL-2003 mapping, and BIO tag helpers.

    build_tag_list()                            # ["O", "B-EVENT", "I-EVENT", ...]: the fixed tag list of a setting
    build_tag_list(ner_types="conll")           # CONLL_TAGS: O, B-/I- of LOC, MISC, ORG, PER
    map_tags(tags, ONTONOTES_TO_CONLL)          # spaCy-typed BIO tags -> CoNLL-typed ones (unmapped types -> O)
    is_valid_bio(tags), iob1_to_iob2(tags)      # BIO checks and IOB1 -> IOB2

Pure Python; importing it loads nothing.
"""
from __future__ import annotations

from errors import InputError

# The 18 OntoNotes 5 types that en_core_web_sm predicts.
SPACY_ENTITY_TYPES = (
    "PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART",
    "LAW", "LANGUAGE", "DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL",
)

# Types turned into O by default; kept: EVENT, GPE, LANGUAGE, LOC, ORG, PERSON, PRODUCT, WORK_OF_ART.
DEFAULT_DROPPED_TYPES = ("CARDINAL", "DATE", "QUANTITY", "ORDINAL", "TIME", "FAC", "LAW", "PERCENT", "MONEY", "NORP")

# spaCy (OntoNotes) type -> CoNLL-2003 type; the numeric and date types have none.
ONTONOTES_TO_CONLL = {
    "PERSON": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC", "NORP": "MISC", "EVENT": "MISC",
    "PRODUCT": "MISC", "WORK_OF_ART": "MISC", "LANGUAGE": "MISC", "LAW": "MISC",
}
CONLL_TYPES = ("LOC", "MISC", "ORG", "PER")
CONLL_TAGS = ("O",) + tuple(f"{p}-{t}" for t in CONLL_TYPES for p in "BI")
NER_TYPES = ("spacy", "conll")  # the entity types a dataset is tagged with: spaCy's OntoNotes ones, or CoNLL's


def kept_types(dropped_types) -> list[str]:
    """The entity types that survive the filter, sorted; ValueError on types spaCy does not predict."""
    if isinstance(dropped_types, str):
        dropped_types = (dropped_types,)
    unknown = sorted(set(dropped_types) - set(SPACY_ENTITY_TYPES))
    if unknown:
        raise InputError(f"unknown entity type(s) {unknown} in dropped_types; valid types: {sorted(SPACY_ENTITY_TYPES)}")
    return sorted(set(SPACY_ENTITY_TYPES) - set(dropped_types))


def check_ner_types(ner_types) -> None:
    if ner_types not in NER_TYPES:
        raise InputError(f"ner_types must be one of {NER_TYPES}, got {ner_types!r}: 'spacy' tags spaCy's OntoNotes "
                         "types, 'conll' maps them onto CoNLL-2003's PER, ORG, LOC, MISC (ONTONOTES_TO_CONLL)")


def default_dropped_types(ner_types="spacy") -> tuple:
    """The spaCy types turned into O when dropped_types=None: DEFAULT_DROPPED_TYPES for 'spacy'; none for 'conll'
    (the types without a CoNLL type become O through ONTONOTES_TO_CONLL, and NORP, FAC, LAW do map)."""
    check_ner_types(ner_types)
    return DEFAULT_DROPPED_TYPES if ner_types == "spacy" else ()


def build_tag_list(dropped_types=None, ner_types="spacy") -> list[str]:
    """The tag list, fixed whatever the data holds: `O`, then `B-T`, `I-T` for each type T in sorted order.

    ner_types="spacy": the spaCy types kept after dropped_types (None = DEFAULT_DROPPED_TYPES).
    ner_types="conll": always CoNLL-2003's four types (CONLL_TAGS), so silver rows (mapped with ONTONOTES_TO_CONLL)
    and gold CoNLL rows share one list; dropped_types (spaCy names, None = none) is still validated.
    """
    if dropped_types is None:
        dropped_types = default_dropped_types(ner_types)
    kept = kept_types(dropped_types)
    check_ner_types(ner_types)
    if ner_types == "conll":
        return list(CONLL_TAGS)
    tags = ["O"]
    for t in kept:
        tags += [f"B-{t}", f"I-{t}"]
    return tags


def is_valid_bio(tags) -> bool:
    """True when every tag is O, B-T or I-T and each I-T follows a B-T or I-T of the same type T."""
    prev_type = None
    for tag in tags:
        if tag == "O":
            prev_type = None
            continue
        if len(tag) < 3 or tag[1] != "-" or tag[0] not in "BI":
            return False
        if tag[0] == "I" and prev_type != tag[2:]:
            return False
        prev_type = tag[2:]
    return True


def iob1_to_iob2(tags) -> list[str]:
    """IOB1 (B- only between touching entities of one type) -> IOB2 (every entity starts with B-).

    An I-T that does not continue a T entity becomes B-T. Idempotent: IOB2 input comes back unchanged.
    """
    out, prev_type = [], None
    for tag in tags:
        if tag == "O":
            out.append(tag)
            prev_type = None
            continue
        kind, typ = tag[0], tag[2:]
        out.append(f"B-{typ}" if kind == "I" and prev_type != typ else tag)
        prev_type = typ
    return out


def map_tags(tags, mapping) -> list[str]:
    """Rename the types of BIO tags with `mapping` (e.g. ONTONOTES_TO_CONLL); unmapped types become O.

    The result is well-formed BIO (an I- left without its B- becomes B-).
    """
    out = []
    for tag in tags:
        new = mapping.get(tag[2:]) if tag != "O" else None
        out.append(f"{tag[:2]}{new}" if new else "O")
    return iob1_to_iob2(out)


def bio_spans(tags) -> list[tuple[str, int, int]]:
    """[(type, first_word, end_word_exclusive)] of the entities in BIO tags, by the conlleval rules seqeval follows
    (its get_entities, whose end is inclusive): an entity ends at O, at B- and where the type changes; a stray I- (after
    O, or of another type) starts one. Used to decode predictions and to score them, so both read tags alike."""
    spans, start, prev_tag, prev_type = [], 0, "O", ""
    for i, chunk in enumerate([*tags, "O"]):
        tag, kind = chunk[0], chunk[1:].split("-", 1)[-1] or "_"
        if prev_tag != "O" and (tag in "BO" or prev_type != kind):
            spans.append((prev_type, start, i))
        if tag == "B" or (tag != "O" and (prev_tag == "O" or prev_type != kind)):
            start = i
        prev_tag, prev_type = tag, kind
    return spans
