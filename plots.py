"""Figures of a run, written atomically as PNG (atomic_io.save_figure); matplotlib is imported on first use (Agg).

    plot_history(history, path)                 # training losses and validation scores per epoch
    plot_confusion(matrix, labels, path)        # a confusion matrix with its counts
    freezing_chart(rows, path)                  # main.py --compare-freezing: grouped scores per strategy
"""
import textwrap

import numpy as np

from atomic_io import save_figure


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib  # matplotlib: heavy, only for plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: heavy, only for plots

    return plt


def plot_history(history, path):
    """Training losses per task and each task's main validation score per epoch."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name in history[0]["train_loss"]:
        left.plot(epochs, [r["train_loss"].get(name, np.nan) for r in history], "o-", label=f"{name} loss")
    left.set(xlabel="epoch", ylabel="training loss", title="Training losses")
    left.legend()
    if any("val" in r for r in history):
        val = [r for r in history if "val" in r]
        e = [r["epoch"] for r in val]
        for name in val[0]["val"]["tasks"]:  # each task's main score (a task no validation row carries: not drawn)
            scores = [r["val"]["tasks"][name] for r in val]
            key = next((k for k in ("accuracy", "micro_f1", "f1") if any(m and k in m for m in scores)), None)
            if key is not None:
                right.plot(e, [m[key] if m else np.nan for m in scores], "o-", label=f"{name} {key}")
        right.set(xlabel="epoch", ylabel="score", title="Validation")
        right.legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_confusion(matrix, labels, path, title="Confusion matrix"):
    """A confusion matrix (rows: true class, columns: predicted) with its counts written in the cells."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title=title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    fig.tight_layout()
    save_figure(fig, path)


def _scaled(value, scale):
    return float("nan") if value is None else value / scale


def freezing_chart(rows, path):
    """main.py --compare-freezing's chart: grouped bars per strategy (STS-B / 100); stage-2 rows also mark their
    stage-1 scores."""
    plt = _pyplot()
    metrics = [("topic accuracy", "topic_accuracy", 1), ("topic macro-F1", "topic_macro_f1", 1),
               ("NER F1", "ner_f1", 1), ("STS-B Spearman / 100", "sts_spearman", 100)]
    x, width = np.arange(len(rows)), 0.2
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for k, (label, key, scale) in enumerate(metrics):
        offset = (k - 1.5) * width
        ax.bar(x + offset, [_scaled(r[key], scale) for r in rows], width, label=label)  # not measured: no bar
        before = [(i, _scaled(r["before"][key], scale)) for i, r in enumerate(rows) if "before" in r]
        if before:
            ax.scatter([i + offset for i, _ in before], [v for _, v in before], marker="_", s=120, color="black",
                       zorder=3, label="stage 1 (before stage 2)" if k == 0 else None)
    ax.set_xticks(x, [textwrap.fill(r["strategy"], 22) for r in rows], fontsize=8)
    ax.set(ylim=(0, 1.2), ylabel="score", title="Freezing strategies (test split; STS-B dev)")
    ax.legend(loc="upper center", ncols=5, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
