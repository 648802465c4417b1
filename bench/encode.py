"""Time SentenceTransformer.encode() against sentence-transformers' encode() on the same texts.

Same model (the packaged all-MiniLM-L6-v2), batch size, threads and texts; repetitions interleaved so
machine noise hits both. Prints sentences/s for each, the bf16 mode's speed and cosine agreement, then
a last line `ratio <ours / theirs>` (fp32).

    python bench/encode.py [--data ag_news] [--rows 1000] [--repeats 3]
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_root import in_data_root  # noqa: E402  (after the path: the project's modules)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=in_data_root("ag_news"))
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import torch
    from datasets import load_dataset
    from sentence_transformers import SentenceTransformer as Reference

    from sentence_transformer import SentenceTransformer, packaged_model_path

    texts = list(load_dataset(args.data, split="test")["text"][: args.rows])
    ours = SentenceTransformer()
    theirs = Reference(packaged_model_path(), device="cpu")
    print(f"{len(texts)} AG News texts, batch {args.batch_size}, {torch.get_num_threads()} threads")

    runs = {
        "ours fp32": lambda: ours.encode(texts, batch_size=args.batch_size, normalize=True, show_progress_bar=False),
        "sentence-transformers": lambda: theirs.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, show_progress_bar=False),
        "ours bf16": lambda: ours.encode(texts, batch_size=args.batch_size, normalize=True, precision="bf16", show_progress_bar=False),
    }
    ours.encode(texts[:64]), theirs.encode(texts[:64])
    best, outputs = {}, {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            outputs[name] = run()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    for name, seconds in best.items():
        print(f"{name:>24s}: {len(texts) / seconds:8.1f} sentences/s (best of {args.repeats})")
    diff = np.abs(outputs["ours fp32"] - outputs["sentence-transformers"]).max()
    cosine = (outputs["ours fp32"] * outputs["ours bf16"]).sum(1)
    print(f"max |ours - theirs| (fp32): {diff:.2e}")
    print(f"bf16 speed-up over fp32: {best['ours fp32'] / best['ours bf16']:.2f}x; "
          f"cosine to fp32: mean {cosine.mean():.5f}, min {cosine.min():.5f}")
    print(f"ratio {best['sentence-transformers'] / best['ours fp32']:.3f}")


if __name__ == "__main__":
    main()
