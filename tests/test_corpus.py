"""corpus.py: --predict-dir / --label-dir over a folder of shards on a local Ray (one Ray session for the module):
outputs equal predict() / spaCy's labels, error records, resume, a killed actor, and what --tasks / --dataset read."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import flag_error, tag_capitalised_words, tiny_multitask

import corpus
import main
import texts_and_tables

WORDS = ["Apple", "opens", "a", "store", "in", "Paris", "while", "Barack", "Obama", "visits", "Berlin", "and", "the",
         "United", "Nations", "meets", "Reuters", "reported", "on", "Friday", "Google", "buys", "London"]


def texts(n, seed):
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + "." for _ in range(n)]


def write_corpus(folder, n=25):
    """Four shards, one per format, with an id column and a bad row or two each: {shard name: [(row, text|None)]}."""
    folder.mkdir(parents=True, exist_ok=True)
    a, b, c, d = (texts(n, seed) for seed in range(4))
    pq.write_table(pa.table({"id": list(range(n + 1)), "text": a + [None]}), folder / "a.parquet")
    with open(folder / "b.csv", "w") as f:
        f.write("id,text\n" + "".join(f"b{i},{t}\n" for i, t in enumerate(b)) + "bx,\n")
    (folder / "sub").mkdir()
    with open(folder / "sub" / "c.jsonl", "w") as f:
        f.write("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(c)) + "not json\n")
    (folder / "d.txt").write_text("\n".join(d) + "\n")
    return {"a.parquet": list(enumerate(a + [None], 1)), "b.csv": list(enumerate(b + [None], 1)),
            "sub/c.jsonl": list(enumerate(c + [None], 1)), "d.txt": list(enumerate(d, 1))}


def read_output(folder):
    """Every row of every output shard, in file and row order."""
    rows = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".parquet"):
            rows += pq.read_table(folder / name).to_pylist()
    return rows


def assert_each_row_once(rows, expected):
    keys = [(r["shard"], r["row"]) for r in rows]
    assert len(keys) == len(set(keys)), "a row written twice"
    assert set(keys) == {(shard, row) for shard, items in expected.items() for row, _ in items}, "a row lost"


@pytest.fixture(scope="module")
def ray_session():
    import ray

    started = corpus.start_ray(num_cpus=2)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny model whose NER head tags capitalised runs (so entities are compared, not vacuous), saved, and its ONNX
    export."""
    folder = tmp_path_factory.mktemp("corpus_models")
    model = tag_capitalised_words(tiny_multitask(seed=3))
    model_dir = model.save_pretrained(folder / "model")
    fast_dir = model.export_fast(folder / "fast", quantize="fp32")
    return model, str(model_dir), str(fast_dir)


def run(mode, source, output, **kwargs):
    return corpus.run_corpus(mode, str(source), str(output), show_progress=False, chunk_size=7, **kwargs)


