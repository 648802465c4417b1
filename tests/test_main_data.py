"""main.py on a user's own data: a CSV with string labels and no test split, gold NER files, the data flags."""
import json

import pytest
from helpers import flag_error
from test_main import run_main


@pytest.fixture(scope="module")
def bbc_run(tmp_path_factory, tiny_model_dir, bbc_csv):
    cwd = tmp_path_factory.mktemp("bbc_run")
    proc = run_main(["--dataset", bbc_csv, "--label-column", "category", "--model-name", str(tiny_model_dir),
                     "--max-train-rows", "40", "--max-test-rows", "10", "--epochs", "1", "--batch-size", "8",
                     "--max-length", "64", "--output-dir", "out", "--save-every-minutes", "0"], cwd)
    return cwd, proc


@pytest.mark.slow
def test_a_csv_with_string_labels_trains_and_keeps_its_class_names(bbc_run):
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    cwd, proc = bbc_run
    results = json.loads((cwd / "out" / "results.json").read_text())
    assert results["rows"] == {"train": 36, "val": 4, "test": 10}
    assert results["test"]["rows"] == {"topic": 10, "ner": 10}
    assert len(results["test"]["confusion_matrix"]) == 2  # two classes, not AG News's four
    assert "2 classes ['Politics', 'Sports']; AG News cleaning off" in proc.stdout
    model = MultiTaskSentenceTransformer.from_pretrained(cwd / "out" / "model")
    assert model.label_names == ["Politics", "Sports"] and model.clean is False
    assert model.predict("the prime minister spoke in parliament")["topic"]["label"] in ("Politics", "Sports")
    predicted = run_main(["--output-dir", "out", "--predict", "labour wins the vote"], cwd)
    assert "-> topic: Politics" in predicted.stdout or "-> topic: Sports" in predicted.stdout


@pytest.mark.slow
def test_gold_ner_files_join_training_as_ner_only_rows(tmp_path, ag_news_dir, tiny_model_dir, conll_valid):
    import math

    from multi_task_sentence_transformer import MultiTaskSentenceTransformer
    from ner_tags import CONLL_TAGS

    sentences = open(conll_valid).read().split("\n\n")[:61]  # sentences and -DOCSTART- blocks
    n = sum(not s.strip().startswith("-DOCSTART-") for s in sentences)
    gold_val = math.ceil(0.1 * n)  # VAL_FRACTION of the gold sentences (datasets' train_test_split rounds up)
    gold = tmp_path / "gold.txt"
    gold.write_text("\n\n".join(sentences) + "\n")
    proc = run_main(["--dataset", ag_news_dir, "--model-name", str(tiny_model_dir), "--max-train-rows", "40",
                     "--max-test-rows", "12", "--epochs", "1", "--batch-size", "8", "--ner-data", str(gold),
                     "--ner-types", "conll", "--output-dir", "out", "--save-every-minutes", "0"], tmp_path)
    data_line = next(line for line in proc.stdout.splitlines() if line.startswith("data:"))
    assert data_line.startswith(f"data: {36 + n - gold_val} train / {4 + gold_val} validation / 12 test rows "
                                f"(+ {n - gold_val} / {gold_val} gold NER-only sentences"), data_line
    model = MultiTaskSentenceTransformer.from_pretrained(tmp_path / "out" / "model")
    assert model.tags == list(CONLL_TAGS)  # silver rows mapped onto CoNLL's types: one tag list for both sources
    history = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert history[0]["val"]["rows"] == {"topic": 4, "ner": 4 + gold_val}  # gold validation sentences are scored for NER only
    evaluated = run_main(["--output-dir", "out", "--eval-conll", str(gold)], tmp_path)
    per_type = json.loads((tmp_path / "out" / "conll_eval.json").read_text())["spacy"]["per_type"]
    assert set(per_type) <= {"PER", "ORG", "LOC", "MISC"} and per_type  # the teacher's spaCy types were mapped
    assert "micro" in evaluated.stdout


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--ner-types", "ontonotes"], "--ner-types must be one of spacy, conll"),
    (["--clean-text", "maybe"], "--clean-text must be one of auto, true, false"),
    (["--test-fraction", "1.5"], "--test-fraction must be between 0 and 1"),
    (["--ner-data", "no/such/gold.txt"], "--ner-data: no file at no/such/gold.txt"),
    (["--label-column", ""], "--label-column must name a column"),
])
def test_bad_data_flags_fail_before_any_work(tmp_path, monkeypatch, capsys, args, message):
    stderr = flag_error(args + ["--output-dir", "out"], tmp_path, monkeypatch, capsys)
    assert message in stderr, stderr


@pytest.mark.slow
def test_a_misspelled_label_column_names_the_columns_that_exist(tmp_path, bbc_csv):
    proc = run_main(["--dataset", bbc_csv, "--label-column", "categroy", "--output-dir", "out"], tmp_path, check=False)
    assert proc.returncode == 1
    last = proc.stderr.splitlines()[-2]
    assert "categroy" in last and "category" in last and "text" in last
    assert not (tmp_path / "out").exists() and not list((tmp_path / ".cache").glob("ner_datasets/*"))
