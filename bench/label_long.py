"""Labelling long texts: spaCy NER over the whole BBC CSV (928 rows, ~390 words each) vs short AG News texts.

Prints words/s, rows/s and chars/s of create_ner_dataset.label_texts on both (best of --repeats, runs interleaved so
machine noise hits both), the longest BBC text against nlp.max_length, the cold create_dataset time of the whole
BBC CSV (carve + label all 928 rows + save), and last `ratio <BBC words/s / AG News words/s>` (1.0: long texts
label as fast per word as short ones).

    python bench/label_long.py [--bbc bbc_sport_politics/bbc-text.csv] [--ag-rows 2000] [--repeats 2]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import create_ner_dataset as cnd  # noqa: E402
import text_prep  # noqa: E402
from data_root import in_data_root  # noqa: E402  (after the path: the project's modules)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bbc", default=in_data_root("bbc_sport_politics/bbc-text.csv"))
    ap.add_argument("--ag", default=in_data_root("ag_news"))
    ap.add_argument("--ag-rows", type=int, default=2000, help="first N AG News train texts, cleaned")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import datasets
    import pandas as pd

    bbc = list(pd.read_csv(args.bbc)["text"])
    train = datasets.load_dataset(args.ag)["train"]
    ag = [text_prep.clean_text(t) for t in train.select(range(min(args.ag_rows, len(train))))["text"]]
    nlp = cnd.load_spacy()
    longest = max(len(t) for t in bbc)
    print(f"BBC: {len(bbc)} rows, {sum(map(len, bbc)):,} chars, longest {longest:,} chars "
          f"({len(max(bbc, key=len).split()):,} words); nlp.max_length {nlp.max_length:,} "
          f"({'not exceeded' if longest < nlp.max_length else 'EXCEEDED: labelled in pieces'})")
    print(f"AG News: {len(ag)} rows, {sum(map(len, ag)):,} chars; spaCy {nlp.meta['name']} {nlp.meta['version']} "
          f"pipes={nlp.pipe_names}, batch_size={args.batch_size}")
    list(nlp.pipe(ag[:100], batch_size=args.batch_size))  # warm-up

    sets = {"BBC": bbc, "AG News": ag}
    best, words = {}, {}
    for r in range(args.repeats):
        for name in (list(sets) if r % 2 == 0 else list(reversed(sets))):  # alternate the order
            seconds, out = timed(lambda name=name: cnd.label_texts(sets[name], nlp, batch_size=args.batch_size))
            words[name] = sum(len(w) for w, _, _ in out)
            best[name] = min(best.get(name, seconds), seconds)
            print(f"  rep {r}: {name:8s} {seconds:7.2f} s")
    for name, texts in sets.items():
        print(f"{name:8s} {words[name] / best[name]:8.0f} words/s  {len(texts) / best[name]:7.1f} rows/s  "
              f"{sum(map(len, texts)) / best[name]:9.0f} chars/s  ({words[name]:,} words in {best[name]:.1f} s)")

    with tempfile.TemporaryDirectory() as cache:
        seconds, (dd, _) = timed(lambda: cnd.create_dataset(args.bbc, label_column="category", cache_dir=cache,
                                                            show_progress=False))
        warm, _ = timed(lambda: cnd.create_dataset(args.bbc, label_column="category", cache_dir=cache,
                                                   show_progress=False))
    print(f"create_dataset(bbc-text.csv, label_column='category'): {len(dd['train'])} train + {len(dd['test'])} test "
          f"rows, cold {seconds:.1f} s, warm (cached) {warm:.2f} s")
    print(f"ratio {(words['BBC'] / best['BBC']) / (words['AG News'] / best['AG News']):.3f}")


if __name__ == "__main__":
    main()
