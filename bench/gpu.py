"""The CUDA path: a short bf16 training run of the packaged encoder on the shared data, printing samples/s.

    python bench/gpu.py [--data ../shared/data/ag_news] [--rows 3000] [--model all-MiniLM-L6-v2]

Run it whenever a CUDA GPU is at hand and put its numbers in the README with the card's name. It also times an
fp32 epoch on the same GPU, so the bf16 speed-up is a ratio measured in one run. Without a GPU it says so and exits 1.
"""
import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "ag_news"))
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here: this benchmark proves the CUDA path; run it on a machine with one")
        return 1
    from transformers.utils import logging as hf_logging

    from create_ner_dataset import create_dataset
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer
    from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig

    hf_logging.disable_progress_bar()
    ds, tags = create_dataset(args.data, max_train_rows=args.rows, max_test_rows=500, show_progress=False)
    print(f"{torch.cuda.get_device_name(0)}; torch {torch.__version__}; {args.rows} rows, batch {args.batch_size}")
    speeds = {}
    for precision in ("bf16", "no", "bf16"):  # bf16 twice: the first run also warms up CUDA
        torch.manual_seed(0)
        model = MultiTaskSentenceTransformer(args.model, tags=tags, max_length=128)
        with tempfile.TemporaryDirectory() as out:
            config = TrainConfig(epochs=1, batch_size=args.batch_size, output_dir=out, save_every_steps=0,
                                 show_progress=False, plots=False, resume=False, mixed_precision=precision)
            trainer = MultiTaskTrainer(model, ds["train"], ds["test"], config)
            record = trainer.train()[0]
        speeds[precision] = args.rows / record["train_seconds"]
        print(f"{precision:>4s}: {speeds[precision]:8.1f} samples/s, val acc {record['val']['accuracy']:.3f}, "
              f"NER F1 {record['val']['ner']['f1']:.3f}, peak GPU memory "
              f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    print(f"bf16 samples/s {speeds['bf16']:.1f}; ratio bf16/fp32 {speeds['bf16'] / speeds['no']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
