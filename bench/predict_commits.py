"""predict() speed of models across commits: each (code folder, model folder) pair runs its own code on its own model
(a model of another format version loads only in its commit's code), the pairs alternated round after round in fresh
processes (order rotated) so machine noise hits every one; best and median texts/s per pair, and each pair's ratio
to the first; the closing `ratio` is the last pair's.

    git worktree add /tmp/at218 218ebac          # the older commit's code
    python bench/predict_commits.py --pair /tmp/at218 /tmp/m218/model --pair . outputs/default/model \
        [--rows 2000] [--rounds 5] [--threads 2] [--precision auto] [--batch-size 32]

Each process loads the model, predicts the first --rows AG News test texts once to warm up, then times two passes
(the best is its number). The texts come from the data root's ag_news (data_root.in_data_root).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = r"""
import json, sys, time
sys.path.insert(0, {code!r})
import torch
torch.set_num_threads({threads})
import datasets
from multi_task_sentence_transformer import MultiTaskSentenceTransformer
texts = datasets.load_dataset("parquet", data_files={files!r}, split="train")["text"][:{rows}]
model = MultiTaskSentenceTransformer.from_pretrained({model!r})
model.predict(texts, batch_size={batch_size}, precision={precision!r})
best = 0.0
for _ in range(2):
    start = time.perf_counter()
    model.predict(texts, batch_size={batch_size}, precision={precision!r})
    best = max(best, len(texts) / (time.perf_counter() - start))
print(json.dumps({{"texts_per_s": best}}))
"""


def test_files():
    sys.path.insert(0, ROOT)
    from data_root import in_data_root

    folder = in_data_root("ag_news")
    found = [os.path.join(dp, f) for dp, _, fs in os.walk(folder) for f in fs if f.startswith("test")]
    if not found:
        sys.exit(f"no ag_news test file under {folder}; set MTST_DATA_ROOT or run python main.py --fetch-data")
    return sorted(found)


def measure(code, model, args, files):
    script = PROBE.format(code=os.path.abspath(code), model=os.path.abspath(model), threads=args.threads,
                          rows=args.rows, batch_size=args.batch_size, precision=args.precision, files=files)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=code, env=env)
    if out.returncode:
        sys.exit(f"{code} / {model} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["texts_per_s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pair", nargs=2, action="append", metavar=("CODE_DIR", "MODEL_DIR"), required=True)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    files = test_files()
    speeds = {i: [] for i in range(len(args.pair))}
    for r in range(args.rounds):
        order = [(i + r) % len(args.pair) for i in range(len(args.pair))]
        for i in order:
            speeds[i].append(measure(*args.pair[i], args, files))
        print(f"round {r + 1}: " + "  ".join(f"{i}: {speeds[i][-1]:.1f}" for i in range(len(args.pair))), flush=True)
    first = max(speeds[0])
    print(f"\n{args.rows} texts, precision {args.precision}, batch {args.batch_size}, {args.threads} threads, "
          f"{args.rounds} rounds")
    print("| code | model | best texts/s | median | best / first's best |\n|---|---|---|---|---|")
    for i, (code, model) in enumerate(args.pair):
        print(f"| {code} | {model} | {max(speeds[i]):.1f} | {statistics.median(speeds[i]):.1f} | "
              f"{max(speeds[i]) / first:.3f} |")
    print(f"ratio {max(speeds[len(args.pair) - 1]) / first:.3f}")  # the last pair's best against the first's


if __name__ == "__main__":
    main()
