"""Serving speed against spaCy: spaCy's NER alone, and for each saved model its PyTorch predict() (`auto`, the
precision this CPU runs by default, fp32, the reference, and bf16 where the CPU has bf16 instructions) and its fast
folder (export_fast with the run's
held-out texts: the int8 or fp32 graph it kept), served by fast_model.py as a server without torch would.

Same AG News test texts for every contender, the same number of threads (--threads), --repeats rounds with the order
rotated each round so machine noise hits every contender; best and median per contender, as ratios to spaCy's
NER-only best. Also, per path, its agreement with the model's fp32 predictions on those texts (topic labels equal,
entity F1 on exact span and type), the export's choice and what its candidates measured on held-out texts (those
agreements and the sentence embeddings' cosine), and the peak memory of fast_model.py serving all the texts in a
process without torch.
The CPU kind (run_info.CPU_KINDS) and its bf16 / AMX / VNNI flags head the output; the last line is `ratio <the first
model's fast folder best / spaCy best>`.

    python bench/predict.py --model-dir outputs/default/model outputs/student/model [--rows 2000] [--threads 2]
        [--repeats 3] [--skip-memory]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_root import in_data_root  # noqa: E402  (after the path: the project's modules)


def agreement(reference, predicted):
    """(share of equal topic labels, entity F1 of exact span + type) of predicted against reference."""
    same = sum(r["topic"]["label"] == p["topic"]["label"] for r, p in zip(reference, predicted)) / len(reference)
    ref = {(i, e["start"], e["end"], e["type"]) for i, r in enumerate(reference) for e in r["ner"]}
    got = {(i, e["start"], e["end"], e["type"]) for i, p in enumerate(predicted) for e in p["ner"]}
    return same, 2 * len(ref & got) / (len(ref) + len(got)) if ref or got else 1.0


def model_name(path):
    """A short name for a model folder: its run folder (outputs/student/model -> student)."""
    path = os.path.normpath(path)
    return os.path.basename(os.path.dirname(path)) if os.path.basename(path) == "model" else os.path.basename(path)


def held_out(model_dir):
    """The run's validation texts beside the model folder (what --export-fast measures on), or []."""
    path = os.path.join(os.path.dirname(os.path.normpath(model_dir)), "validation_texts.txt")
    return [t.strip() for t in open(path, encoding="utf-8") if t.strip()] if os.path.isfile(path) else []


MEMORY_RUN = """
import json, sys
sys.modules["torch"] = None  # a server without torch
sys.path.insert(0, {fast!r})
import fast_model
texts = json.load(open({texts!r}))
model = fast_model.load({folder!r}, threads={threads})
model.predict(texts, batch_size=32)
# this process's own peak (VmHWM): getrusage's maxrss is carried over from the parent across exec
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"peak_mib": peak / 1024}}))
"""


