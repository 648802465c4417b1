"""main.py end to end: the real packaged encoder, real spaCy and the tests' data root, on a few dozen rows."""
import json
import os
import re
import subprocess
import sys

import pytest
from helpers import flag_error, tag_capitalised_words
from main_runs import ROOT, env

MAIN = str(ROOT / "main.py")


def run_main(args, cwd, check=True, timeout=600, **extra_env):
    proc = subprocess.run([sys.executable, MAIN, *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(env(), **extra_env), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"main.py {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, ag_news_dir):
    cwd = tmp_path_factory.mktemp("main_run")
    proc = run_main(["--dataset", ag_news_dir, "--max-train-rows", "60", "--max-test-rows", "24", "--epochs", "1",
                     "--output-dir", "out", "--save-every-steps", "0"], cwd)
    return cwd, proc


@pytest.mark.slow
def test_default_flags_run_end_to_end(small_run):
    cwd, proc = small_run
    out = cwd / "out"
    results = json.loads((out / "results.json").read_text())
    assert results["rows"] == {"train": 54, "val": 6, "test": 24}
    matrix = results["test"]["confusion_matrix"]
    assert sum(map(sum, matrix)) == 24  # every test row scored once
    assert results["test"]["accuracy"] == sum(matrix[i][i] for i in range(4)) / 24
    assert set(results["test"]["ner"]) == {"precision", "recall", "f1", "per_type"}
    assert 50 < results["sts_spearman"] <= 100  # STS-B dev of encode(): the packaged encoder, briefly trained
    for name in ("model/heads.safetensors", "model/encoder/model.safetensors", "metrics.jsonl",
                 "training_curves.png", "confusion_matrix.png"):
        assert (out / name).exists(), name
    assert re.search(r"topic +accuracy 0\.\d{4}", proc.stdout) and re.search(r"ner +entity P/R/F1", proc.stdout)
    assert "Example predictions" in proc.stdout and "-> topic: " in proc.stdout
    assert "wall time" in proc.stdout


@pytest.mark.slow
def test_saved_model_loads_and_predicts(small_run):
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    cwd, _ = small_run
    model = MultiTaskSentenceTransformer.from_pretrained(cwd / "out" / "model")
    text = "Apple opens a store in Paris, France."
    p = model.predict(text)
    assert p["topic"]["label"] in model.label_names and 0 < p["topic"]["score"] <= 1
    # a briefly trained head may tag nothing: with one that tags capitalised words, the offsets are really checked
    entities = tag_capitalised_words(model).predict(text)["ner"]
    assert [(e["text"], text[e["start"]:e["end"]]) for e in entities] == [(w, w) for w in ("Apple", "Paris", "France")]


@pytest.mark.slow
def test_predict_and_eval_conll_modes(small_run, conll_valid):
    cwd, _ = small_run
    proc = run_main(["--output-dir", "out", "--predict", "Apple opens a store in Paris."], cwd)
    assert "->" in proc.stdout and any(name in proc.stdout for name in ("World", "Sports", "Business", "Sci/Tech"))
    lines = open(conll_valid).read().split("\n\n")[:40]  # a few documents' worth of sentences
    small = cwd / "small_conll.txt"
    small.write_text("\n\n".join(lines) + "\n")
    proc = run_main(["--output-dir", "out", "--eval-conll", str(small)], cwd)
    assert "micro" in proc.stdout and "spaCy P" in proc.stdout
    result = json.loads((cwd / "out" / "conll_eval.json").read_text())
    micro = next(line for line in proc.stdout.splitlines() if line.startswith("micro")).split()[1:]
    assert micro == [f"{result[who][k]:.3f}" for who in ("model", "spacy") for k in ("precision", "recall", "f1")]
    assert result["spacy"]["f1"] > 0.3  # the teacher really tagged the gold words


@pytest.mark.slow
def test_second_run_reuses_cached_dataset(small_run, ag_news_dir):
    cwd, _ = small_run
    proc = run_main(["--dataset", ag_news_dir, "--max-train-rows", "60", "--max-test-rows", "24", "--epochs", "1",
                     "--output-dir", "out"], cwd)
    assert "labelling" not in proc.stdout  # the cache was hit; spaCy never ran
    assert "resumed from" in proc.stdout  # the finished run was not trained again


def test_help_lists_flags_with_defaults(monkeypatch, capsys):
    import main

    monkeypatch.setenv("COLUMNS", "200")  # wide: no default is wrapped across lines
    with pytest.raises(SystemExit) as exit_info:
        main.parse_args(["--help"])
    help_text = capsys.readouterr().out
    assert exit_info.value.code == 0
    for flag in ("--model-name", "--pooling", "--dataset", "--epochs", "--freeze-encoder", "--mixed-precision",
                 "--output-dir", "--compare-freezing", "--eval-conll", "--predict"):
        assert flag in help_text, flag
    # each flag's help line ends with the exact default written at the top of main.py
    shown = dict(re.findall(r"^  (--[a-z0-9-]+).*?\(default: ([^\n]*)\)$", help_text, re.MULTILINE | re.DOTALL))
    expected = {"--" + name.lower().replace("_", "-"): str(getattr(main, name)) for name in main.FLAG_NAMES}
    assert {flag: shown.get(flag) for flag in expected} == expected
    assert shown["--epochs"] == "4" and shown["--task-weights"] == "ner=5" and shown["--batch-size"] == "32"


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--epochs", "two"], "invalid int value"),
    (["--pooling", "median"], "--pooling must be one of mean, cls, max"),
    (["--dropped-entity-types", "DATE,FOO"], "unknown entity type"),
    (["--mixed-precision", "fp8"], "--mixed-precision must be one of"),
    (["--val-fraction", "1.5"], "--val-fraction"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--save-every-minutes", "-1"], "--save-every-minutes must be >= 0"),
    (["--eval-conll", "no/such/file.txt"], "no file at"),
    (["--no-such-flag"], "unrecognized arguments"),
])
def test_bad_flags_fail_before_any_work(tmp_path, monkeypatch, capsys, args, message):
    stderr = flag_error(args + ["--output-dir", "out"], tmp_path, monkeypatch, capsys)
    assert message in stderr, stderr


def test_a_bad_flag_stops_the_real_command_line_before_any_work(tmp_path):
    """One real process for the flag errors checked in-process above: main.py exits 2 and creates nothing."""
    proc = run_main(["--pooling", "median", "--output-dir", "out"], tmp_path, check=False)
    assert proc.returncode == 2 and "--pooling must be one of mean, cls, max" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / ".cache").exists()


