"""Labelling speed: create_ner_dataset.label_texts vs a bare NER-only nlp.pipe on the same cleaned AG News texts.

Prints docs/s of both (best of --repeats, runs interleaved so machine noise hits both), the speed-up of n_process=2
over 1 for the module, the cold and warm (cached) create_dataset times, and last `ratio <module / bare>`.

    python bench/label.py [--data ag_news] [--rows 2000] [--batch-size 256] [--repeats 2]
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
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=in_data_root("ag_news"),
                    help="AG News in the Hub layout (default: the data root's ag_news)")
    ap.add_argument("--rows", type=int, default=2000, help="first N train texts, cleaned")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import datasets

    train = datasets.load_dataset(args.data)["train"]
    texts = [text_prep.clean_text(t) for t in train.select(range(min(args.rows, len(train))))["text"]]
    nlp = cnd.load_spacy()
    print(f"{len(texts)} texts, spaCy {nlp.meta['name']} {nlp.meta['version']} pipes={nlp.pipe_names}, "
          f"batch_size={args.batch_size}")
    list(nlp.pipe(texts[:100], batch_size=args.batch_size))  # warm-up

    runs = {
        "module": lambda: cnd.label_texts(texts, nlp, batch_size=args.batch_size),
        "bare": lambda: list(nlp.pipe(texts, batch_size=args.batch_size)),
        "module n_process=2": lambda: cnd.label_texts(texts, nlp, batch_size=args.batch_size, n_process=2),
    }
    times = {name: [] for name in runs}
    names = list(runs)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order each repetition
            times[name].append(timed(runs[name]))
            print(f"  rep {r}: {name:20s} {times[name][-1]:6.2f} s")
    best = {name: min(ts) for name, ts in times.items()}
    for name in names:
        print(f"{name:20s} {len(texts) / best[name]:7.1f} docs/s")
    print(f"n_process=2 speed-up over 1 (module): {best['module'] / best['module n_process=2']:.2f}x")

    with tempfile.TemporaryDirectory() as cache:
        kw = dict(max_train_rows=200, max_test_rows=50, cache_dir=cache, show_progress=False)
        cold = timed(lambda: cnd.create_dataset(args.data, **kw))
        warm = timed(lambda: cnd.create_dataset(args.data, **kw))
    print(f"create_dataset 200+50 rows: cold {cold:.2f} s, warm (cached) {warm:.3f} s")
    print(f"ratio {best['bare'] / best['module']:.3f}")


if __name__ == "__main__":
    main()
