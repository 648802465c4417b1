"""Any number of tasks on one encoder: three tasks of three kinds (classification, multi-label, tagging with its own
tag set), each from its own rows, trained together; predict all and a subset in one encoder pass; reload; ONNX with
one output per head; resume after a kill; the model card's per-task entries; bad task input refused."""
import json
import os

import numpy as np
import pytest
import torch
from helpers import crash_after_saves, quiet_config, tiny_sentence_transformer

from multi_task_sentence_transformer import MultiTaskSentenceTransformer
from tasks import ClassificationTask, MultiLabelTask, TaggingTask
from trainer_sentence_transformer import MultiTaskTrainer

TOPICS = ["sport", "politics"]
FLAGS = ["money", "people", "places"]
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
# Three sources: topic rows, multi-label rows and tagged rows; none carries another source's labels.
TOPIC = [(["the", "team", "won", "the", "cup"], 0), (["parliament", "passed", "the", "bill"], 1),
         (["a", "late", "goal", "won", "it"], 0), (["the", "minister", "resigned", "today"], 1)]
FLAGGED = [(["bank", "pays", "Anna"], [0, 1]), (["Anna", "visits", "Rome"], [1, 2]),
           (["bank", "opens", "in", "Rome"], [0, 2]), (["quiet", "day"], [])]
TAGGED = [(["Anna", "lives", "in", "Rome"], ["B-PER", "O", "O", "B-LOC"]),
          (["John", "Smith", "left", "Paris"], ["B-PER", "I-PER", "O", "B-LOC"]),
          (["we", "met", "Anna"], ["O", "O", "B-PER"])]


def three_tasks():
    return [ClassificationTask("topic", TOPICS), MultiLabelTask("flags", FLAGS), TaggingTask("names", TAGS)]


def rows(repeat=4):
    """Rows of the three sources, each with only its own task's column filled (the others: 'no label')."""
    out = {"words": [], "topic": [], "flags": [], "names": [], "group": []}
    for group, (data, column) in enumerate(((TOPIC, "topic"), (FLAGGED, "flags"), (TAGGED, "names"))):
        for words, value in data * repeat:
            out["words"].append(words)
            for c in ("topic", "flags", "names"):
                out[c].append(value if c == column else {"topic": -1}.get(c))
            out["group"].append(group)
    return out


def model(seed=0):
    return MultiTaskSentenceTransformer(tiny_sentence_transformer(seed=seed), tasks=three_tasks(), task_layers=0)


def config(path, **kwargs):
    return quiet_config(path, **{"epochs": 12, "batch_size": 4, "lr": 3e-3, "head_lr": 1e-2, **kwargs})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("three")
    m = model()
    trainer = MultiTaskTrainer(m, rows(), rows(1), config(out))
    history = trainer.train()
    return m, history, out


def test_three_tasks_of_three_kinds_train_together(trained):
    m, history, _ = trained
    first, last = history[0], history[-1]
    for name in ("topic", "flags", "names"):  # every task's loss fell: none starved by the others
        assert last["train_loss"][name] < 0.5 * first["train_loss"][name], name
    val = last["val"]["tasks"]
    assert val["topic"]["accuracy"] == 1.0
    assert val["flags"]["micro_f1"] > 0.8 and 0.05 <= val["flags"]["threshold"] <= 0.95
    assert val["names"]["f1"] > 0.8
    assert last["val"]["rows"] == {"topic": 4, "flags": 4, "names": 3}  # each task on its own rows only
    assert first["epoch_rows"] == {"topic": 16, "flags": 16, "names": 12}  # what one epoch trained each task on


