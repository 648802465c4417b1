"""The CUDA path: training samples/s and peak GPU memory of fp32 and bf16 on one CUDA GPU, and the host syncs per step.

    python bench/gpu.py [--rows 6000] [--batch-size 32] [--repeats 2] [--model PATH]
    python bench/gpu.py --default-run [--model PATH]   # main.py's default training recipe, timed whole

Runs MultiTaskTrainer for one epoch per measurement, fp32 and bf16 interleaved after a warm-up, and prints the best
of the repeats for each, then the host synchronisations the loop made (torch.cuda.set_sync_debug_mode counts them),
then a last line `ratio X` = bf16 samples/s over fp32 samples/s. Needs no data set, spaCy or downloads: the rows are
synthetic (AG News' length profile: 20-100 words, mean about 50, random BIO tags) and the encoder, unless --model
names a local model directory, is a randomly initialised BERT of all-MiniLM-L6-v2's shape (6 layers, hidden 384,
vocabulary 30522) with a generated word-level vocabulary: the same arithmetic as the trained weights, so the same
speed. Takes about a minute on an H200. Without a CUDA GPU it says so and exits 1.

--default-run times what `python main.py` does after labelling, with its default recipe on rows of the default sample's
sizes (6,237 train, 694 validation, 3,800 test; synthetic words): task layers 1, NER weight 5, keep-embedding 3, 4
epochs with validation after each, precision auto, then the test split scored once; last line `wall X` in seconds.
"""
import argparse
import os
import sys
import tempfile
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