def peak_memory(folder, texts, threads):
    """Peak RSS (MiB) of fast_model.py serving texts from the fast folder, in a `python -I` process without torch."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "texts.json")
        with open(path, "w") as f:
            json.dump(texts, f)
        code = textwrap.dedent(MEMORY_RUN.format(fast=os.path.join(folder, "fast"), texts=path, folder=folder,
                                                 threads=threads))
        done = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"error: fast_model.py without torch failed: {done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]


def contenders(args, texts, tmp):
    """{(model, path): predict function} and, per model, its folders and the fp32 torch model."""
    import fast_model
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    runs, models = {}, {}
    for k, directory in enumerate(args.model_dir):
        name = model_name(directory)
        model = MultiTaskSentenceTransformer.from_pretrained(directory)
        start = time.perf_counter()
        folder = model.export_fast(os.path.join(tmp, f"fast{k}"), held_out(directory))
        served = fast_model.load(folder, threads=args.threads)
        models[name] = {"model": model, "folder": folder, "served": served, "export_seconds": time.perf_counter() - start,
                        "layers": model.encoder.encoder.config.num_hidden_layers, "task_layers": model.task_layers}
        runs[(name, "torch auto")] = (lambda m: lambda xs: m.predict(xs, batch_size=args.batch_size))(model)
        runs[(name, "torch fp32")] = (lambda m: lambda xs: m.predict(xs, batch_size=args.batch_size,
                                                                      precision="fp32"))(model)
        runs[(name, "fast folder")] = (lambda m: lambda xs: m.predict(xs, batch_size=args.batch_size))(served)
        if args.bf16:  # bf16 on this CPU even where auto does not choose it: how much it helps or costs here
            runs[(name, "torch bf16")] = (lambda m: lambda xs: m.predict(xs, batch_size=args.batch_size,
                                                                          precision="bf16"))(model)
    return runs, models


def timed(runs, texts, repeats):
    """{key: [seconds per round]} and the last outputs, rounds rotated."""
    keys, seconds, outputs = list(runs), {k: [] for k in runs}, {}
    for run in runs.values():  # warm-up
        run(texts[:64])
    for r in range(repeats):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            start = time.perf_counter()
            outputs[key] = runs[key](texts)
            seconds[key].append(time.perf_counter() - start)
            print(f"  round {r}: {key[0]} {key[1]:12s} {len(texts) / seconds[key][-1]:7.1f} texts/s", flush=True)
    return seconds, outputs


def report(args, texts, models, seconds, outputs, spacy_key):
    spacy_best = len(texts) / min(seconds[spacy_key])
    print("\n| model | layers (+ task layers) | path | best texts/s | median | best / spaCy NER-only | topic labels "
          "= fp32 | entity F1 vs fp32 |\n|---|---|---|---|---|---|---|---|")
    ratios = {}
    for name, entry in models.items():
        reference = outputs[(name, "torch fp32")]
        for path in ("torch auto", "torch fp32", "torch bf16", "fast folder"):
            if (name, path) not in seconds:
                continue
            s = seconds[(name, path)]
            best, median = len(texts) / min(s), len(texts) / statistics.median(s)
            same, f1 = agreement(reference, outputs[(name, path)])
            ratios[(name, path)] = best / spacy_best
            print(f"| {name} | {entry['layers']} (+{entry['task_layers']}) | {path} | {best:.1f} | {median:.1f} | "
                  f"{best / spacy_best:.2f} | {100 * same:.2f} % | {f1:.4f} |")
    s = seconds[spacy_key]
    print(f"| spaCy en_core_web_sm, NER only | | nlp.pipe | {spacy_best:.1f} | {len(texts) / statistics.median(s):.1f} "
          "| 1 | | |")
    return ratios


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", nargs="+", default=[os.path.join(ROOT, "outputs", "default", "model")],
                        help="saved models (the first is the last line's); each run folder's validation_texts.txt "
                             "is what its export measures on")
    parser.add_argument("--data", default=in_data_root("ag_news"))
    parser.add_argument("--rows", type=int, default=2000, help="first N AG News test texts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true", help="leave out the memory run without torch")
    args = parser.parse_args()
    with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    args.bf16 = "avx512_bf16" in cpuinfo or "amx_bf16" in cpuinfo
    missing = [d for d in args.model_dir if not os.path.isdir(d)]
    if missing:
        sys.exit(f"error: no trained model at {', '.join(missing)}; make one with `python main.py` (outputs/default/"
                 "model) and its student with `python main.py --distil-from outputs/default/model --output-dir "
                 "outputs/student`.")

    import torch
    from datasets import load_dataset

    from create_ner_dataset import load_spacy
    from run_info import cpu_flags_line

    torch.set_num_threads(args.threads)
    texts = list(load_dataset(args.data, split="test")["text"][: args.rows])
    print(cpu_flags_line())
    with tempfile.TemporaryDirectory() as tmp:
        runs, models = contenders(args, texts, tmp)
        for name, entry in models.items():
            fast = entry["served"].runner.config
            print(f"{name}: export kept {fast['quantize']} ({entry['export_seconds']:.0f} s); candidates on "
                  f"{fast['measured_on']} held-out texts: " + "; ".join(
                      f"{c} {'kept' if m['keeps'] else 'not kept'} {m.get('texts_per_second', '-')} texts/s, " + ", ".join(
                          f"{t} {v['measure']} {v['value']:.4f}" for t, v in m["tasks"].items()) +
                      f", cosine {m['embedding_cosine']['mean']:.4f}" for c, m in (fast["candidates"] or {}).items()))
        nlp = load_spacy("en_core_web_sm")
        spacy_key = ("spaCy", "NER nlp.pipe")
        runs[spacy_key] = lambda xs: list(nlp.pipe(xs, batch_size=256))
        print(f"{len(texts)} AG News test texts, {args.threads} threads, batch {args.batch_size}; spaCy "
              f"{nlp.meta['name']} {nlp.meta['version']} pipes={nlp.pipe_names}")
        seconds, outputs = timed(runs, texts, args.repeats)
        ratios = report(args, texts, models, seconds, outputs, spacy_key)
        for name, entry in models.items():
            if not args.skip_memory:
                print(f"{name}: fast_model.py without torch, peak memory serving {len(texts)} texts: "
                      f"{peak_memory(entry['folder'], texts, args.threads):.0f} MiB")
        first = next(iter(models))
        print(f"ratio {ratios[(first, 'fast folder')]:.3f}")


if __name__ == "__main__":
    main()
