"""bench/report.py: the docs' tables come from run folders (results.json, conll_eval.json, compare_freezing.json)."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

RUN = {"commit": "abc1234", "command": "python main.py --dataset ../shared/data/ag_news", "date": "2026-11-29",
       "machine": "AMD EPYC, 2 cores, bf16 instructions: no", "torch": "2.13.0+cpu", "transformers": "5.24.0"}


def results(accuracy, ner_f1, trained=None):
    return {"test": {"accuracy": accuracy, "macro_f1": accuracy - 0.001, "ner": {"f1": ner_f1}},
            "sts_spearman": 85.5, "best_epoch": 4, "train_seconds": 600.0, "precision": "no",
            "rows": {"train": 6237, "val": 694, "test": 3800}, "trained_tasks": trained, "run": RUN}


def test_results_table_has_a_row_per_run_and_its_provenance(tmp_path, capsys):
    import report

    (tmp_path / "joint").mkdir()
    (tmp_path / "joint" / "results.json").write_text(json.dumps(results(0.9092, 0.674)))
    (tmp_path / "joint" / "conll_eval.json").write_text(json.dumps({"model": {"f1": 0.621}, "spacy": {"f1": 0.58}}))
    (tmp_path / "topic_only").mkdir()
    (tmp_path / "topic_only" / "results.json").write_text(
        json.dumps(results(0.9082, 0.01, {"topic": True, "ner": False})))
    assert report.main([str(tmp_path / "joint"), str(tmp_path / "topic_only")]) == 0
    out = capsys.readouterr().out
    assert "| joint | 0.9092 | 0.9082 | 0.6740 | 0.6210 | 85.50 | 4 | 10.0 | no |" in out
    assert "| topic_only | 0.9082 | 0.9072 | — | — | 85.50 | 4 | 10.0 | no |" in out  # an untrained head: no score
    assert out.count("commit `abc1234`, `python main.py --dataset ../shared/data/ag_news`, AMD EPYC") == 2


def test_a_schedule_row_counts_both_stages_training_time(tmp_path, capsys):
    import report

    two_stage = {**results(0.909, 0.68), "schedule": {"name": "joint, then NER", "stages": [
        {"epochs": 3, "train_seconds": 1800.0}, {"epochs": 1, "frozen": "classifier"}]}}
    (tmp_path / "joint_then_ner").mkdir()
    (tmp_path / "joint_then_ner" / "results.json").write_text(json.dumps(two_stage))
    assert report.main([str(tmp_path / "joint_then_ner")]) == 0
    assert "| 4 | 40.0 | no |" in capsys.readouterr().out  # 600 s of stage 2 + 1800 s of stage 1


def test_freezing_tables_from_compare_freezing_json(tmp_path, capsys):
    import report

    row = {"strategy": "joint", "topic_accuracy": 0.88, "topic_macro_f1": 0.879, "ner_f1": 0.6, "sts_spearman": 85.0,
           "train_seconds": 100.0, "epochs": 2, "best_epoch": 2}
    stage2 = {**row, "strategy": "stage 2: classifier frozen, NER trained", "ner_f1": 0.62, "epochs": 1,
              "before": {k: row[k] for k in ("topic_accuracy", "topic_macro_f1", "ner_f1", "sts_spearman",
                                             "train_seconds")}}
    (tmp_path / "compare_freezing.json").write_text(json.dumps([row, stage2]))
    (tmp_path / "compare" / "joint").mkdir(parents=True)
    (tmp_path / "compare" / "joint" / "results.json").write_text(json.dumps(results(0.88, 0.6)))
    report.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "| joint | 0.8800 | 0.8790 | 0.6000 | 85.00 | 2 | 100 |" in out
    assert "0.6000 -> 0.6200 (+0.0200)" in out and "commit `abc1234`" in out


def test_a_folder_without_results_is_an_error(tmp_path, capsys):
    import report

    with pytest.raises(SystemExit):
        report.main([str(tmp_path)])
    assert "results.json" in capsys.readouterr().err