def test_importing_the_project_does_not_import_ray():
    code = ("import sys, main, serving, multi_task_sentence_transformer, corpus, task_data, create_ner_dataset; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=corpus.ROOT)


def test_shards_are_listed_from_a_folder_or_a_glob(tmp_path):
    write_corpus(tmp_path / "in")
    (tmp_path / "in" / "notes.md").write_text("not a shard")
    names = [s.name for s in corpus.list_shards(tmp_path / "in", tmp_path / "out")]
    assert names == ["a.parquet", "b.csv", "d.txt", "sub/c.jsonl"]
    outputs = [os.path.basename(s.output) for s in corpus.list_shards(tmp_path / "in", tmp_path / "out")]
    assert outputs == ["a.parquet", "b.csv.parquet", "d.txt.parquet", "sub__c.jsonl.parquet"]
    assert [s.name for s in corpus.list_shards(str(tmp_path / "in" / "*.csv"), tmp_path / "out")] == ["b.csv"]
    with pytest.raises(ValueError, match="no shard in"):
        corpus.list_shards(tmp_path / "out", tmp_path / "x")


@pytest.mark.parametrize("which", ["torch", pytest.param("onnx", marks=pytest.mark.slow)])
def test_predict_dir_equals_predict_with_error_records(ray_session, models, tmp_path, which):
    model, model_dir, fast_dir = models
    expected = write_corpus(tmp_path / "in")
    summary = run("predict", tmp_path / "in", tmp_path / "out", model_dir=model_dir if which == "torch" else fast_dir,
                  id_column="id", precision="fp32" if which == "torch" else "auto", actors=2)
    rows = read_output(tmp_path / "out")
    assert_each_row_once(rows, expected)
    assert summary["rows"] == len(rows) == 103 and summary["errors"] == 3 and summary["retried"] == {}
    by_key = {(r["shard"], r["row"]): r for r in rows}
    good = [(shard, row, text) for shard, items in expected.items() for row, text in items if text is not None]
    want = model.predict([t for _, _, t in good], precision="fp32")
    assert sum(bool(p["ner"]) for p in want) > 50  # the entities compared are real
    for (shard, row, _), p in zip(good, want):
        got = by_key[(shard, row)]
        assert got["error"] is None and got["topic"]["label"] == p["topic"]["label"]
        assert got["topic"]["score"] == pytest.approx(p["topic"]["score"], abs=1e-5)
        assert got["ner"] == p["ner"]
    assert by_key[("a.parquet", 26)]["error"] == "'text' is null" and by_key[("a.parquet", 26)]["topic"] is None
    assert by_key[("b.csv", 26)]["error"] == "empty text"
    assert by_key[("sub/c.jsonl", 26)]["error"].startswith("not valid JSON")
    assert [by_key[("a.parquet", 3)]["id"], by_key[("b.csv", 3)]["id"], by_key[("sub/c.jsonl", 3)]["id"]] == [2, "b2", "2"]
    assert by_key[("d.txt", 3)]["id"] is None
    assert not os.path.exists(tmp_path / "out" / corpus.ATTEMPTS_DIR)


@pytest.mark.slow
def test_a_rerun_redoes_missing_changed_and_foreign_shards_only(ray_session, models, tmp_path):
    _, model_dir, _ = models
    expected = write_corpus(tmp_path / "in")
    run("predict", tmp_path / "in", tmp_path / "out", model_dir=model_dir, precision="fp32")
    out = tmp_path / "out"
    os.remove(out / "b.csv.parquet")  # lost
    with open(tmp_path / "in" / "d.txt", "a") as f:  # the input changed since: its output is stale
        f.write("One more text from Paris.\n")
    expected["d.txt"].append((len(expected["d.txt"]) + 1, "One more text from Paris."))
    kept = os.stat(out / "a.parquet").st_mtime_ns
    summary = run("predict", tmp_path / "in", out, model_dir=model_dir, precision="fp32")
    assert summary["already_done"] == 2 and {s["name"] for s in summary["per_shard"]} == {"b.csv", "d.txt"}
    assert os.stat(out / "a.parquet").st_mtime_ns == kept
    assert_each_row_once(read_output(out), expected)
    summary = run("predict", tmp_path / "in", out, model_dir=model_dir, precision="auto")  # other settings: all redone
    assert summary["already_done"] == 0 and summary["rows"] == 104


@pytest.mark.slow
def test_a_killed_actor_leaves_each_row_exactly_once(ray_session, models, tmp_path):
    """SIGKILL one actor while it writes a shard: Ray restarts it, the shard is run again from its start, and every
    (shard, row) is in the output exactly once; the run says which shard it retried."""
    _, model_dir, _ = models
    folder = tmp_path / "in"
    folder.mkdir()
    expected = {}
    for k in range(4):
        shard = texts(1500, 10 + k)
        pq.write_table(pa.table({"text": shard}), folder / f"part-{k}.parquet")
        expected[f"part-{k}.parquet"] = list(enumerate(shard, 1))
    out = tmp_path / "out"
    result, said = {}, []
    runner = threading.Thread(target=lambda: result.update(run("predict", folder, out, model_dir=model_dir,
                                                               precision="fp32", actors=2, log=said.append)))
    runner.start()
    killed, deadline = None, time.time() + 120
    while killed is None and time.time() < deadline and runner.is_alive():
        tried = corpus.attempts(str(out))
        if tried:
            name, pids = sorted(tried.items())[0]
            killed = (name, pids[0])
            os.kill(pids[0], signal.SIGKILL)
        time.sleep(0.01)
    runner.join(timeout=300)
    assert killed is not None, "no actor started a shard"
    assert killed[0] not in {f for f in os.listdir(out)} or result["retried"], "killed after its shard was done"
    assert result["retried"] == {killed[0]: 2}
    assert f"{killed[0]} (2 attempts: a worker died)" in said[-1]
    rows = read_output(out)
    assert_each_row_once(rows, expected)
    assert len(rows) == 6000 and not [f for f in os.listdir(out) if f.startswith(".")]


def test_label_dir_equals_spacy_and_is_read_by_tasks_and_dataset(ray_session, tmp_path):
    from create_ner_dataset import create_dataset, label_texts, load_spacy
    from task_data import TaskSpec, load_task_source

    folder = tmp_path / "in"
    folder.mkdir()
    shards = {"p.parquet": texts(20, 1), "q.csv": texts(20, 2)}
    pq.write_table(pa.table({"text": shards["p.parquet"], "label": ["x", "y"] * 10}), folder / "p.parquet")
    with open(folder / "q.csv", "w") as f:
        f.write("text,label\n" + "".join(f"{t},{'xy'[i % 2]}\n" for i, t in enumerate(shards["q.csv"])))
    out = tmp_path / "silver"
    summary = run("label", folder, out, actors=2)
    assert summary["rows"] == 40 and summary["errors"] == 0
    rows = read_output(out)
    want = label_texts([t for name in sorted(shards) for t in shards[name]], load_spacy("en_core_web_sm"))
    assert sum(any(t != "O" for t in tags) for _, _, tags in want) > 20
    assert [(r["words"], r["word_starts"], r["ner_tags"]) for r in rows] == [tuple(w) for w in want]
    assert [r["label"] for r in rows] == ["x", "y"] * 20  # the label column travels (parquet and CSV alike)
    part = load_task_source(str(out), [TaskSpec("silver", "tagging", str(out))])
    assert len(part.train["words"]) + len(part.val["words"]) + len(part.test["words"]) == 40
    assert {t for tags in part.train["silver"] for t in tags} <= set(part.tasks[0].labels)
    files = sorted(str(out / f) for f in os.listdir(out))
    dd, _ = create_dataset(files, cache_dir=None, show_progress=False, test_fraction=0.25)
    assert dd["train"].num_rows + dd["test"].num_rows == 40
    assert run("label", folder, out)["already_done"] == 2


def test_main_predict_dir_and_its_flag_errors(ray_session, models, tmp_path, monkeypatch, capsys):
    _, model_dir, _ = models
    expected = write_corpus(tmp_path / "in")
    out = tmp_path / "out"
    assert main.main(["--model-dir", model_dir, "--predict-dir", str(tmp_path / "in"), "--output", str(out),
                      "--id-column", "id", "--actors", "1"]) == 0
    assert_each_row_once(read_output(out), expected)
    assert "103 rows of 4 shards" in capsys.readouterr().out
    before = {f: os.stat(out / f).st_mtime_ns for f in os.listdir(out)}
    with monkeypatch.context() as m:  # everything done: it says so at once, and starts no Ray
        m.setattr(corpus, "start_ray", lambda *a, **k: pytest.fail("Ray started with nothing to do"))
        start = time.perf_counter()
        assert main.main(["--model-dir", model_dir, "--predict-dir", str(tmp_path / "in"), "--output", str(out),
                          "--id-column", "id"]) == 0
        assert time.perf_counter() - start < 5
    assert capsys.readouterr().out == f"all 4 shards of {tmp_path / 'in'} are already done in {out}; nothing to do\n"
    assert {f: os.stat(out / f).st_mtime_ns for f in os.listdir(out)} == before
    empty = tmp_path / "cwd"
    empty.mkdir()
    for args, message in (
            (["--predict-dir", str(tmp_path / "nope")], "--predict-dir: no shard in"),
            (["--predict-dir", str(tmp_path / "in"), "--model-dir", str(tmp_path)], "is not a saved model folder"),
            (["--label-dir", str(tmp_path / "in"), "--actors", "-1"], "--actors must be >= 0"),
            (["--label-dir", str(tmp_path / "in"), "--id-column", "words"], "--id-column 'words' is a column"),
            (["--label-dir", str(tmp_path / "in"), "--output", str(tmp_path / "in" / "d.txt")], "is a file")):
        err = flag_error(["--model-dir", model_dir] + args if "--model-dir" not in args else args, empty,
                         monkeypatch, capsys)
        assert message in err and err.count("\n") == 1, err
    monkeypatch.setattr(corpus, "ray_available", lambda: False)
    err = flag_error(["--label-dir", str(tmp_path / "in")], empty, monkeypatch, capsys)
    assert corpus.RAY_INSTALL_HINT in err


def test_read_texts_reads_parquet_and_extra_columns(tmp_path):
    pq.write_table(pa.table({"text": ["one", None, "three"], "id": [7, 8, 9]}), tmp_path / "t.parquet")
    assert list(texts_and_tables.read_texts(str(tmp_path / "t.parquet"))) == [(1, "one", None), (2, None, "'text' is null"),
                                                                     (3, "three", None)]
    assert list(texts_and_tables.read_texts(str(tmp_path / "t.parquet"), extra_columns=["id"]))[2] == (3, "three", None,
                                                                                              {"id": 9})
    with pytest.raises(ValueError, match="--text-column"):
        list(texts_and_tables.read_texts(str(tmp_path / "t.parquet"), "body"))
