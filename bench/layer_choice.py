"""Which teacher layers a student keeps: untrained students of a trained model (no distillation, no training), scored
on main.py's validation split (carved from train with the default seed; never the test split) and STS-B dev.

    python bench/layer_choice.py [outputs/default/model] [--keep 1,3,5 0,2,4 ...]   (layers 0-based)
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_root import in_data_root  # noqa: E402  (after the path: the project's modules)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", default=os.path.join(ROOT, "outputs", "default", "model"))
    parser.add_argument("--data", default=in_data_root("ag_news"))
    parser.add_argument("--keep", nargs="+", default=["1,3,5", "0,2,4", "0,3,5", "0,2,5", "0,4,5", "2,5", "0,5"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from create_ner_dataset import create_dataset
    from distillation import keep_layers
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer
    from sts_benchmark import sts_pairs, sts_spearman
    from trainer_sentence_transformer import evaluate

    torch.set_num_threads(args.threads)
    teacher = MultiTaskSentenceTransformer.from_pretrained(args.model_dir)
    ds, _ = create_dataset(args.data, seed=42)
    val = ds["train"].train_test_split(test_size=0.1, stratify_by_column="label", seed=42)["test"]  # main.py's
    sts = sts_pairs()
    print(f"{len(val)} validation rows; layers 1-based below")
    print("| layers kept | accuracy | NER F1 (silver) | STS-B dev |\n|---|---|---|---|")
    for spec in args.keep:
        keep = [int(i) for i in spec.split(",")]
        student = keep_layers(teacher, keep)
        m = evaluate(student.eval(), val)
        print(f"| {', '.join(str(i + 1) for i in keep)} | {m['accuracy']:.4f} | {m['ner']['f1']:.4f} | "
              f"{sts_spearman(student, sts):.2f} |", flush=True)


if __name__ == "__main__":
    main()
