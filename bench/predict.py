"""Serving speed: each saved model's predict() (topic + entities) in fp32, bf16 (where the CPU has it: as `auto`
runs it on this machine, and each of its two ways, weights cast once per call and autocast), the fast path (ONNX
Runtime, fused) and the fast path unfused, vs spaCy's NER alone.

Same AG News test texts, same run, the same number of torch / ONNX Runtime threads (--threads), repetitions
interleaved (order rotated) so machine noise hits every contender; best of --repeats. Several --model-dir (a teacher
and its students) are measured in the same run and printed as one table. Also prints, per model, the quality the fast
path keeps against its fp32 torch model: topic accuracy (vs the true labels) of both, entity-level F1 of the fast
predictions against the fp32 predictions (exact span + type), and the cosine of fast vs fp32 sentence embeddings.
Last line `ratio <first model's best texts/s of fp32 and fast / spaCy texts/s>`.

    python bench/predict.py [--model-dir outputs/default/model [outputs/student3/model ...]] [--rows 2000]
        [--threads 2] [--repeats 3] [--modes fp32,bf16,bf16-cast,bf16-autocast,fast,fast-unfused]
    # a model to measure: python main.py --max-train-rows 2000 --epochs 2 \
    #     --output-dir outputs/bench2k   (then --model-dir outputs/bench2k/model)
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_root import in_data_root  # noqa: E402  (after the path: the project's modules)

MODES = ("fp32", "bf16", "bf16-cast", "bf16-autocast", "fast", "fast-unfused")
BF16_WAYS = {"bf16-cast": "1", "bf16-autocast": "0"}  # MTST_CPU_AMX for each way bf16 can run (precision.py)


def bf16_way(model, batch_size, way):
    """predict in bf16 forced to run one way (weights cast once per call, or autocast), whatever this CPU has."""
    from precision import CPU_AMX_ENV

    def run(texts):
        before = os.environ.get(CPU_AMX_ENV)
        os.environ[CPU_AMX_ENV] = BF16_WAYS[way]
        try:
            return model.predict(texts, batch_size=batch_size, precision="bf16")
        finally:
            if before is None:
                del os.environ[CPU_AMX_ENV]
            else:
                os.environ[CPU_AMX_ENV] = before
    return run


def entity_f1(reference, predicted):
    """Micro F1 of exact (start, end, type) entity matches, predicted vs reference, over all texts."""
    tp = n_ref = n_pred = 0
    for ref, pred in zip(reference, predicted):
        r = {(e["start"], e["end"], e["type"]) for e in ref["ner"]}
        p = {(e["start"], e["end"], e["type"]) for e in pred["ner"]}
        tp, n_ref, n_pred = tp + len(r & p), n_ref + len(r), n_pred + len(p)
    return 2 * tp / (n_ref + n_pred) if n_ref + n_pred else 1.0


def model_name(path):
    """A short name for a model folder: its run folder (outputs/student3/model -> student3)."""
    path = os.path.normpath(path)
    return os.path.basename(os.path.dirname(path)) if os.path.basename(path) == "model" else os.path.basename(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", nargs="+", default=[os.path.join(ROOT, "outputs", "default", "model")],
                        help="saved models (the first is the reference of the last line)")
    parser.add_argument("--data", default=in_data_root("ag_news"))
    parser.add_argument("--rows", type=int, default=2000, help="first N AG News test texts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default=None, help=f"comma-separated, of {', '.join(MODES)} (default: all; bf16 "
                                                      "only where the CPU has bf16 instructions or on CUDA)")
    parser.add_argument("--quantize", default=None, help="quantize mode of export_fast (default: serving.QUANTIZE)")
    args = parser.parse_args()
    missing = [d for d in args.model_dir if not os.path.isdir(d)]
    if missing:
        sys.exit(f"error: no trained model at {', '.join(missing)}; make one with `python main.py "
                 "--max-train-rows 2000 --epochs 2 --output-dir outputs/bench2k` and pass "
                 "--model-dir outputs/bench2k/model (or run the default `python main.py` for outputs/default/model).")

    import numpy as np
    import torch
    from datasets import load_dataset

    from create_ner_dataset import load_spacy
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer
    from precision import casts_bf16_weights, cpu_has_fast_bf16

    bf16 = torch.cuda.is_available() or cpu_has_fast_bf16()
    modes = args.modes.split(",") if args.modes else [m for m in MODES if not m.startswith("bf16") or bf16]
    unknown = set(modes) - set(MODES)
    if unknown:
        sys.exit(f"error: --modes {', '.join(sorted(unknown))} unknown; choose from {', '.join(MODES)}")
    torch.set_num_threads(args.threads)
    test = load_dataset(args.data, split="test")
    texts, labels = list(test["text"][: args.rows]), list(test["label"][: args.rows])
    models, runs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, directory in enumerate(args.model_dir):
            name = model_name(directory)
            name = name if name not in models else f"{name}#{k}"
            model = MultiTaskSentenceTransformer.from_pretrained(directory)
            layers = model.encoder.encoder.config.num_hidden_layers
            entry = models[name] = {"model": model, "layers": layers}
            for mode, fuse in (("fast", True), ("fast-unfused", False)):
                if mode in modes:
                    start = time.perf_counter()
                    folder = model.export_fast(os.path.join(tmp, f"{k}-{mode}"), quantize=args.quantize, fuse=fuse)
                    entry[mode] = MultiTaskSentenceTransformer.from_pretrained(folder)
                    print(f"{name} ({layers} layers): {mode} exported in {time.perf_counter() - start:.0f}s, fused "
                          f"{entry[mode].fast.config['fusions']}")
            for mode in modes:
                if mode.startswith("fast"):
                    runs[(name, mode)] = (lambda m: lambda xs: m.predict(xs, batch_size=args.batch_size))(entry[mode])
                elif mode in BF16_WAYS:
                    runs[(name, mode)] = bf16_way(model, args.batch_size, mode)
                else:
                    runs[(name, mode)] = (lambda m, p: lambda xs: m.predict(xs, batch_size=args.batch_size,
                                                                            precision=p))(model, mode)
        nlp = load_spacy("en_core_web_sm")
        spacy_key = ("spaCy", "NER nlp.pipe")
        runs[spacy_key] = lambda xs: list(nlp.pipe(xs, batch_size=256))
        print(f"{len(texts)} AG News test texts, {torch.get_num_threads()} threads, batch {args.batch_size}, bf16 "
              f"instructions: {'yes' if bf16 else 'no'} (bf16 as run by auto: "
              f"{'weights cast once' if casts_bf16_weights('cpu') else 'autocast'}); spaCy {nlp.meta['name']} {nlp.meta['version']} "
              f"pipes={nlp.pipe_names}")
        for run in runs.values():  # warm-up
            run(texts[:64])
        keys, best, outputs = list(runs), {}, {}
        for r in range(args.repeats):
            for key in keys[r % len(keys):] + keys[: r % len(keys)]:  # rotate the order each repetition
                start = time.perf_counter()
                outputs[key] = runs[key](texts)
                seconds = time.perf_counter() - start
                best[key] = min(best.get(key, float("inf")), seconds)
                print(f"  rep {r}: {key[0]} {key[1]:14s} {len(texts) / seconds:7.1f} texts/s")

        speed = {key: len(texts) / seconds for key, seconds in best.items()}
        print(f"\n| model | layers | {' | '.join(m + ' texts/s' for m in modes)} | best / spaCy NER-only |")
        print("|---|---|" + "---|" * len(modes) + "---|")
        ratios = {}
        for name, entry in models.items():
            top = max(speed[(name, m)] for m in modes)
            ratios[name] = top / speed[spacy_key]
            print(f"| {name} | {entry['layers']} | " + " | ".join(f"{speed[(name, m)]:.1f}" for m in modes) +
                  f" | {ratios[name]:.3f} |")
        print(f"| spaCy en_core_web_sm (NER only) | | {speed[spacy_key]:.1f} (all modes) | 1 |")

        label_id = None
        for name, entry in models.items():
            model = entry["model"]
            label_id = {n: i for i, n in enumerate(model.label_names)}
            ref = outputs.get((name, "fp32")) or model.predict(texts, batch_size=args.batch_size, precision="fp32")
            acc_ref = np.mean([label_id[p["topic"]["label"]] == y for p, y in zip(ref, labels)])
            line = f"{name}: accuracy fp32 {100 * acc_ref:.2f}%"
            for mode in (m for m in modes if m != "fp32"):
                got = outputs[(name, mode)]
                acc = np.mean([label_id[p["topic"]["label"]] == y for p, y in zip(got, labels)])
                line += f"; {mode} {100 * acc:.2f}% (entity F1 vs fp32 {entity_f1(ref, got):.4f})"
            print(line)
            if "fast" in modes:
                e_ref = model.encode(texts, batch_size=args.batch_size, normalize=True, precision="fp32")
                e_fast = entry["fast"].encode(texts, batch_size=args.batch_size, normalize=True)
                cosine = (e_ref * e_fast).sum(1)
                print(f"  sentence embedding cosine fast vs fp32: min {cosine.min():.5f} mean {cosine.mean():.5f}")
        first = next(iter(models))
        print(f"ratio {ratios[first]:.3f}")


if __name__ == "__main__":
    main()
