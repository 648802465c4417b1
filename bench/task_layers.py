"""What task layers cost: training and serving speed of the default pair with task_layers = 0 (every task reads the
shared encoder), 1, 2, ... measured in one run.

Same model (the packaged all-MiniLM-L6-v2 plus fresh heads, seeded), same AG News rows, threads and precision
('auto'); the contenders alternate within each repeat, best of --repeats. Training: one trainer epoch over --rows rows
(the default run's settings: batch 32, --keep-embedding 3, so the shared top layers run for the embedding loss).
Serving: predict() of both tasks on the first --texts test texts (batch 32). Prints samples/s and texts/s per K, then
a last line `ratio <K = the largest: serving texts/s / K = 0's>`.

    python bench/task_layers.py [--k 0 1 2] [--rows 640] [--texts 1000] [--repeats 2]
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_root import in_data_root  # noqa: E402  (after the path: the project's modules)


def train_speed(model, rows, batch_size, seed):
    from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(epochs=1, batch_size=batch_size, seed=seed, output_dir=out, save_every_steps=0,
                             show_progress=False, plots=False, resume=False, keep_embedding=3.0)
        history = MultiTaskTrainer(model, rows, None, config).train()
    return len(rows["label"]) / history[0]["train_seconds"]


def serve_speed(model, texts, batch_size):
    model.predict(texts[:batch_size], batch_size=batch_size)  # warm-up: spaCy's word splitter, first kernels
    start = time.perf_counter()
    model.predict(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=in_data_root("ag_news"))
    parser.add_argument("--k", type=int, nargs="+", default=[0, 1, 2], help="task_layers values (0 first)")
    parser.add_argument("--rows", type=int, default=640)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch
    from datasets import load_dataset
    from transformers.utils import logging as hf_logging

    from create_ner_dataset import create_dataset
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer
    from precision import resolve_precision
    from run_info import run_info

    hf_logging.disable_progress_bar()
    ds, tags = create_dataset(args.data, max_train_rows=args.rows, max_test_rows=10, show_progress=False)
    rows = ds["train"][:]
    texts = list(load_dataset(args.data, split="test")["text"][:args.texts])
    info = run_info()
    print(f"{info['machine']}; commit {info['commit']}; {torch.get_num_threads()} threads; precision "
          f"{resolve_precision('auto', torch.device('cpu'))}; {len(rows['label'])} training rows, {len(texts)} texts")
    best = {k: {"train": 0.0, "serve": 0.0} for k in args.k}
    for repeat in range(args.repeats):
        for k in (args.k if repeat % 2 == 0 else args.k[::-1]):
            torch.manual_seed(0)
            model = MultiTaskSentenceTransformer(tags=tags, max_length=128, task_layers=k)
            best[k]["serve"] = max(best[k]["serve"], serve_speed(model, texts, args.batch_size))
            best[k]["train"] = max(best[k]["train"], train_speed(model, rows, args.batch_size, repeat))
    base = best[args.k[0]]
    for k, b in best.items():
        print(f"task_layers={k}: training {b['train']:6.1f} samples/s ({b['train'] / base['train']:.2f}x), "
              f"serving {b['serve']:6.1f} texts/s ({b['serve'] / base['serve']:.2f}x)")
    print(f"ratio {best[args.k[-1]]['serve'] / base['serve']:.3f}")


if __name__ == "__main__":
    main()
