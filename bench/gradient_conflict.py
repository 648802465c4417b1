"""Do the two tasks' gradients conflict on the shared encoder? (what PCGrad-style projection would change)

For training batches of the default data, the gradient of the topic loss and of the NER loss (each as the trainer
weighs it: w_cls, w_ner) with respect to the encoder's parameters, in train mode (dropout as in training); prints
their cosine per batch summary and how often it is negative. PCGrad (Yu et al. 2020) changes a step only when the
cosine is negative, and then by the projection of one gradient on the other (|cos| of its norm).

    python bench/gradient_conflict.py [MODEL_DIR ...] [--batches 20]   # default: the untrained start and
                                                                        # outputs/default/model
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_root import in_data_root  # noqa: E402  (after the path: the project's modules)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dirs", nargs="*", default=["start", os.path.join(ROOT, "outputs", "default", "model")],
                        help="saved models; 'start' = the packaged encoder with fresh heads (seed 42)")
    parser.add_argument("--data", default=in_data_root("ag_news"))
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--w-cls", type=float, default=1.0)
    parser.add_argument("--w-ner", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np
    import torch

    from batching import collate, length_grouped_batches, pad_ids_value, positions, prepare_features
    from create_ner_dataset import create_dataset
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    torch.set_num_threads(args.threads)
    ds, tags = create_dataset(args.data, seed=42)
    train = ds["train"].train_test_split(test_size=0.1, stratify_by_column="label", seed=42)["train"]  # main.py's
    print(f"{args.batches} batches of {args.batch_size} from main.py's training split; w_cls {args.w_cls}, "
          f"w_ner {args.w_ner}")
    print("| model | cos(topic grad, NER grad) mean | min | max | batches with cos < 0 | |topic| / |NER| |")
    print("|---|---|---|---|---|---|")
    for name in args.model_dirs:
        torch.manual_seed(42)
        model = (MultiTaskSentenceTransformer("all-MiniLM-L6-v2", label_names=train.features["label"].names,
                                              tags=tags, max_length=128) if name == "start"
                 else MultiTaskSentenceTransformer.from_pretrained(name))
        model.train()
        params = [p for p in model.encoder.parameters() if p.requires_grad]
        features = prepare_features(train, model)
        lengths = [len(x) for x in features["input_ids"]]
        batches = length_grouped_batches(lengths, args.batch_size, 42, 0)[: args.batches]
        cosines, ratios = [], []
        for rows in batches:
            b = collate(features, rows, pad_ids_value(model), tasks=model.tasks)
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], shape_ids=b["shape_ids"],
                        positions=positions(b, model.tasks))
            topic, ner_task = model.tasks["topic"], model.tasks["ner"]
            cls = args.w_cls * topic.loss(out["topic"], b["topic"]) / len(rows)
            ner = args.w_ner * ner_task.loss(out["ner"], b["ner"]) / max(1, len(b["ner"]))
            g_cls = torch.cat([g.flatten() for g in torch.autograd.grad(cls, params, retain_graph=True)])
            g_ner = torch.cat([g.flatten() for g in torch.autograd.grad(ner, params)])
            cosines.append(torch.nn.functional.cosine_similarity(g_cls, g_ner, dim=0).item())
            ratios.append((g_cls.norm() / g_ner.norm()).item())
        c = np.array(cosines)
        label = "start (packaged encoder, fresh heads)" if name == "start" else name
        print(f"| {label} | {c.mean():.3f} | {c.min():.3f} | {c.max():.3f} | {int((c < 0).sum())} of {len(c)} | "
              f"{np.mean(ratios):.2f} |", flush=True)


if __name__ == "__main__":
    main()
