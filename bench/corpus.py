"""Corpus speed: the Ray path (corpus.run_corpus: main.py --predict-dir / --label-dir) against one process
(main.py --predict-file; label_texts = nlp.pipe) on the same texts, same run.

Makes --rows texts (AG News train + test texts of the data root, cleaned, cycled to --rows; nothing is written into
the repository), splits them into --shards parquet shards (and one .jsonl of all of them for --predict-file), then,
--repeats times, order rotated so machine noise hits every contender:
  predict  in-process: `python main.py --predict-file ALL.jsonl` (a subprocess: its wall time with the model load,
           and its peak RSS); Ray: run_corpus('predict') with each --configs ACTORSxTHREADS (a fresh local Ray each
           run, as main.py starts it: the wall time includes ray.init, the actors' model loads and the writes)
  label    in-process: load_spacy + label_texts over all texts (a subprocess); Ray: run_corpus('label') the same way
Prints rows/s of each run, the best of each contender, the Ray path's overhead against the in-process best
(1 - ray rows/s / in-process rows/s), peak RSS per actor (and of the in-process run), and checks that the Ray
outputs equal --predict-file's (topic labels, entity sets) row for row.

    python bench/corpus.py --model-dir outputs/quick/model [--rows 20000] [--shards 4] [--repeats 2]
        [--configs 1x2,2x1] [--skip-label]
    python bench/corpus.py --model-dir outputs/quick/model --check-fp32 --rows 4000   # outputs vs predict(), no timing
    python bench/corpus.py --model-dir M --fast-dir F --skip-label   # also the Ray actors serving M's export F

--fast-dir: an --export-fast folder of the same model; the Ray runs are repeated with it (fast_model.py actors, no
torch model), as "fast AxT" contenders beside the torch "ray AxT" ones.

--check-fp32: the Ray path (2 actors) with the model in fp32 and with its --export-fast ONNX folder against
model.predict(texts, precision="fp32") in this process: rows, topic labels equal, entity sets equal.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_root import in_data_root  # noqa: E402  (after the path: the project's modules)


def make_texts(data, rows):
    import pyarrow.parquet as pq

    from text_prep import clean_text

    texts = []
    for split in ("train", "test"):
        texts += [clean_text(t) for t in pq.read_table(os.path.join(data, f"{split}.parquet"))["text"].to_pylist()]
    return [texts[i % len(texts)] for i in range(rows)]


def write_shards(texts, shards, folder):
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(os.path.join(folder, "shards"))
    size = -(-len(texts) // shards)
    for k in range(shards):
        part = texts[k * size:(k + 1) * size]
        pq.write_table(pa.table({"id": list(range(k * size, k * size + len(part))), "text": part}),
                       os.path.join(folder, "shards", f"part-{k}.parquet"))
    with open(os.path.join(folder, "all.jsonl"), "w") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in texts)


def in_process(kind, folder, model_dir, threads):
    """One in-process run in a subprocess: (seconds, peak RSS MiB)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    report = "finally: print('PEAK_RSS_MIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    if kind == "predict":  # main.py --predict-file as a user runs it
        out = os.path.join(folder, "inproc.jsonl")
        code = ("import resource, runpy, sys; path = sys.argv[1]; sys.argv = ['main.py', '--model-dir', sys.argv[2], "
                "'--predict-file', sys.argv[3], '--output', sys.argv[4]]\ntry: runpy.run_path(path, run_name='__main__')\n"
                f"except SystemExit: pass\n{report}")
        cmd = [sys.executable, "-c", code, os.path.join(ROOT, "main.py"), model_dir, os.path.join(folder, "all.jsonl"),
               out]
    else:
        code = ("import json, resource, sys; sys.path.insert(0, sys.argv[1])\ntry:\n"
                " from create_ner_dataset import load_spacy, label_texts\n"
                " texts = [json.loads(line)['text'] for line in open(sys.argv[2])]\n"
                f" label_texts(texts, load_spacy('en_core_web_sm'))\n{report}")
        cmd = [sys.executable, "-c", code, ROOT, os.path.join(folder, "all.jsonl")]
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    return seconds, float(done.stdout.split("PEAK_RSS_MIB")[-1])


def on_ray(kind, folder, model_dir, actors, threads, tag):
    import corpus

    out = os.path.join(folder, f"ray-{kind}-{tag}")
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    summary = corpus.run_corpus(kind, os.path.join(folder, "shards"), out, model_dir=model_dir, actors=actors,
                                threads_per_actor=threads, show_progress=False, log=lambda *_: None)
    rss = {}
    for s in summary["per_shard"]:
        rss[s["pid"]] = max(rss.get(s["pid"], 0), s["peak_rss_mib"])
    return summary["seconds"], max(rss.values()), out


