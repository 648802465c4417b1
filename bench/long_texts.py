"""Cost of tagging long texts whole: predict() on BBC articles (~390 words, longer than one window) with the windowed
NER (every word tagged) vs the first window only (the previous behaviour: words past max_length were 'O').

Same texts, same model, same run; the two modes interleaved (order rotated), best of --repeats. The first-window mode
is the same code with the later windows switched off. Also counts how many of spaCy's silver entities in the cached
BBC rows start past the first window (what the first-window mode could never find). Last line
`ratio <windowed texts/s / first-window texts/s>`.

    python bench/long_texts.py [--rows 100] [--max-length 256] [--threads 2] [--repeats 3]
"""
import argparse
import csv
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_root import in_data_root  # noqa: E402  (after the path: the project's modules)

BBC = in_data_root("bbc_sport_politics/bbc-text.csv")


def silver_entities_past_the_first_window(model, max_train_rows, max_test_rows):
    """(entities starting past the first window, all entities, rows) in the cached silver BBC rows."""
    from create_ner_dataset import create_dataset
    from ner_tags import bio_spans as bio_to_spans
    from prediction import tokenize_words

    ds, _ = create_dataset(BBC, label_column="category", max_train_rows=max_train_rows, max_test_rows=max_test_rows,
                           show_progress=False)
    late = total = rows = 0
    for split in ds.values():
        words, tags = list(split["words"]), list(split["ner_tags"])
        enc = tokenize_words(model.tokenizer, words, model.encoder.max_length)
        for row_tags, word_index in zip(tags, enc["word_index"]):
            covered = word_index[-1] + 1 if word_index else 0
            spans = bio_to_spans(row_tags)
            late += sum(first >= covered for _, first, _ in spans)
            total += len(spans)
            rows += 1
    return late, total, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100, help="first N BBC articles")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--silver-rows", type=int, nargs=2, default=(80, 24), metavar=("TRAIN", "TEST"),
                        help="create_dataset row limits of the silver rows counted (a cached set is read, not labelled)")
    a = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    torch.set_num_threads(a.threads)
    with open(BBC, newline="") as f:
        texts = [row["text"] for _, row in zip(range(a.rows), csv.DictReader(f))]
    torch.manual_seed(0)
    model = MultiTaskSentenceTransformer(label_names=["Politics", "Sports"], max_length=a.max_length, clean=False)
    words = [p[2] for p in model._prepare(texts)]
    pieces = [len(model.tokenizer(w, is_split_into_words=True, verbose=False)["input_ids"]) for w in words]
    longer = sum(n > a.max_length for n in pieces)
    print(f"{len(texts)} BBC articles, {sum(map(len, words)) / len(words):.0f} words and "
          f"{sum(pieces) / len(pieces):.0f} wordpieces on average; {longer} longer than max_length {a.max_length}")

    def first_window_only(*args):
        return []

    def run(mode):
        if mode == "first window":
            model._later_windows = first_window_only  # the instance attribute hides the method
        else:
            model.__dict__.pop("_later_windows", None)
        start = time.perf_counter()
        out = model.predict(texts, batch_size=a.batch_size, precision="fp32")
        return time.perf_counter() - start, out

    modes = ["windowed", "first window"]
    best, outputs = {m: float("inf") for m in modes}, {}
    run("windowed")  # warm-up
    for r in range(a.repeats):
        for mode in modes[r % 2:] + modes[:r % 2]:
            seconds, outputs[mode] = run(mode)
            best[mode] = min(best[mode], seconds)
    for mode in modes:
        print(f"{mode:>12}: {len(texts) / best[mode]:6.1f} texts/s ({best[mode]:.1f} s for {len(texts)} texts, "
              f"best of {a.repeats})")
    same = all(x["topic"]["label"] == y["topic"]["label"] and abs(x["topic"]["score"] - y["topic"]["score"]) < 1e-6
               for x, y in zip(outputs["windowed"], outputs["first window"]))
    print(f"topic label and score identical in both modes: {same}")
    late, total, rows = silver_entities_past_the_first_window(model, *a.silver_rows)
    print(f"spaCy silver entities in {rows} cached BBC rows: {total}, of which {late} ({late / max(total, 1):.1%}) "
          f"start past the first {a.max_length}-piece window")
    print(f"ratio {best['first window'] / best['windowed']:.3f}")


if __name__ == "__main__":
    main()
