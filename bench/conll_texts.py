"""Unlabelled text for --distil-texts from a CoNLL file: its sentences (words joined by spaces, -DOCSTART- lines
dropped, sentences of at least --min-words words), a seeded sample of --n of them (--n 0: all, in the file's order),
one per line; --unique keeps each sentence once. Only the words are used, never the file's tags.

    python bench/conll_texts.py --n 5000 --output outputs/conll_train_5k.txt   # from the data root's conll2003/train.txt
    python bench/conll_texts.py --n 0 --min-words 3 --unique --output outputs/conll_train_all.txt   # 11,922 sentences
    python main.py --distil-from outputs/default/model --student-layers 3 --distil-texts outputs/conll_train_5k.txt \\
        --output-dir outputs/student3_texts
"""
import argparse
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_root import in_data_root  # noqa: E402  (after the path: the project's modules)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conll", default=in_data_root(os.path.join("conll2003", "train.txt")))
    parser.add_argument("--n", type=int, default=5000, help="sentences to keep (0 = all)")
    parser.add_argument("--min-words", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unique", action="store_true", help="each sentence once (its first occurrence)")
    parser.add_argument("--output", required=True)
    a = parser.parse_args()
    if not a.conll or not os.path.isfile(a.conll):
        sys.exit(f"error: no CoNLL file at {a.conll}; pass --conll FILE (e.g. conll2003/train.txt of the data root)")
    from conll import sentence_texts

    sentences = sentence_texts(a.conll, 0, a.min_words)
    if a.unique:
        sentences = list(dict.fromkeys(sentences))
    if a.n:
        random.Random(a.seed).shuffle(sentences)
    keep = sentences[:a.n] if a.n else sentences  # as conll.sentence_texts samples (a student's own texts)
    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    with open(a.output, "w", encoding="utf-8") as f:
        f.write("\n".join(keep) + "\n")
    print(f"{len(keep)} of {len(sentences)} sentences ({sum(len(s.split()) for s in keep) / len(keep):.1f} words on "
          f"average) written to {a.output}")


if __name__ == "__main__":
    main()