def check_outputs(folder, ray_out):
    """(rows compared, topic labels equal, entity sets equal) of a Ray output against --predict-file's."""
    ref = [json.loads(line) for line in open(os.path.join(folder, "inproc.jsonl"))]
    got = read_outputs(ray_out)
    return (len(ref), len(got), *agreement(ref, got))


def read_outputs(folder):
    """Every row of a corpus output folder, in shard and row order."""
    import pyarrow.parquet as pq

    return [row for name in sorted(os.listdir(folder)) if name.endswith(".parquet")
            for row in pq.read_table(os.path.join(folder, name)).to_pylist()]


def agreement(want, got):
    """(rows whose topic labels are equal, rows whose entity sets are equal)."""
    labels = sum(w["topic"]["label"] == g["topic"]["label"] for w, g in zip(want, got))
    ents = sum({(e["start"], e["end"], e["type"]) for e in w["ner"]} ==
               {(e["start"], e["end"], e["type"]) for e in g["ner"]} for w, g in zip(want, got))
    return labels, ents


def check_fp32(folder, model_dir, texts):
    import corpus
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    model = MultiTaskSentenceTransformer.from_pretrained(model_dir)
    fast_dir = model.export_fast(os.path.join(folder, "fast"))
    want = model.predict(texts, precision="fp32")
    for name, directory, precision in (("torch fp32", model_dir, "fp32"), ("ONNX folder", fast_dir, "auto")):
        out = os.path.join(folder, f"check-{name.split()[0]}")
        corpus.run_corpus("predict", os.path.join(folder, "shards"), out, model_dir=directory, precision=precision,
                          actors=2, threads_per_actor=1, show_progress=False, log=lambda *_: None)
        got = read_outputs(out)
        labels, ents = agreement(want, got)
        print(f"check {name}: {len(got)} rows (predict: {len(want)}); topic labels equal {labels}, entity sets equal "
              f"{ents}; rows with entities {sum(bool(w['ner']) for w in want)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--data", default=in_data_root("ag_news"))
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--configs", default="1x2,2x1", help="Ray settings ACTORSxTHREADS, comma-separated")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of the in-process runs")
    ap.add_argument("--skip-label", action="store_true")
    ap.add_argument("--check-fp32", action="store_true", help="compare outputs with predict() in fp32; no timing")
    ap.add_argument("--fast-dir", help="an --export-fast folder of --model-dir: Ray runs with it too")
    args = ap.parse_args()
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    folder = tempfile.mkdtemp(prefix="bench_corpus_")
    texts = make_texts(args.data, args.rows)
    write_shards(texts, args.shards, folder)
    if args.check_fp32:
        return check_fp32(folder, args.model_dir, texts)
    print(f"{args.rows} texts in {args.shards} parquet shards under {folder}; in-process threads {args.threads}")
    kinds = ["predict"] + ([] if args.skip_label else ["label"])
    contenders = ["in-process"] + [f"{way} {a}x{t}" for way in ("ray", "fast")[:1 + bool(args.fast_dir)]
                                   for a, t in configs]
    of_kind = {k: [c for c in contenders if k == "predict" or not c.startswith("fast")] for k in kinds}
    results = {(k, c): [] for k in kinds for c in of_kind[k]}
    outs = {}
    for kind in kinds:
        for r in range(args.repeats):
            mine = of_kind[kind]
            order = mine[r % len(mine):] + mine[:r % len(mine)]
            for c in order:
                if c == "in-process":
                    seconds, rss = in_process(kind, folder, args.model_dir, args.threads)
                else:
                    a, t = (int(x) for x in c.split()[1].split("x"))
                    model_dir = args.fast_dir if c.startswith("fast") else args.model_dir
                    seconds, rss, outs[(kind, c)] = on_ray(kind, folder, model_dir, a, t, c.replace(" ", "-"))
                results[(kind, c)].append((args.rows / seconds, rss))
                print(f"{kind:8s} {c:12s} run {r + 1}: {seconds:7.1f} s  {args.rows / seconds:7.1f} rows/s  peak RSS "
                      f"{rss:.0f} MiB{' per actor' if c != 'in-process' else ''}", flush=True)
    print("\nbest of each (rows/s; overhead = 1 - ray / in-process best):")
    for kind in kinds:
        base = max(x for x, _ in results[(kind, "in-process")])
        for c in of_kind[kind]:
            best = max(x for x, _ in results[(kind, c)])
            rss = max(m for _, m in results[(kind, c)])
            print(f"  {kind:8s} {c:12s} {best:7.1f} rows/s  ratio {best / base:.3f}  overhead {1 - best / base:+.1%}"
                  f"  peak RSS {rss:.0f} MiB")
    for c in contenders[1:]:
        n_ref, n_got, labels, ents = check_outputs(folder, outs[("predict", c)])
        print(f"check {c}: {n_got} rows vs {n_ref} of --predict-file; topic labels equal {labels}, entity sets equal "
              f"{ents}")


if __name__ == "__main__":
    main()