@pytest.mark.slow
def test_unreachable_dataset_says_how_to_use_a_local_copy(tmp_path):
    """A Hub id that cannot be had here (offline, nothing cached): refused before any work, in one line naming the
    command that fetches the data and the way to train on one's own files."""
    proc = run_main(["--dataset", "no-such-org/no-such-dataset", "--output-dir", "out"], tmp_path, check=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "--dataset no-such-org/no-such-dataset: a Hub dataset, but the Hugging Face Hub is not reachable" in line
    assert "python main.py --fetch-data" in line and "--dataset my.csv --label-column COLUMN" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / ".cache").exists()


def test_predict_without_a_saved_model(tmp_path):
    proc = run_main(["--output-dir", "nothing_here", "--predict", "hello"], tmp_path, check=False)
    assert proc.returncode == 1 and "save_pretrained" in proc.stderr.splitlines()[-2]


def test_missing_model_dir_flag(tmp_path, monkeypatch, capsys, ag_news_dir):
    stderr = flag_error(["--dataset", ag_news_dir, "--model-name", "./no/such/model", "--max-train-rows", "20",
                         "--max-test-rows", "8", "--output-dir", "out"], tmp_path, monkeypatch, capsys)
    assert "does not exist" in stderr


@pytest.mark.slow
def test_too_few_rows_for_a_validation_split(tmp_path, ag_news_dir):
    proc = run_main(["--dataset", ag_news_dir, "--max-train-rows", "20", "--max-test-rows", "8",
                     "--output-dir", "out"], tmp_path, check=False)
    assert proc.returncode == 1 and "--max-train-rows" in proc.stderr.splitlines()[-2]



@pytest.mark.slow
def test_a_run_writes_its_results_and_its_model_card_once(tiny_model_dir, ag_news_dir, tmp_path, monkeypatch):
    """results.json and the model folder (with its card, the run's metrics in it) are written once per run, a
    --from-model run too (its before / after scores are in both); the card is never rewritten after."""
    import experiment
    import main
    import model_card
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    writes = []
    save, atomic = MultiTaskSentenceTransformer.save_pretrained, experiment.write_text_atomic
    monkeypatch.setattr(MultiTaskSentenceTransformer, "save_pretrained", lambda self, path, *a, **k: writes.append(
        os.path.basename(str(path))) or save(self, path, *a, **k))
    monkeypatch.setattr(experiment, "write_text_atomic", lambda path, text: writes.append(os.path.basename(path))
                        or atomic(path, text))
    monkeypatch.setattr(model_card, "write_model_card", lambda *a, **k: writes.append("card rewritten"))
    monkeypatch.chdir(tmp_path)
    base = ["--model-name", str(tiny_model_dir), "--dataset", ag_news_dir, "--max-train-rows", "60",
            "--max-test-rows", "20", "--epochs", "1", "--save-every-steps", "0"]
    main.main(base + ["--output-dir", "first"])
    first, writes[:] = list(writes), []
    main.main(base + ["--output-dir", "second", "--from-model", "first/model"])
    for run in (first, writes):  # the model folder, then results.json, each once (best_model is the trainer's)
        assert [w for w in run if w in ("model", "results.json", "card rewritten")] == ["model", "results.json"], run
    results = json.loads((tmp_path / "second" / "results.json").read_text())
    assert results["from_model"]["old_tasks"]["topic"]["before"] is not None
    assert "Added to the trained model" in (tmp_path / "second" / "model" / "README.md").read_text()
