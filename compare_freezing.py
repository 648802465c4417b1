"""--compare-freezing: which parts to train, measured on the same data, seed and flags.

Single-stage strategies (joint, topic only, NER only, encoder frozen), then two-stage schedules: stage 1 is the joint
run's best model, stage 2 trains it on for --stage2-epochs with one head frozen. Writes, in OUTPUT_DIR,
compare_freezing.json (one row per strategy; stage-2 rows hold their stage-1 scores under `before`),
compare_freezing.md (freezing_table) and compare_freezing.png (plots.freezing_chart).
"""
import json
import os

from atomic_io import write_text_atomic
from errors import InputError
from experiment import load_data, run_experiment
from plots import freezing_chart
from sts_benchmark import sts_pairs

# (name, output folder, TrainConfig overrides). Stage 1 of the two-stage schedules is the `joint` run.
SINGLE_STAGE_STRATEGIES = [
    ("joint", "joint", {}),
    ("topic only", "topic_only", {"task_weights": {"ner": 0.0}}),
    ("NER only", "ner_only", {"task_weights": {"topic": 0.0}}),
    ("encoder frozen", "encoder_frozen", {"freeze_encoder": True, "feature_cache": True}),
]
STAGE2_STRATEGIES = [
    ("stage 2: classifier frozen, NER trained", "stage2_classifier_frozen", {"freeze_tasks": ("topic",)}),
    ("stage 2: NER head frozen, topic trained", "stage2_ner_frozen", {"freeze_tasks": ("ner",)}),
]
SCORES = ("topic_accuracy", "topic_macro_f1", "ner_f1", "sts_spearman")  # each row's scores (test split; STS-B dev)


def freezing_row(name, results, epochs):
    t = results["test"]
    return {"strategy": name, "topic_accuracy": t["accuracy"], "topic_macro_f1": t["macro_f1"],
            "ner_f1": t["ner"] and t["ner"]["f1"], "sts_spearman": results["sts_spearman"],
            "train_seconds": results["train_seconds"], "epochs": epochs, "best_epoch": results["best_epoch"]}


def compare_freezing(recipe):
    """Run every strategy with main.py's flags (a recipe.Recipe); write the json, the table and the chart."""
    t, output_dir = recipe.training, recipe.training.output_dir
    if t.stage2_epochs < 1:
        raise InputError(f"--stage2-epochs must be >= 1 (got {t.stage2_epochs}).")
    if sts_pairs(recipe.data.data_root)[0] is None:  # said once here; each row records it
        print("STS-B check skipped in every row (no STS Benchmark file under the data root, no Hub)")
    data = load_data(recipe)
    folder = os.path.join(output_dir, "compare")
    rows = []
    for name, sub, overrides in SINGLE_STAGE_STRATEGIES:
        print(f"\n=== {name}")
        finished = run_experiment(recipe, data, os.path.join(folder, sub), **overrides)
        if finished is not None:  # None: not the main process (DDP), which does not report
            rows.append(freezing_row(name, finished[0], t.epochs))
    stage1 = os.path.join(folder, SINGLE_STAGE_STRATEGIES[0][1], "best_model")  # complete on every process
    for name, sub, overrides in STAGE2_STRATEGIES:
        print(f"\n=== {name} ({t.stage2_epochs} epochs from {stage1})")
        finished = run_experiment(recipe, data, os.path.join(folder, sub), start_from=stage1, epochs=t.stage2_epochs,
                                  **overrides)
        if finished is not None:
            row = freezing_row(name, finished[0], t.stage2_epochs)
            row["before"] = {k: rows[0][k] for k in (*SCORES, "train_seconds")}  # the joint row = stage 1
            rows.append(row)
    if not rows:
        return
    write_text_atomic(os.path.join(output_dir, "compare_freezing.json"), json.dumps(rows, indent=2))
    note = (f"Test split ({len(data[2])} rows) scores vs the silver labels; STS-B: dev Spearman x100 of encode(). "
            f"{t.epochs} epochs per run; stage 2: {t.stage2_epochs} more from the joint model (stage 1). "
            f"Seed {t.seed}.")
    table = note + "\n\n" + freezing_table(rows)
    path = os.path.join(output_dir, "compare_freezing.md")
    write_text_atomic(path, table)
    print("\n" + table)
    freezing_chart(rows, os.path.join(output_dir, "compare_freezing.png"))
    print(f"\nwrote {path}, compare_freezing.json and compare_freezing.png")


def _sts(score):
    return "not measured" if score is None else f"{score:.2f}"


def freezing_table(rows):
    """Markdown: one table of every strategy, then stage 1 -> stage 2 for both tasks."""
    lines = ["| strategy | topic accuracy | topic macro-F1 | NER F1 (vs silver) | STS-B Spearman | epochs | "
             "train time (s) |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['strategy']} | {r['topic_accuracy']:.4f} | {r['topic_macro_f1']:.4f} | {r['ner_f1']:.4f} | "
              f"{_sts(r['sts_spearman'])} | {r['epochs']} | {r['train_seconds']:.0f} |" for r in rows]
    stage2 = [r for r in rows if "before" in r]
    if stage2:
        lines += ["", "Stage 2, both tasks: stage 1 (the joint model) -> after stage 2 (change)", "",
                  "| strategy | topic accuracy | topic macro-F1 | NER F1 (vs silver) | STS-B Spearman |",
                  "|---|---|---|---|---|"]
        for r in stage2:
            cells = [f"{r['before'][k]:.{d}f} -> {r[k]:.{d}f} ({r[k] - r['before'][k]:+.{d}f})"
                     if r[k] is not None and r["before"][k] is not None else "not measured"
                     for k, d in zip(SCORES, (4, 4, 4, 2))]
            lines.append(f"| {r['strategy']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
