"""Serving speed: the multi-task model's predict() (topic + entities) in its fast mode vs spaCy's NER alone.

Same AG News test texts, same run, the same number of torch / ONNX Runtime threads (--threads), repetitions
interleaved (order rotated) so machine noise hits every contender; best of --repeats. Also prints the quality the fast
mode keeps against the fp32 torch model: topic accuracy (vs the true labels) of both, entity-level F1 of the fast
predictions against the fp32 predictions (exact span + type), and the cosine of fast vs fp32 sentence embeddings.
Last line `ratio <fast texts/s / spaCy texts/s>`.

    python bench/predict.py [--model-dir outputs/default/model] [--rows 2000] [--threads 2] [--repeats 3]
    # a model to measure: python main.py --dataset ../shared/data/ag_news --max-train-rows 2000 --epochs 2 \
    #     --output-dir outputs/bench2k   (then --model-dir outputs/bench2k/model)
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def entity_f1(reference, predicted):
    """Micro F1 of exact (start, end, type) entity matches, predicted vs reference, over all texts."""
    tp = n_ref = n_pred = 0
    for ref, pred in zip(reference, predicted):
        r = {(e["start"], e["end"], e["type"]) for e in ref["entities"]}
        p = {(e["start"], e["end"], e["type"]) for e in pred["entities"]}
        tp, n_ref, n_pred = tp + len(r & p), n_ref + len(r), n_pred + len(p)
    return 2 * tp / (n_ref + n_pred) if n_ref + n_pred else 1.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=os.path.join(ROOT, "outputs", "default", "model"))
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "ag_news"))
    parser.add_argument("--rows", type=int, default=2000, help="first N AG News test texts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quantize", default=None, help="quantize mode of export_fast (default: serving.QUANTIZE)")
    args = parser.parse_args()
    if not os.path.isdir(args.model_dir):
        sys.exit(f"error: no trained model at {args.model_dir}; make one with `python main.py --dataset "
                 "../shared/data/ag_news --max-train-rows 2000 --epochs 2 --output-dir outputs/bench2k` and pass "
                 "--model-dir outputs/bench2k/model (or run the default `python main.py` for outputs/default/model).")

    import numpy as np
    import torch
    from datasets import load_dataset

    from create_ner_dataset import load_spacy
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    torch.set_num_threads(args.threads)
    test = load_dataset(args.data, split="test")
    texts, labels = list(test["text"][: args.rows]), list(test["label"][: args.rows])
    model = MultiTaskSentenceTransformer.from_pretrained(args.model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model.export_fast(os.path.join(tmp, "fast"), quantize=args.quantize)
        export_s = time.perf_counter() - start
        fast = MultiTaskSentenceTransformer.from_pretrained(os.path.join(tmp, "fast"))
    nlp = load_spacy("en_core_web_sm")
    print(f"{len(texts)} AG News test texts, {torch.get_num_threads()} threads, batch {args.batch_size}; "
          f"fast = ONNX Runtime, int8 {fast.fast.config['quantize']} ({fast.fast.config['int8_matmuls']} MatMuls), "
          f"exported in {export_s:.0f}s; spaCy {nlp.meta['name']} {nlp.meta['version']} pipes={nlp.pipe_names}")

    runs = {
        "predict fast": lambda xs: fast.predict(xs, batch_size=args.batch_size),
        "spaCy NER nlp.pipe": lambda xs: list(nlp.pipe(xs, batch_size=256)),
        "predict fp32 (torch)": lambda xs: model.predict(xs, batch_size=args.batch_size, precision="fp32"),
    }
    for run in runs.values():  # warm-up
        run(texts[:64])
    names, best, outputs = list(runs), {}, {}
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order each repetition
            start = time.perf_counter()
            outputs[name] = runs[name](texts)
            seconds = time.perf_counter() - start
            best[name] = min(best.get(name, float("inf")), seconds)
            print(f"  rep {r}: {name:22s} {len(texts) / seconds:7.1f} texts/s")
    for name in names:
        print(f"{name:22s} {len(texts) / best[name]:7.1f} texts/s (best of {args.repeats})")

    ref, got = outputs["predict fp32 (torch)"], outputs["predict fast"]
    label_id = {n: i for i, n in enumerate(model.label_names)}
    acc_ref = np.mean([label_id[p["label"]] == y for p, y in zip(ref, labels)])
    acc_fast = np.mean([label_id[p["label"]] == y for p, y in zip(got, labels)])
    same_entities = np.mean([a["entities"] == b["entities"] for a, b in zip(ref, got)])
    print(f"accuracy fp32 {100 * acc_ref:.2f}%  fast {100 * acc_fast:.2f}%  (difference "
          f"{100 * (acc_fast - acc_ref):+.2f} points); same label on {np.mean([a['label'] == b['label'] for a, b in zip(ref, got)]):.4f} of texts")
    print(f"entity F1 fast vs fp32 {entity_f1(ref, got):.4f}; identical entity lists on {same_entities:.4f} of texts")
    e_ref = model.encode(texts, batch_size=args.batch_size, normalize=True, precision="fp32")
    e_fast = fast.encode(texts, batch_size=args.batch_size, normalize=True)
    cosine = (e_ref * e_fast).sum(1)
    print(f"sentence embedding cosine fast vs fp32: min {cosine.min():.5f} mean {cosine.mean():.5f}")
    print(f"fast vs fp32 torch speed-up {best['predict fp32 (torch)'] / best['predict fast']:.2f}x")
    print(f"ratio {best['spaCy NER nlp.pipe'] / best['predict fast']:.3f}")


if __name__ == "__main__":
    main()
