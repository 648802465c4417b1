"""Frozen encoder → feature cache: the first epoch (which runs the encoder once) against the later ones.

Trains the heads of the packaged MiniLM model with the encoder frozen for a few epochs on AG News rows and
prints each epoch's seconds (the first includes building the cache), then a last line
`ratio <first epoch / mean of later epochs>` (goal ≥ 10).

    python bench/feature_cache.py [--data ag_news] [--rows 1000] [--epochs 3]
"""
import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_root import in_data_root  # noqa: E402  (after the path: the project's modules)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=in_data_root("ag_news"))
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    from transformers.utils import logging as hf_logging

    from create_ner_dataset import create_dataset
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer
    from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig

    hf_logging.disable_progress_bar()
    ds, tags = create_dataset(args.data, max_train_rows=args.rows, max_test_rows=10, show_progress=False)
    model = MultiTaskSentenceTransformer(tags=tags, max_length=128)
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(epochs=args.epochs, freeze_encoder=True, output_dir=out, save_every_steps=0,
                             show_progress=False, plots=False, resume=False)
        history = MultiTaskTrainer(model, ds["train"], None, config).train()
    seconds = [r["train_seconds"] for r in history]
    for r, s in zip(history, seconds):
        print(f"epoch {r['epoch']}: {s:7.2f} s")
    later = sum(seconds[1:]) / max(1, len(seconds) - 1)
    print(f"ratio {seconds[0] / later:.1f}")


if __name__ == "__main__":
    main()
