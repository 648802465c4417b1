"""main.py --compare-freezing end to end on the tests' data root and real spaCy with a tiny random encoder: the six
strategies, the two-stage schedules (stage 2 starts from the joint model, the frozen head stays bit-identical) and
compare_freezing.json / .md / .png."""
import json
import math

import pytest
import torch

STRATEGIES = ["joint", "topic only", "NER only", "encoder frozen", "stage 2: classifier frozen, NER trained",
              "stage 2: NER head frozen, topic trained"]
SCORES = ("topic_accuracy", "topic_macro_f1", "ner_f1", "sts_spearman")


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory, ag_news_dir, tiny_model_dir, sts_dev):
    """main.main(--compare-freezing) in this process, scoring STS on the first 200 real STS-B dev pairs (the full
    1,500 take most of the run's time with a tiny encoder) and on one thread (a tiny model's steps are thread-overhead
    bound: much slower with two on a busy machine). Returns (output folder, printed text)."""
    import contextlib
    import io

    import main

    cwd = tmp_path_factory.mktemp("compare")
    (cwd / "root" / "stsbenchmark").mkdir(parents=True)  # a data root holding the first 200 STS pairs only
    sts = cwd / "root" / "stsbenchmark" / "sts-dev.csv"
    with open(sts_dev, encoding="utf-8") as f:
        sts.write_text("".join(f.readlines()[:200]), encoding="utf-8")
    args = ["--dataset", ag_news_dir, "--model-name", str(tiny_model_dir), "--compare-freezing", "--max-train-rows",
            "60", "--max-test-rows", "24", "--epochs", "1", "--stage2-epochs", "1", "--lr", "5e-4",
            "--output-dir", str(cwd / "out"), "--data-root", str(cwd / "root")]
    threads, printed = torch.get_num_threads(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.chdir(cwd)
        torch.set_num_threads(1)
        try:
            assert main.main(args) == 0
        finally:
            torch.set_num_threads(threads)
    return cwd / "out", printed.getvalue()


def heads_and_encoder(path):
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    model = MultiTaskSentenceTransformer.from_pretrained(path)
    return {"topic": dict(model.heads["topic"].named_parameters()), "ner": dict(model.heads["ner"].named_parameters()),
            "encoder": dict(model.encoder.named_parameters())}


def changed(before, after):
    """Names of the parameters that are not bit-identical."""
    assert before.keys() == after.keys()
    return [name for name in before if not torch.equal(before[name], after[name])]


@pytest.mark.slow
@pytest.mark.parametrize("folder, frozen, trained", [("stage2_classifier_frozen", "topic", "ner"),
                                                     ("stage2_ner_frozen", "ner", "topic")])
def test_stage2_keeps_the_frozen_head_bit_identical_and_trains_the_rest(compare_run, folder, frozen, trained):
    out, _ = compare_run
    stage1 = heads_and_encoder(out / "compare" / "joint" / "best_model")
    stage2 = heads_and_encoder(out / "compare" / folder / "model")
    assert changed(stage1[frozen], stage2[frozen]) == []  # started from the joint model, and never moved
    assert len(changed(stage1[trained], stage2[trained])) == len(stage1[trained])  # every tensor of it trained
    assert changed(stage1["encoder"], stage2["encoder"])  # the shared encoder moved under the frozen head
    results = json.loads((out / "compare" / folder / "results.json").read_text())
    assert len(results["history"]) == 1  # --stage2-epochs 1


@pytest.mark.slow
def test_compare_freezing_json_has_every_strategy_with_scores(compare_run):
    out, printed = compare_run
    rows = json.loads((out / "compare_freezing.json").read_text())
    assert [r["strategy"] for r in rows] == STRATEGIES
    for r in rows:
        for key in ("topic_accuracy", "topic_macro_f1", "ner_f1"):
            assert 0 <= r[key] <= 1, (r["strategy"], key)
        assert -100 <= r["sts_spearman"] <= 100 and not math.isnan(r["sts_spearman"])
        assert r["train_seconds"] > 0
    by_name = {r["strategy"]: r for r in rows}
    # each row is its run's test result; stage-2 rows carry the joint run's (stage 1) scores as `before`
    for name, folder in (("joint", "joint"), ("NER only", "ner_only"), ("stage 2: NER head frozen, topic trained",
                                                                         "stage2_ner_frozen")):
        results = json.loads((out / "compare" / folder / "results.json").read_text())
        assert by_name[name]["topic_accuracy"] == results["test"]["accuracy"]
        assert by_name[name]["ner_f1"] == results["test"]["ner"]["f1"]
        assert by_name[name]["sts_spearman"] == results["sts_spearman"]
    for name in STRATEGIES[4:]:
        assert by_name[name]["before"] == {k: by_name["joint"][k] for k in (*SCORES, "train_seconds")}
        assert by_name[name]["epochs"] == 1
    assert not any("before" in r for r in rows[:4])
    table = (out / "compare_freezing.md").read_text().splitlines()
    first = table.index(next(line for line in table if line.startswith("| strategy")))
    assert [line.split(" | ")[0].lstrip("| ") for line in table[first + 2:first + 8]] == STRATEGIES
    assert sum(line.startswith("| stage 2:") for line in table) == 4  # in both tables
    assert (out / "compare_freezing.png").stat().st_size > 1000
    assert "compare_freezing.md" in printed and "| stage 2: NER head frozen, topic trained |" in printed


@pytest.mark.slow
def test_the_frozen_encoder_keeps_its_weights_and_sts_score(compare_run, tiny_model_dir):
    """The `encoder frozen` row's encoder is the untrained one: same weights, and the STS score the others move from."""
    out, _ = compare_run
    from sentence_transformer import SentenceTransformer

    original = dict(SentenceTransformer(str(tiny_model_dir)).named_parameters())
    frozen = heads_and_encoder(out / "compare" / "encoder_frozen" / "model")["encoder"]
    assert changed(original, frozen) == []
    rows = {r["strategy"]: r for r in json.loads((out / "compare_freezing.json").read_text())}
    assert rows["joint"]["sts_spearman"] != rows["encoder frozen"]["sts_spearman"]


def test_without_the_sts_benchmark_the_run_goes_on_and_says_not_measured(tmp_path, monkeypatch, ag_news_dir,
                                                                         tiny_model_dir, capsys):
    """No STS Benchmark file under the data root and no Hub: the run trains, and results.json, the printout and the
    model card say "not measured" (a user's machine has neither; it used to stop every run)."""
    import main

    root = tmp_path / "empty_root"
    root.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no Hub, without a network probe
    assert main.main(["--dataset", ag_news_dir, "--model-name", str(tiny_model_dir), "--max-train-rows", "60",
                      "--max-test-rows", "24", "--epochs", "1", "--output-dir", "out", "--data-root", str(root)]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["sts_spearman"] is None and results["sts_source"].startswith("not measured: no stsbenchmark")
    assert "--fetch-data" in results["sts_source"]
    printed = capsys.readouterr().out
    assert "STS-B check skipped: not measured" in printed and "Spearman x100 of encode()  not measured" in printed
    card = (tmp_path / "out" / "model" / "README.md").read_text()
    assert "STS Benchmark dev (is the encoder still a good sentence embedder?): not measured" in card
    assert "spearmanr" not in card  # no STS entry in the model-index


def test_stage2_epochs_must_be_positive(tmp_path, monkeypatch, ag_news_dir, tiny_model_dir):
    import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="--stage2-epochs must be >= 1"):
        main.main(["--dataset", ag_news_dir, "--model-name", str(tiny_model_dir), "--max-train-rows", "60",
                   "--max-test-rows", "24", "--compare-freezing", "--stage2-epochs", "0", "--output-dir", "out"])
    assert not (tmp_path / "out").exists() and not (tmp_path / ".cache").exists()  # before any labelling
