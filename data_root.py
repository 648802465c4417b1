"""The data root: one folder holding the public data the project reads by default, in the layout it reads.

    <root>/ag_news/train.parquet, test.parquet      AG News in the Hub's layout (--dataset ag_news)
    <root>/conll2003/train.txt, valid.txt           CoNLL-2003 gold NER (--ner-data / --eval-conll conll2003/valid.txt)
    <root>/stsbenchmark/sts-dev.csv                 STS Benchmark dev (the "still a good sentence embedder?" check)

    root = find_data_root()              # --data-root / $MTST_DATA_ROOT, else the first local copy found, else None
    path = resolve("ag_news", root)      # "<root>/ag_news" when the root has it, else the name as given (a Hub id)
    fetch(root)                          # fill a root from the Hugging Face Hub (python main.py --fetch-data)

Where the root is (`find_data_root`): the folder named by --data-root (DATA_ROOT in main.py), else $MTST_DATA_ROOT,
else the first of these that exists: `data/` in the repository (what `python main.py --fetch-data` writes), the data
folder that lies beside the repository where this project is developed. None of them is required: without a root,
`--dataset ag_news` is the Hub's dataset, the STS-B check asks the Hub or is skipped (recorded as not measured), and a
user's own files are read from wherever they are. Importing this module loads nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

from atomic_io import atomic_write_dir
from errors import InputError
from texts_and_tables import hf_datasets

ENV = "MTST_DATA_ROOT"
REPO = Path(__file__).resolve().parent
# Local copies looked for, in order: what --fetch-data writes, then the development copy beside the repository.
CANDIDATES = (REPO / "data", REPO.parent / "shared" / "data")
FETCH_COMMAND = "python main.py --fetch-data"
# What --fetch-data writes: the folder under the root and the Hub dataset it comes from (AG News: 120,000 train /
# 7,600 test rows; CoNLL-2003: train and valid (testa); STS Benchmark: the 1,500 dev pairs).
HUB_SOURCES = {"ag_news": "fancyzhx/ag_news", "conll2003": "eriktks/conll2003", "stsbenchmark": "sentence-transformers/stsb"}
STS_FILE = os.path.join("stsbenchmark", "sts-dev.csv")


def find_data_root(explicit: str | os.PathLike | None = None) -> str | None:
    """The data root as a path, or None when there is none. explicit (a --data-root value; "auto" or "" = not
    given) must be an existing folder; then $MTST_DATA_ROOT (also an existing folder); then the first CANDIDATES
    folder that exists."""
    if explicit not in (None, "", "auto"):
        if not os.path.isdir(explicit):
            raise InputError(f"--data-root {os.fspath(explicit)!r} is not a folder; pass the folder holding ag_news/, "
                             f"conll2003/ and stsbenchmark/ (fill one with {FETCH_COMMAND}), or leave it at auto")
        return os.fspath(explicit)
    env = os.environ.get(ENV, "").strip()
    if env:
        if not os.path.isdir(env):
            raise InputError(f"${ENV}={env!r} is not a folder; point it at the folder holding ag_news/, conll2003/ "
                             f"and stsbenchmark/ (fill one with {FETCH_COMMAND}), or unset it")
        return env
    for candidate in CANDIDATES:
        if candidate.is_dir():
            return str(candidate)
    return None


def fetch_target(explicit: str | None = None) -> str:
    """Where --fetch-data writes: --data-root when given, else $MTST_DATA_ROOT, else data/ in the repository."""
    if explicit not in (None, "", "auto"):
        return os.fspath(explicit)
    return os.environ.get(ENV, "").strip() or str(CANDIDATES[0])


def resolve(path: str, root: str | None) -> str:
    """path as given when it exists (or is absolute, or there is no root); else root/path when that exists; else
    path as given (a Hub id, or a missing file that the caller reports)."""
    if not path or root is None or os.path.exists(path) or os.path.isabs(path):
        return path
    under = os.path.join(root, path)
    return under if os.path.exists(under) else path


def in_data_root(name: str) -> str:
    """name resolved under the data root found now (the bench scripts' defaults): "<root>/<name>", or name."""
    return resolve(name, find_data_root())


def sts_file(root: str | None) -> str | None:
    """The STS Benchmark dev file under the root, or None."""
    if root is None:
        return None
    path = os.path.join(root, STS_FILE)
    return path if os.path.isfile(path) else None


def describe(root: str | None) -> str:
    """One line for the user: where the root is and which of the known datasets it holds."""
    if root is None:
        return f"no data root (looked for --data-root, ${ENV}, {', '.join(str(c) for c in CANDIDATES)})"
    held = [name for name in HUB_SOURCES if os.path.isdir(os.path.join(root, name))]
    return f"data root {root}: {', '.join(held) or 'none of ' + ', '.join(HUB_SOURCES)}"


# ------------------------------------------------------------------------------------------------ fetching
def fetch(root: str, names=tuple(HUB_SOURCES), load_dataset=None) -> dict:
    """Fill root from the Hugging Face Hub in the layout above; {name: "written" | "kept (already there)" |
    "failed: <why>"}. A dataset already in the root is kept; each one is written under a temporary name and renamed
    when complete, so an interrupted fetch leaves no half-written folder. load_dataset: datasets.load_dataset
    (replaceable in tests)."""
    if load_dataset is None:
        load_dataset = hf_datasets().load_dataset
    unknown = [n for n in names if n not in HUB_SOURCES]
    if unknown:
        raise InputError(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(HUB_SOURCES)}")
    os.makedirs(root, exist_ok=True)
    writers = {"ag_news": _write_ag_news, "conll2003": _write_conll, "stsbenchmark": _write_sts}
    report = {}
    for name in names:
        target = os.path.join(root, name)
        if os.path.isdir(target):
            report[name] = "kept (already there)"
            continue
        hub_id = HUB_SOURCES[name]
        try:
            atomic_write_dir(target, lambda tmp, w=writers[name], h=hub_id: w(load_dataset, h, tmp))
            report[name] = "written"
        except Exception as e:  # the Hub's, the network's and datasets' errors share no base: report each one
            report[name] = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return report


def _write_ag_news(load_dataset, hub_id, folder):
    dd = load_dataset(hub_id)
    for split in ("train", "test"):
        dd[split].to_parquet(os.path.join(folder, f"{split}.parquet"))


def _names(feature):
    """The class names of a Sequence(ClassLabel) feature, or None for plain strings / ints."""
    inner = getattr(feature, "feature", None)
    if inner is None and isinstance(feature, list) and feature:  # datasets' List([...]) of one feature
        inner = feature[0]
    return getattr(inner, "names", None)


def _write_conll(load_dataset, hub_id, folder):
    """CoNLL-2003 train and valid as `word POS chunk NER` lines (the format conll.read_conll reads). The canonical
    Hub dataset is a loading script, which current `datasets` no longer runs: its parquet conversion is read."""
    dd = load_dataset(hub_id, revision="refs/convert/parquet")
    for split, filename in (("train", "train.txt"), ("validation", "valid.txt")):
        ds = dd[split]
        columns = {c: _names(ds.features[c]) for c in ("pos_tags", "chunk_tags", "ner_tags") if c in ds.features}
        with open(os.path.join(folder, filename), "w", encoding="utf-8") as f:
            f.write("-DOCSTART- -X- -X- O\n\n")
            for row in ds:
                for i, word in enumerate(row["tokens"]):
                    cols = []
                    for c in ("pos_tags", "chunk_tags", "ner_tags"):
                        value = row[c][i] if c in columns else "_"
                        cols.append(columns[c][value] if c in columns and columns[c] else str(value))
                    f.write(f"{word} {' '.join(cols)}\n")
                f.write("\n")


def sts_hub_pairs(load_dataset, hub_id=HUB_SOURCES["stsbenchmark"]):
    """(sentence1, sentence2, score 0-5) of the Hub's STS Benchmark dev split (its scores are 0-1)."""
    ds = load_dataset(hub_id, split="validation")
    return [(r["sentence1"], r["sentence2"], 5.0 * float(r["score"])) for r in ds]


def _write_sts(load_dataset, hub_id, folder):
    """STS Benchmark dev in the original tab-separated layout (genre, file, years, id, score 0-5, sentence 1,
    sentence 2); the Hub copy's scores are 0-1."""
    with open(os.path.join(folder, "sts-dev.csv"), "w", encoding="utf-8") as f:
        for i, (s1, s2, score) in enumerate(sts_hub_pairs(load_dataset, hub_id)):
            f.write(f"hub\t{hub_id}\tdev\t{i:04d}\t{score:.3f}\t{_one_line(s1)}\t{_one_line(s2)}\n")


def _one_line(text):
    return " ".join(str(text).split())
