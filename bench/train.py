"""Training throughput: the trainer against a seed-style loop, measured in one run.

Seed style: every row padded to 128 wordpieces, random batches, fp32, the two losses summed.
Trainer: MultiTaskTrainer (dynamic padding, length-grouped batches, mixed precision 'auto').
Same model (the packaged all-MiniLM-L6-v2 plus fresh heads), batch size, threads and 640 AG News rows.
Prints samples/s of both (best of the interleaved repeats), then a last line `ratio <trainer / seed-style>`.

    python bench/train.py [--data ag_news] [--rows 640] [--repeats 2]
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_root import in_data_root  # noqa: E402  (after the path: the project's modules)


def seed_style_epoch(model, rows, tags, batch_size, seed):
    """One epoch the way the seed trained: pad to 128, shuffled batches, fp32, no length grouping."""
    import torch

    from prediction import tokenize_words
    from tasks import IGNORE_INDEX

    tag_to_id = {t: i for i, t in enumerate(tags)}
    enc = tokenize_words(model.tokenizer, list(rows["words"]), 128,
                         [[tag_to_id[t] for t in r] for r in rows["ner_tags"]])
    ids, labels = enc["input_ids"], enc["labels"]
    n = len(ids)
    input_ids = torch.zeros(n, 128, dtype=torch.long)
    mask = torch.zeros(n, 128, dtype=torch.long)
    ner = torch.full((n, 128), IGNORE_INDEX)
    for i, (x, y) in enumerate(zip(ids, labels)):
        input_ids[i, :len(x)], mask[i, :len(x)], ner[i, :len(y)] = torch.tensor(x), 1, torch.tensor(y)
    topic = torch.tensor(list(rows["label"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    ce = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    model.train()
    start = time.perf_counter()
    for b in range(0, n, batch_size):
        idx = order[b:b + batch_size]
        out = model(input_ids[idx], mask[idx])
        loss = ce(out["topic"], topic[idx]) + ce(out["ner"].flatten(0, 1), ner[idx].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return n / (time.perf_counter() - start)


def trainer_epoch(model, rows, batch_size, seed, precision):
    from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(epochs=1, batch_size=batch_size, seed=seed, output_dir=out, save_every_steps=0,
                             show_progress=False, plots=False, resume=False, mixed_precision=precision)
        trainer = MultiTaskTrainer(model, rows, None, config)
        history = trainer.train()
    return len(rows["label"]) / history[0]["train_seconds"], trainer.precision


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=in_data_root("ag_news"))
    parser.add_argument("--rows", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precision", default="auto", help="trainer mixed precision: no | bf16 | auto")
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    from create_ner_dataset import create_dataset
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    hf_logging.disable_progress_bar()
    ds, tags = create_dataset(args.data, max_train_rows=args.rows, max_test_rows=10, show_progress=False)
    rows = ds["train"][:]  # plain dict of lists
    print(f"{len(rows['label'])} rows, batch {args.batch_size}, {torch.get_num_threads()} threads")
    best = {"seed-style": 0.0, "trainer": 0.0}
    for repeat in range(args.repeats):
        torch.manual_seed(0)
        model = MultiTaskSentenceTransformer(tags=tags, max_length=128)
        best["seed-style"] = max(best["seed-style"], seed_style_epoch(model, rows, tags, args.batch_size, repeat))
        torch.manual_seed(0)
        model = MultiTaskSentenceTransformer(tags=tags, max_length=128)
        speed, precision = trainer_epoch(model, rows, args.batch_size, repeat, args.precision)
        best["trainer"] = max(best["trainer"], speed)
    print(f"{'seed-style (pad 128, fp32)':>32s}: {best['seed-style']:7.1f} samples/s")
    print(f"{'trainer (' + precision + ')':>32s}: {best['trainer']:7.1f} samples/s")
    print(f"ratio {best['trainer'] / best['seed-style']:.3f}")


if __name__ == "__main__":
    main()