SHAPES = {"minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
          "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)}


def minilm_shaped_model(tags, seed=0, shape="minilm", task_layers=0):
    """A random BERT with all-MiniLM-L6-v2's (or bert-base's) shape and a word-level vocabulary w0..w30516 (no
    files, no downloads)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    from multi_task_sentence_transformer import MultiTaskSentenceTransformer
    from sentence_transformer import SentenceTransformer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(30517)]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    config = BertConfig(vocab_size=len(words), max_position_embeddings=512, attention_probs_dropout_prob=0.0,
                        **SHAPES[shape])
    torch.manual_seed(seed)
    encoder = SentenceTransformer(encoder=BertModel(config, add_pooling_layer=False), tokenizer=tokenizer,
                                  max_length=128)
    return MultiTaskSentenceTransformer(encoder, tags=tags, task_layers=task_layers)


def synthetic_rows(n, tags, seed=0):
    """n rows of AG-News-like length (20-100 words) with random words, BIO tags and topics."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = {"words": [], "ner_tags": [], "label": []}
    for _ in range(n):
        length = int(np.clip(rng.normal(50, 15), 20, 100))
        rows["words"].append([f"w{i}" for i in rng.integers(0, 30517, length)])
        rows["ner_tags"].append([tags[i] if rng.random() < 0.15 else "O" for i in rng.integers(0, len(tags), length)])
        rows["label"].append(int(rng.integers(0, 4)))
    return rows


def train_once(make_model, rows, batch_size, precision, count_syncs=False):
    """(samples/s, peak GiB, host syncs, steps) of one epoch of MultiTaskTrainer."""
    import torch
    from accelerate.state import AcceleratorState

    from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig

    AcceleratorState._reset_state()  # accelerate holds one mixed precision per process; this bench alternates two
    model = make_model()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(epochs=1, batch_size=batch_size, output_dir=out, save_every_steps=0, save_every_minutes=0,
                             show_progress=False, plots=False, resume=False, mixed_precision=precision)
        trainer = MultiTaskTrainer(model, rows, None, config)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if count_syncs:
                torch.cuda.set_sync_debug_mode("warn")
            try:
                record = trainer.train()[0]
            finally:
                torch.cuda.set_sync_debug_mode(0)
        syncs = sum("synchroniz" in str(w.message) for w in caught)
    peak = torch.cuda.max_memory_allocated() / 2**30
    return len(rows["label"]) / record["train_seconds"], peak, syncs, record["global_step"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default=None, help="a local model directory (default: a random BERT of --shape)")
    parser.add_argument("--shape", default="minilm", choices=sorted(SHAPES), help="shape of the random BERT")
    parser.add_argument("--default-run", action="store_true", help="time main.py's default training recipe whole "
                        "(train + validation + test) instead of the fp32 / bf16 comparison")
    parser.add_argument("--texts", default=None, help="a text file (one text a line) for the inference check: "
                        "encode() and predict_tags() in fp32 vs precision='auto' (default: synthetic words)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing measured. "
              "Run it on a machine with a CUDA GPU.")
        return 1
    from transformers.utils import logging as hf_logging

    from multi_task_sentence_transformer import MultiTaskSentenceTransformer
    from ner_tags import build_tag_list

    hf_logging.disable_progress_bar()
    tags = build_tag_list()
    if args.model:
        def make_model(task_layers=0):
            torch.manual_seed(0)
            return MultiTaskSentenceTransformer(args.model, tags=tags, max_length=128, task_layers=task_layers)
    else:
        def make_model(task_layers=0):
            return minilm_shaped_model(tags, shape=args.shape, task_layers=task_layers)
    if args.default_run:
        return default_run(make_model, tags)
    rows = synthetic_rows(args.rows, tags)
    print(f"{torch.cuda.get_device_name(0)}; torch {torch.__version__}; {args.rows} synthetic rows, "
          f"batch {args.batch_size}, encoder {args.model or args.shape + '-shaped random BERT'}")
    train_once(make_model, rows, args.batch_size, "bf16")  # warm-up: CUDA context, kernels
    best = {"no": (0.0, 0.0), "bf16": (0.0, 0.0)}
    for _ in range(args.repeats):
        for precision in ("no", "bf16"):  # interleaved, best of the repeats
            speed, peak, _, _ = train_once(make_model, rows, args.batch_size, precision)
            best[precision] = max(best[precision], (speed, peak))
    for precision, name in (("no", "fp32"), ("bf16", "bf16")):
        print(f"{name}: {best[precision][0]:8.1f} samples/s, peak GPU memory {best[precision][1]:.2f} GiB")
    # host syncs of the loop alone: a 64-step epoch minus a 32-step one (the end-of-run saves are the same in both)
    counts = {}
    for steps in (32, 64):
        few = {k: v[:steps * args.batch_size] for k, v in rows.items()}
        counts[steps] = train_once(make_model, few, args.batch_size, "bf16", count_syncs=True)[2]
    print(f"host synchronisations per training step: {(counts[64] - counts[32]) / 32:.3f} "
          f"(log_every_steps 20: 0.05 expected; {counts[32]} in a whole 32-step run with its saves)")
    inference_check(make_model, args.texts, rows)
    print(f"ratio {best['bf16'][0] / best['no'][0]:.2f}")
    return 0


def default_run(make_model, tags):
    """main.py's default recipe after labelling, timed whole: 4 epochs on 6,237 rows with validation on 694 after
    each (task layers 1, ner=5, keep-embedding 3, precision auto), then the 3,800 test rows scored once."""
    import time

    import torch

    from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig

    train, val, test = (synthetic_rows(n, tags, seed) for n, seed in ((6237, 0), (694, 1), (3800, 2)))
    train_once(make_model, {k: v[:640] for k, v in train.items()}, 32, "auto")  # warm-up: CUDA context, kernels
    start = time.perf_counter()
    model = make_model(task_layers=1)
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(epochs=4, batch_size=32, head_lr=1e-3, task_weights={"ner": 5.0}, keep_embedding=3.0,
                             mixed_precision="auto", output_dir=out, show_progress=False, plots=False, resume=False)
        trainer = MultiTaskTrainer(model, train, val, config)
        history = trainer.train()
        trained = time.perf_counter() - start
        trainer.evaluate(test)
    torch.cuda.synchronize()
    wall = time.perf_counter() - start
    per_epoch = ", ".join(f"{r['train_seconds']:.1f}" for r in history)
    print(f"{torch.cuda.get_device_name(0)}; torch {torch.__version__}; default recipe: 4 epochs of 6,237 rows with "
          f"validation (694) {trained:.1f} s ({per_epoch} s of training per epoch), then 3,800 test rows: "
          f"{wall:.1f} s in all; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    print(f"wall {wall:.1f}")
    return 0


def inference_check(make_model, texts_file, rows, n=2000):
    """encode() and predict_tags() on the GPU: texts/s in fp32 and with precision='auto' (what it resolves to),
    cosine of the sentence embeddings and agreement of the word tags between the two."""
    import time

    import torch

    from sentence_transformer import resolve_precision

    if texts_file:
        with open(texts_file) as f:
            texts = [line.strip() for line in f if line.strip()][:n]
    else:
        texts = [" ".join(words) for words in rows["words"][:n]]
    words = [t.split() for t in texts]
    model = make_model().cuda().eval()
    auto = resolve_precision("auto", model.device)
    results = {}
    for precision in ("fp32", auto, "fp32", auto):  # interleaved; the first pass also warms up
        torch.cuda.synchronize()
        start = time.perf_counter()
        emb = model.encoder.encode(texts, batch_size=128, precision=precision, convert_to="tensor")
        torch.cuda.synchronize()
        encode_speed = len(texts) / (time.perf_counter() - start)
        start = time.perf_counter()
        tags = model.predict_tags(words, batch_size=128, precision=precision)
        torch.cuda.synchronize()
        tag_speed = len(texts) / (time.perf_counter() - start)
        results[precision] = (encode_speed, tag_speed, emb, tags)
    cosine = torch.nn.functional.cosine_similarity(results["fp32"][2], results[auto][2])
    same = sum(a == b for x, y in zip(results["fp32"][3], results[auto][3]) for a, b in zip(x, y))
    total = sum(len(x) for x in results["fp32"][3])
    print(f"inference ({len(texts)} texts): precision='auto' resolves to {auto} on {torch.cuda.get_device_name(0)}")
    for precision in dict.fromkeys(("fp32", auto)):
        print(f"  {precision}: encode {results[precision][0]:8.1f} texts/s, predict_tags {results[precision][1]:8.1f} "
              "texts/s")
    print(f"  {auto} vs fp32: sentence-embedding cosine min {cosine.min():.5f} mean {cosine.mean():.5f}; "
          f"word tags identical {same / max(total, 1):.4f}")


if __name__ == "__main__":
    sys.exit(main())