def test_predict_all_and_a_subset_in_one_encoder_pass(trained, monkeypatch):
    m, _, _ = trained
    calls = []
    original = m.encoder.forward
    monkeypatch.setattr(m.encoder, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    out = m.predict(["Anna visits Rome", "the team won the cup", "John Smith left Paris"])
    assert len(calls) == 1  # one batch: one encoder pass for the three heads
    assert set(out[0]) == {"topic", "flags", "names"}
    assert out[1]["topic"]["label"] == "sport"
    assert set(out[0]["flags"]["labels"]) >= {"people", "places"} and set(out[0]["flags"]["scores"]) == set(FLAGS)
    assert [(e["text"], e["type"]) for e in out[2]["names"]] == [("John Smith", "PER"), ("Paris", "LOC")]
    only = m.predict("John Smith left Paris", tasks=["names"])
    assert list(only) == ["names"] and only["names"] == out[2]["names"]
    with pytest.raises(Exception, match="no task 'ner'.*topic, flags, names"):
        m.predict("x", tasks=["ner"])


def test_reload_keeps_every_task_and_its_threshold(trained):
    m, _, out = trained
    best = MultiTaskSentenceTransformer.from_pretrained(out / "run" / "best_model") if (
        out / "run" / "best_model").exists() else MultiTaskSentenceTransformer.from_pretrained(out / "best_model")
    assert [(t.kind, t.name, t.labels) for t in best.tasks.values()] == \
        [(t.kind, t.name, t.labels) for t in m.tasks.values()]
    assert best.trained_tasks == {"topic": True, "flags": True, "names": True}
    path = out / "saved"
    m.save_pretrained(path)
    again = MultiTaskSentenceTransformer.from_pretrained(path)
    assert again.tasks["flags"].threshold == m.tasks["flags"].threshold
    texts = ["Anna visits Rome", "parliament passed the bill"]
    assert again.predict(texts, precision="fp32") == m.eval().predict(texts, precision="fp32")


def test_onnx_has_one_named_output_per_head_matching_torch(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from fast_model import FAST_CONFIG_NAME, FAST_DIR

    m, _, _ = trained
    m.export_fast(tmp_path / "fast")
    fast_config = json.loads((tmp_path / "fast" / FAST_DIR / FAST_CONFIG_NAME).read_text())
    assert fast_config["outputs"] == ["topic", "flags", "names", "sentence_embedding"]
    fast = MultiTaskSentenceTransformer.from_pretrained(tmp_path / "fast")
    words = [["Anna", "visits", "Rome"], ["the", "team", "won", "the", "cup", "in", "Paris"]]
    ref = m.eval().run_words(words, batch_size=8, precision="fp32")
    got = fast.run_words(words, batch_size=8, precision="fast")
    for a, b in zip(ref, got):  # per head: probabilities / tags agree with PyTorch
        assert np.allclose(a["topic"], b["topic"], atol=1e-4)
        assert np.allclose(a["flags"], b["flags"], atol=1e-4)
        assert a["names"] == b["names"]
    assert fast.predict("Anna visits Rome", tasks=["names"]) == m.predict("Anna visits Rome", tasks=["names"],
                                                                           precision="fp32")


def test_resume_after_a_kill_ends_where_an_uninterrupted_run_ends(tmp_path):
    full = MultiTaskTrainer(model(), rows(), rows(1), config(tmp_path / "full", epochs=3))
    full_history = full.train()
    cut = MultiTaskTrainer(model(), rows(), rows(1), config(tmp_path / "cut", epochs=3, save_every_steps=5))
    crash_after_saves(cut, 2)
    with pytest.raises(KeyboardInterrupt):
        cut.train()
    resumed = MultiTaskTrainer(model(seed=3), rows(), rows(1), config(tmp_path / "cut", epochs=3,
                                                                       save_every_steps=5, resume=True))
    history = resumed.train()
    strip = lambda h: [{k: v for k, v in r.items() if k != "train_seconds"} for r in h]  # noqa: E731
    assert strip(history) == strip(full_history)
    for (name, p), q in zip(resumed.model.named_parameters(), full.model.parameters()):
        assert torch.equal(p.detach(), q.detach()), name


def test_resume_refuses_a_run_with_other_tasks(tmp_path):
    from checkpoints import CheckpointError

    MultiTaskTrainer(model(), rows(), rows(1), config(tmp_path, epochs=1)).train()
    other = [ClassificationTask("topic", TOPICS), MultiLabelTask("flags", FLAGS),
             TaggingTask("names", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"])]
    changed = MultiTaskSentenceTransformer(tiny_sentence_transformer(), tasks=other)
    with pytest.raises(CheckpointError, match="tasks differ"):
        MultiTaskTrainer(changed, rows(), rows(1), config(tmp_path, epochs=2, resume=True)).train()


def test_model_card_has_one_entry_per_task(trained, tmp_path):
    import yaml

    from model_card import build_model_card

    m, history, _ = trained
    test = history[-1]["val"]
    card = str(build_model_card(m, {"test": test, "trained_tasks": m.trained_tasks, "flags": {"dataset": "x.csv"}}))
    meta = yaml.safe_load(card.split("---")[1])
    entries = {r["task"]["name"]: [x["name"] for x in r["metrics"]] for r in meta["model-index"][0]["results"]}
    assert entries == {"Topic classification": ["Test accuracy", "Test macro-F1"],
                       "flags (multi-label classification)": ["Test micro-F1", "Test macro-F1"],
                       "names (tagging)": ["Entity micro-F1"]}
    assert "**flags** (multilabel): 3 labels: money, people, places" in card


def test_sampling_defines_what_an_epoch_sees():
    from batching import epoch_rows

    groups = [0] * 90 + [1] * 10
    assert epoch_rows(groups, "proportional", 2.0, 0, 0) is None  # every row once
    rr = epoch_rows(groups, "round-robin", 2.0, 0, 0)
    assert len(rr) == 100 and sum(groups[i] for i in rr) == 50  # half each: the small source cycles 5 times
    assert sorted(i for i in rr if groups[i] == 1) == sorted(list(range(90, 100)) * 5)
    t = epoch_rows(groups, "temperature", 2.0, 0, 0)  # shares ~ sqrt(size): 9.49 : 3.16
    assert len(t) == 100 and sum(groups[i] for i in t) == round(100 * 10 ** 0.5 / (90 ** 0.5 + 10 ** 0.5))
    assert epoch_rows(groups, "temperature", 2.0, 0, 1) != t  # each epoch draws anew, deterministically
    assert epoch_rows(groups, "temperature", 2.0, 0, 1) == epoch_rows(groups, "temperature", 2.0, 0, 1)


def test_round_robin_trains_the_small_source_as_often_as_the_big_one(tmp_path):
    data = rows()
    big = {k: v + v[:16] * 8 for k, v in data.items()}  # the topic source 9x the others
    trainer = MultiTaskTrainer(model(), big, None, config(tmp_path, epochs=1, sampling="round-robin"))
    trainer.train()
    seen = trainer.history[0]["epoch_rows"]
    assert abs(seen["topic"] - seen["names"]) <= 1 and seen["topic"] + seen["flags"] + seen["names"] == len(big["words"])
    assert seen["names"] > 3 * 12  # the tagged source (12 rows) cycled: a third of the 172-row epoch


@pytest.mark.parametrize("make, message", [
    (lambda: [ClassificationTask("a", ["x", "y"]), TaggingTask("a", TAGS)], "share the name 'a'"),
    (lambda: [ClassificationTask("sentence_embedding", ["x", "y"])], "not one of"),
    (lambda: [TaggingTask("t", ["O", "S-PER", "E-PER"])], "tags must be BIO"),
    (lambda: [ClassificationTask("c", ["x", "x"])], "distinct"),
    (lambda: [], "at least one task"),
])
def test_bad_tasks_are_refused(make, message):
    from errors import InputError

    with pytest.raises(InputError, match=message):
        MultiTaskSentenceTransformer(tiny_sentence_transformer(), tasks=make())


def test_bad_task_rows_are_refused_naming_the_column(tmp_path):
    from errors import InputError

    bad = rows()
    bad["flags"][20] = "money"  # not a list
    with pytest.raises(InputError, match="'flags' .*row 20.*list of labels"):
        MultiTaskTrainer(model(), bad, None, config(tmp_path))
    no_rows = {k: v[:16] for k, v in rows().items()}  # only the topic source: flags and names have no rows
    with pytest.raises(InputError, match="no training row carries labels for task 'flags'.*--freeze flags"):
        MultiTaskTrainer(model(), no_rows, None, config(tmp_path))
    with pytest.raises(InputError, match="no task 'ner'"):
        MultiTaskTrainer(model(), rows(), None, config(tmp_path, task_weights={"ner": 3}))


def test_spec_parsing_refuses_what_cannot_run():
    from errors import InputError
    from task_data import parse_task_specs

    assert [s.name for s in parse_task_specs(["topic", "ner", "bbc=classification:x.csv@category"])] == \
        ["topic", "ner", "bbc"]
    for specs, message in ((["topic", "topic"], "two tasks are named 'topic'"),
                           (["x=ranking:a.csv"], "unknown kind 'ranking'"),
                           (["sentiment"], "neither topic, ner nor"),
                           (["t=tagging:a.txt@col"], "CoNLL file's last column"),
                           (["a=classification:x.csv@c", "b=multilabel:x.csv@c"], "two tasks read column 'c'")):
        with pytest.raises(InputError, match=message):
            parse_task_specs(specs)


def test_a_tagging_file_in_another_scheme_is_refused(tmp_path):
    from errors import InputError
    from task_data import load_task_source, parse_task_spec

    path = tmp_path / "bioes.txt"
    path.write_text("Anna S-PER\nlives O\n\nJohn B-PER\nSmith E-PER\n")
    with pytest.raises(InputError, match="bioes.txt:1: bad NER tag 'S-PER'"):
        load_task_source(str(path), [parse_task_spec(f"names=tagging:{path}")])


def test_a_task_from_a_csv_gets_its_own_splits_and_labels(tmp_path):
    from task_data import load_task_source, merge_rows, parse_task_spec

    csv = tmp_path / "reviews.csv"
    lines = ["text,stars,aspects"] + [f"review {i} was {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'},"
                                      f"{'price|service' if i % 3 else 'price'}" for i in range(60)]
    csv.write_text("\n".join(lines) + "\n")
    specs = [parse_task_spec(f"stars=classification:{csv}@stars"), parse_task_spec(f"aspects=multilabel:{csv}@aspects")]
    part = load_task_source(str(csv), specs, group=2)
    assert [(t.name, t.kind, t.labels) for t in part.tasks] == [("stars", "classification", ["neg", "pos"]),
                                                                  ("aspects", "multilabel", ["price", "service"])]
    sizes = [len(p["words"]) for p in (part.train, part.val, part.test)]
    assert sum(sizes) == 60 and sizes[2] == 12 and sizes[1] >= 4  # test carved (0.2), then validation (0.1)
    merged = merge_rows([part.train], [ClassificationTask("topic", TOPICS, column="label"), *part.tasks])
    assert set(merged["label"]) == {-1} and set(merged["group"]) == {2}  # no topic label on these rows
    assert all(isinstance(a, list) for a in merged["aspects"])
    os.remove(csv)


@pytest.mark.slow
def test_main_adds_a_csv_task_to_a_trained_model(reference, tiny_model_dir, ag_news_dir, tmp_path, monkeypatch,
                                                 bbc_csv):
    """--from-model: the saved model's tasks train on (distilled from it), a task from a CSV it never saw gets a new
    head; results.json and the model card report each old task's test score before and after."""
    import shutil

    import pandas as pd

    import main

    shutil.copytree(reference / ".cache", tmp_path / ".cache")  # the labelled rows of the reference run
    monkeypatch.chdir(tmp_path)
    bbc = bbc_csv
    main.main(["--model-name", str(tiny_model_dir), "--dataset", ag_news_dir, "--max-train-rows", "300",
               "--max-test-rows", "80", "--epochs", "2", "--batch-size", "8", "--lr", "5e-4", "--output-dir", "added",
               "--from-model", str(reference / "out" / "model"), "--tasks", "topic", "ner",
               f"bbc=classification:{bbc}@category"])
    results = json.loads((tmp_path / "added" / "results.json").read_text())
    record = results["from_model"]
    assert record["new_tasks"] == ["bbc"] and set(record["old_tasks"]) == {"topic", "ner"}
    before = json.loads((reference / "out" / "results.json").read_text())["test"]
    assert record["old_tasks"]["topic"]["before"] == pytest.approx(before["accuracy"], abs=0.02)  # the saved model
    assert record["old_tasks"]["topic"]["after"] == results["test"]["tasks"]["topic"]["accuracy"]
    classes = list(pd.read_csv(bbc)["category"])
    carved = sum(round(0.2 * classes.count(c)) for c in set(classes))  # TEST_FRACTION of each class
    assert results["test"]["rows"]["bbc"] == carved and results["test"]["tasks"]["bbc"]["accuracy"] > 0.6
    assert "train_soft_loss" in results["history"][0]  # the old tasks learned from the saved model's outputs
    added = MultiTaskSentenceTransformer.from_pretrained(tmp_path / "added" / "model")
    assert list(added.tasks) == ["topic", "ner", "bbc"] and added.trained_tasks == {"topic": True, "ner": True,
                                                                                       "bbc": True}
    card = (tmp_path / "added" / "model" / "README.md").read_text()
    assert "Added to the trained model in" in card and ": bbc." in card and "| topic | accuracy |" in card


def test_a_task_source_without_its_column_or_file_is_refused_before_any_work(tmp_path, monkeypatch, capsys, bbc_csv):
    from helpers import flag_error

    bbc = bbc_csv
    err = flag_error(["--tasks", "topic", "ner", f"bbc=classification:{bbc}@categry"], tmp_path, monkeypatch, capsys)
    assert "--tasks bbc:" in err and "lacks column(s) ['categry']" in err and "'category'" in err
    err = flag_error(["--tasks", "topic", "ner", "bbc=classification:nothere.csv"], tmp_path, monkeypatch, capsys)
    assert "--tasks bbc: no file or folder at nothere.csv" in err
