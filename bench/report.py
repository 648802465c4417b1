"""Markdown tables for the docs, generated from run folders, so re-measuring is re-running.

    python bench/report.py outputs/default                      # the default run: one results table
    python bench/report.py outputs/joint outputs/ner_only ...   # several runs: one row each
    python bench/report.py outputs/freezing                     # a --compare-freezing run: its tables
    (runs with more tasks than topic + NER also get a table with one row per task)

Each RUN_DIR holds a results.json (main.py's training run; conll_eval.json beside it adds the CoNLL-2003 F1) and/or a
compare_freezing.json (main.py --compare-freezing). Every table is preceded by its provenance: the commit, the exact
command, the machine and the date, as results.json recorded them (`run`).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def read_json(folder, name):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def fmt(value, digits=4):
    return "—" if value is None else f"{value:.{digits}f}"


def provenance(run, label=None):
    """One line naming where a number came from."""
    if not run:
        return f"{label + ': ' if label else ''}provenance not recorded (a results.json written before it was kept)"
    head = f"{label}: " if label else ""
    return (f"{head}commit `{run.get('commit')}`, `{run.get('command')}`, {run.get('machine')}, {run.get('date')} "
            f"(torch {run.get('torch')}, transformers {run.get('transformers')})")


def results_row(name, results, conll):
    t, trained = results["test"], results.get("trained_tasks") or {"topic": True, "ner": True}
    ner = t["ner"]["f1"] if t.get("ner") and trained.get("ner") else None
    topic = trained.get("topic")
    return (f"| {name} | {fmt(t['accuracy'] if topic else None)} | {fmt(t['macro_f1'] if topic else None)} | "
            f"{fmt(ner)} | {fmt(conll['model']['f1'] if conll else None)} | {fmt(results.get('sts_spearman'), 2)} | "
            f"{results.get('best_epoch')} | {train_seconds(results) / 60:.1f} | {results.get('precision')} |")


def train_seconds(results):
    """Training time of the run, every stage of a --schedule included."""
    stages = (results.get("schedule") or {}).get("stages", [])
    return results["train_seconds"] + sum(s.get("train_seconds", 0) for s in stages)


def results_table(folders):
    """One row per run folder holding a results.json; None when none does."""
    rows, notes = [], []
    for folder in folders:
        results = read_json(folder, "results.json")
        if results is None:
            continue
        name = os.path.basename(os.path.normpath(folder))
        rows.append(results_row(name, results, read_json(folder, "conll_eval.json")))
        notes.append("- " + provenance(results.get("run"), name) + f"; {results['rows']['train']} train / "
                     f"{results['rows']['val']} validation / {results['rows']['test']} test rows")
    if not rows:
        return None
    header = ["| run | topic accuracy | topic macro-F1 | NER F1 vs silver | CoNLL-2003 valid F1 | STS-B dev | "
              "best epoch | train min | precision |", "|---|---|---|---|---|---|---|---|---|"]
    return "\n".join(notes + [""] + header + rows) + "\n"


def task_table(folders):
    """One row per task of each run with more tasks than the default pair (or tasks added with --from-model): its
    test rows, main score, macro-F1 and, for the tasks of a --from-model start, the score before."""
    rows = []
    for folder in folders:
        results = read_json(folder, "results.json")
        tasks = ((results or {}).get("test") or {}).get("tasks") or {}
        added = (results or {}).get("from_model") or {}
        if not results or (set(tasks) <= {"topic", "ner"} and not added):
            continue
        name = os.path.basename(os.path.normpath(folder))
        for task, m in tasks.items():
            if m is None:
                continue
            key = next(k for k in ("accuracy", "micro_f1", "f1") if k in m)
            before = (added.get("old_tasks") or {}).get(task, {}).get("before")
            rows.append(f"| {name} | {task} | {results['test']['rows'][task]} | {key} {fmt(m[key])} | "
                        f"{fmt(m.get('macro_f1'))} | {fmt(before)} |")
    if not rows:
        return None
    return "\n".join(["| run | task | test rows | main score | macro-F1 | before (--from-model) |",
                      "|---|---|---|---|---|---|", *rows]) + "\n"


def freezing_tables(folder):
    """The tables of a --compare-freezing run folder, or None."""
    rows = read_json(folder, "compare_freezing.json")
    if rows is None:
        return None
    from compare_freezing import freezing_table

    joint = read_json(os.path.join(folder, "compare", "joint"), "results.json") or {}
    note = provenance(joint.get("run"), os.path.basename(os.path.normpath(folder)))
    return note + "\n\n" + freezing_table(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    a = parser.parse_args(argv)
    missing = [d for d in a.run_dirs if not os.path.isdir(d)]
    if missing:
        parser.error(f"no run folder at {', '.join(missing)}")
    parts = [results_table(a.run_dirs), task_table(a.run_dirs)] + [freezing_tables(d) for d in a.run_dirs]
    parts = [p for p in parts if p]
    if not parts:
        parser.error("none of the folders holds a results.json or compare_freezing.json (main.py writes them in "
                     "its --output-dir)")
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
