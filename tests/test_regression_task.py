"""The regression kind: a number per text, read from a numeric column like any other source, trained beside other
tasks, scored (Spearman, Pearson, MSE), saved, reloaded, exported to ONNX with the head's parity and carried in the
model card. The kind is one class in tasks.py: nothing else in the project names it."""
import csv
import json

import numpy as np
import pytest
import torch
from helpers import quiet_config, tiny_sentence_transformer

from errors import InputError
from multi_task_sentence_transformer import MultiTaskSentenceTransformer
from tasks import ClassificationTask, RegressionTask, Task
from trainer_sentence_transformer import MultiTaskTrainer

SPORT = ["the", "team", "won", "the", "cup"], ["a", "late", "goal", "won", "it"], ["the", "striker", "scored"]
POLITICS = ["parliament", "passed", "the", "bill"], ["the", "minister", "resigned"], ["voters", "elect", "a", "mayor"]


def scored_csv(path, rows=60):
    """text,topic,score: sport texts score about 4, politics about 1 (a number the text determines), some empty."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "topic", "score"])
        for i in range(rows):
            words = (SPORT if i % 2 else POLITICS)[i % 3]
            writer.writerow([" ".join(words) + f" {i}", "sport" if i % 2 else "politics",
                             "" if i % 10 == 9 else f"{(4.0 if i % 2 else 1.0) + 0.01 * (i % 7):.2f}"])
    return path


def test_a_numeric_column_becomes_a_regression_task_with_its_own_scale(tmp_path):
    from task_data import load_task_source, parse_task_spec

    path = scored_csv(tmp_path / "scored.csv")
    part = load_task_source(str(path), [parse_task_spec(f"score=regression:{path}@score")], group=1)
    (task,) = part.tasks
    assert task.kind == "regression" and task.column == "score"
    values = [v for v in part.train["score"] if v is not None]
    assert task.mean == pytest.approx(sum(values) / len(values)) and 1.0 < task.std < 2.0  # the train rows' scale
    assert None in part.train["score"] + part.val["score"] + part.test["score"]  # empty cells: no value
    assert Task.from_config(json.loads(json.dumps(task.config()))).config() == task.config()
    bad = tmp_path / "bad.csv"
    bad.write_text("text,score\na,1\nb,lots\n")
    with pytest.raises(InputError, match="holds 'lots', not a number"):
        load_task_source(str(bad), [parse_task_spec(f"score=regression:{bad}@score")])


def test_loss_targets_and_decoding_use_the_standardised_scale():
    task = RegressionTask("score", mean=2.0, std=0.5)
    targets = task.targets([2.5, None, 1.0])
    assert targets[0] == pytest.approx(1.0) and torch.isnan(targets[1]) and targets[2] == pytest.approx(-2.0)
    logits = torch.tensor([[1.0], [7.0], [0.0]])
    assert task.loss(logits, targets) == pytest.approx(4.0)  # the row without a value adds nothing
    assert task.decode(task.row_prediction(torch.tensor([1.0])))["score"] == pytest.approx(2.5)
    m = task.metrics([1.0, 2.0, 3.0], [torch.tensor(1.1), torch.tensor(2.2), torch.tensor(2.9)])
    assert m["spearman"] == pytest.approx(1.0) and m["pearson"] > 0.99 and m["mse"] == pytest.approx(0.02)


def rows(repeat=6):
    out = {"words": [], "topic": [], "score": []}
    for k in range(repeat):
        for label, group in enumerate((SPORT, POLITICS)):
            for words in group:
                out["words"].append(list(words))
                out["topic"].append(label)
                out["score"].append((4.0 if label == 0 else 1.0) + 0.1 * k if k % 5 else None)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tasks = [ClassificationTask("topic", ["sport", "politics"]), RegressionTask("score", mean=2.5, std=1.5)]
    model = MultiTaskSentenceTransformer(tiny_sentence_transformer(), tasks=tasks)
    config = quiet_config(tmp_path_factory.mktemp("regression"), epochs=10, batch_size=4, lr=3e-3, head_lr=1e-2)
    history = MultiTaskTrainer(model, rows(), rows(2), config).train()
    return model, history


def test_a_regression_task_trains_beside_a_classification_task(trained):
    model, history = trained
    first, last = history[0], history[-1]
    assert last["train_loss"]["score"] < 0.5 * first["train_loss"]["score"]
    assert last["val"]["tasks"]["score"]["spearman"] > 0.7 and last["val"]["rows"]["score"] < len(rows(2)["words"])
    sport, politics = model.predict(["the team won the cup", "the minister resigned"], precision="fp32")
    assert set(sport["score"]) == {"score"} and sport["score"]["score"] > politics["score"]["score"]


def test_a_regression_head_is_saved_reloaded_and_exported_with_parity(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    model, _ = trained
    texts = ["the team won the cup", "voters elect a mayor"]
    model.save_pretrained(tmp_path / "saved")
    again = MultiTaskSentenceTransformer.from_pretrained(tmp_path / "saved")
    assert (again.tasks["score"].mean, again.tasks["score"].std) == (2.5, 1.5)
    assert again.predict(texts, precision="fp32") == model.eval().predict(texts, precision="fp32")
    model.export_fast(tmp_path / "fast")
    fast = MultiTaskSentenceTransformer.from_pretrained(tmp_path / "fast")
    words = [t.split() for t in texts]
    for ref, got in zip(model.run_words(words, precision="fp32"), fast.run_words(words, precision="fast")):
        assert np.allclose(ref["score"], got["score"], atol=1e-3)  # the head's number, through ONNX Runtime
    card = (tmp_path / "saved" / "README.md").read_text()
    assert "**score** (regression): a number per text" in card


@pytest.mark.slow
def test_main_trains_a_regression_task_from_a_csv_column_beside_the_default_pair(tiny_model_dir, ag_news_dir,
                                                                                 tmp_path, monkeypatch, capsys):
    import main

    path = scored_csv(tmp_path / "scored.csv", rows=80)
    monkeypatch.chdir(tmp_path)
    main.main(["--model-name", str(tiny_model_dir), "--dataset", ag_news_dir, "--max-train-rows", "200",
               "--max-test-rows", "60", "--epochs", "2", "--batch-size", "8", "--lr", "5e-4", "--output-dir", "out",
               "--tasks", "topic", "ner", f"score=regression:{path}@score"])
    printed = capsys.readouterr().out
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    scored = results["test"]["tasks"]["score"]
    assert set(scored) == {"spearman", "pearson", "mse"} and results["test"]["rows"]["score"] > 0
    assert "score      Spearman" in printed and results["task_sources"]["score"] == str(path)
    model = MultiTaskSentenceTransformer.from_pretrained(tmp_path / "out" / "model")
    assert list(model.tasks) == ["topic", "ner", "score"]
    assert isinstance(model.predict("the team won the cup")["score"]["score"], float)
    card = (tmp_path / "out" / "model" / "README.md").read_text()
    assert "score (regression)" in card and "Test Spearman" in card
