"""The data root: found where a user has it, names resolved under it, filled from the Hub (a stand-in here: this
machine has no Hub), and a clone with neither the root nor the Hub refused before any work with one line."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT
from main_runs import env

import data_root
from errors import InputError


@pytest.fixture
def no_root(monkeypatch, tmp_path):
    """No $MTST_DATA_ROOT and no local copy where data_root looks."""
    monkeypatch.delenv(data_root.ENV, raising=False)
    monkeypatch.setattr(data_root, "CANDIDATES", (tmp_path / "nothing" / "data", tmp_path / "nothing" / "shared"))


def test_the_root_is_the_flag_then_the_environment_then_the_first_local_copy(monkeypatch, tmp_path, no_root):
    first, second, flag = (tmp_path / n for n in ("first", "second", "flag"))
    assert data_root.find_data_root() is None and data_root.find_data_root("auto") is None
    second.mkdir()
    monkeypatch.setattr(data_root, "CANDIDATES", (first, second))
    assert data_root.find_data_root() == str(second)
    first.mkdir()
    assert data_root.find_data_root() == str(first)
    monkeypatch.setenv(data_root.ENV, str(second))
    assert data_root.find_data_root() == str(second)
    flag.mkdir()
    assert data_root.find_data_root(str(flag)) == str(flag)
    with pytest.raises(InputError, match=r"--data-root .*missing.* is not a folder.*--fetch-data"):
        data_root.find_data_root(str(tmp_path / "missing"))
    monkeypatch.setenv(data_root.ENV, str(tmp_path / "gone"))
    with pytest.raises(InputError, match=r"\$MTST_DATA_ROOT=.*gone.* is not a folder"):
        data_root.find_data_root()
    assert data_root.fetch_target("auto") == str(tmp_path / "gone") and data_root.fetch_target("x") == "x"


def test_names_resolve_under_the_root_and_paths_stay_as_given(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "conll2003").mkdir(parents=True)
    (root / "conll2003" / "valid.txt").write_text("EU B-ORG\n")
    monkeypatch.chdir(tmp_path)
    assert data_root.resolve("conll2003/valid.txt", str(root)) == str(root / "conll2003" / "valid.txt")
    assert data_root.resolve("ag_news", str(root)) == "ag_news"  # not under the root: a Hub id, as given
    assert data_root.resolve("ag_news", None) == "ag_news"
    (tmp_path / "conll2003").mkdir()
    (tmp_path / "conll2003" / "valid.txt").write_text("mine\n")
    assert data_root.resolve("conll2003/valid.txt", str(root)) == "conll2003/valid.txt"  # the user's own file wins
    assert data_root.resolve(str(tmp_path / "x.csv"), str(root)) == str(tmp_path / "x.csv")


def test_main_reads_the_default_dataset_from_the_root_as_the_explicit_path_did(monkeypatch, tmp_path, data_root_dir):
    """`python main.py` with a data root reads the folder `--dataset <root>/ag_news` named (same files, same cache)."""
    import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(data_root.ENV, str(data_root_dir))
    data = main.parse_args([]).data
    assert data.dataset == str(data_root_dir / "ag_news") and data.data_root == str(data_root_dir)
    recipe = main.parse_args(["--eval-conll", "conll2003/valid.txt", "--ner-data", "conll2003/train.txt"])
    assert recipe.serving.eval_conll == str(data_root_dir / "conll2003" / "valid.txt")
    assert recipe.data.ner_data == (str(data_root_dir / "conll2003" / "train.txt"),)


class FakeHub:
    """datasets.load_dataset's stand-in: tiny datasets shaped like the Hub's (this machine has no Hub)."""

    def __init__(self, broken=()):
        self.broken, self.calls = broken, []

    def __call__(self, hub_id, split=None, revision=None):
        import datasets

        self.calls.append((hub_id, split, revision))
        if hub_id in self.broken:
            raise ConnectionError(f"cannot reach {hub_id}")
        if hub_id == "fancyzhx/ag_news":
            label = datasets.ClassLabel(names=["World", "Sports", "Business", "Sci/Tech"])
            features = datasets.Features({"text": datasets.Value("string"), "label": label})
            rows = {"text": [f"text {i}" for i in range(8)], "label": [i % 4 for i in range(8)]}
            return datasets.DatasetDict({s: datasets.Dataset.from_dict(rows, features=features)
                                         for s in ("train", "test")})
        if hub_id == "eriktks/conll2003":
            ner = datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC",
                                                              "I-LOC", "B-MISC", "I-MISC"]))
            pos = datasets.Sequence(datasets.ClassLabel(names=["NNP", "VBZ", "."]))
            features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")), "pos_tags": pos,
                                          "chunk_tags": pos, "ner_tags": ner})
            rows = {"tokens": [["EU", "rejects", "Peter", "Blackburn", "."]], "pos_tags": [[0, 1, 0, 0, 2]],
                    "chunk_tags": [[0, 1, 0, 0, 2]], "ner_tags": [[3, 0, 1, 2, 0]]}
            return datasets.DatasetDict({s: datasets.Dataset.from_dict(rows, features=features)
                                         for s in ("train", "validation", "test")})
        assert (hub_id, split) == ("sentence-transformers/stsb", "validation")
        return datasets.Dataset.from_dict({"sentence1": ["A man plays.", "A cat\tsits."],
                                           "sentence2": ["A man is playing.", "A dog runs."], "score": [0.9, 0.1]})


def test_fetch_writes_the_layout_the_project_reads(tmp_path):
    import datasets

    from conll import read_conll
    from sts_benchmark import read_sts

    root = tmp_path / "data"
    hub = FakeHub()
    report = data_root.fetch(str(root), load_dataset=hub)
    assert report == {"ag_news": "written", "conll2003": "written", "stsbenchmark": "written"}
    ag = datasets.load_dataset(str(root / "ag_news"))
    assert ag["train"].num_rows == ag["test"].num_rows == 8
    assert ag["train"].features["label"].names == ["World", "Sports", "Business", "Sci/Tech"]
    assert read_conll(root / "conll2003" / "valid.txt") == [(["EU", "rejects", "Peter", "Blackburn", "."],
                                                              ["B-ORG", "O", "B-PER", "I-PER", "O"])]
    assert (root / "conll2003" / "train.txt").read_text().splitlines()[2] == "EU NNP NNP B-ORG"
    pairs = read_sts(root / "stsbenchmark" / "sts-dev.csv")
    assert pairs == [("A man plays.", "A man is playing.", 4.5), ("A cat sits.", "A dog runs.", 0.5)]
    assert ("eriktks/conll2003", None, "refs/convert/parquet") in hub.calls  # the script dataset's parquet copy
    assert data_root.fetch(str(root), load_dataset=FakeHub(broken=("fancyzhx/ag_news",)))["ag_news"] == \
        "kept (already there)"  # a second fetch keeps what is there


def test_a_failed_fetch_leaves_no_half_written_folder(tmp_path):
    root = tmp_path / "data"
    report = data_root.fetch(str(root), load_dataset=FakeHub(broken=("eriktks/conll2003",)))
    assert report["conll2003"].startswith("failed: ConnectionError") and report["ag_news"] == "written"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["ag_news", "stsbenchmark"]
    assert not [p for p in root.iterdir() if ".tmp-" in p.name]


def test_fetch_data_mode_says_what_failed_and_exits_1(tmp_path, monkeypatch, capsys):
    import datasets

    import hub
    import main

    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", FakeHub(broken=("sentence-transformers/stsb",)))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError, match=r"could not fetch stsbenchmark into .*root.*--fetch-data again"):
        main.main(["--fetch-data", "--data-root", str(tmp_path / "root")])
    printed = capsys.readouterr().out
    assert "ag_news: written" in printed and "stsbenchmark: failed: ConnectionError" in printed


def test_fetch_data_offline_says_so_at_once_and_writes_nothing(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--fetch-data", "--data-root", str(tmp_path / "r")],
                          cwd=tmp_path, capture_output=True, text=True, env=env(), timeout=300)
    assert proc.returncode == 1 and not (tmp_path / "r").exists()
    assert proc.stderr.startswith("error: --fetch-data needs the Hugging Face Hub, which is not reachable"), proc.stderr


def test_sts_pairs_from_the_root_then_the_hub_else_not_measured(tmp_path, monkeypatch, sts_dev):
    import datasets

    import hub
    import sts_benchmark

    root = tmp_path / "root"
    (root / "stsbenchmark").mkdir(parents=True)
    shutil.copy(sts_dev, root / "stsbenchmark" / "sts-dev.csv")
    pairs, source = sts_benchmark.sts_pairs(str(root))
    assert len(pairs) == len(open(sts_dev).readlines()) and source == str(root / "stsbenchmark" / "sts-dev.csv")
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    pairs, source = sts_benchmark.sts_pairs(None)
    assert pairs is None and source.startswith("not measured: no stsbenchmark") and "--fetch-data" in source
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", FakeHub())
    pairs, source = sts_benchmark.sts_pairs(None)
    assert pairs[0] == ("A man plays.", "A man is playing.", 4.5) and source.startswith("hub:sentence-transformers")
    monkeypatch.setattr(datasets, "load_dataset", FakeHub(broken=("sentence-transformers/stsb",)))
    assert sts_benchmark.sts_pairs(None) == (None, "not measured: the Hub's sentence-transformers/stsb could not "
                                                   "be loaded (ConnectionError)")


def stranger_clone(tmp_path):
    """The repository's tracked files in a folder with no data beside it (as a user's clone)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    clone = tmp_path / "elsewhere" / "project"
    for name in files + ["data_root.py"]:
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, clone / name)
    return clone


def stranger_env(tmp_path):
    environment = {k: v for k, v in env().items() if k not in (data_root.ENV, "SHARED_DATA")}
    return dict(environment, HF_DATASETS_CACHE=str(tmp_path / "empty_cache"))


def test_a_clone_without_data_or_hub_is_told_the_fetch_command_in_one_line(tmp_path):
    clone = stranger_clone(tmp_path)
    proc = subprocess.run([sys.executable, "main.py"], cwd=clone, capture_output=True, text=True,
                          env=stranger_env(tmp_path), timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "python main.py --fetch-data" in lines[0] and "--dataset ag_news" in lines[0], lines
    assert sorted(p.name for p in clone.iterdir()) == sorted(p.name for p in stranger_clone(tmp_path / "b").iterdir())


@pytest.mark.slow
def test_a_clone_without_data_trains_on_the_user_s_csv(tmp_path, tiny_model_dir, bbc_csv):
    """A user's clone, nothing beside it and no Hub: their own CSV trains; STS-B is recorded as not measured."""
    clone = stranger_clone(tmp_path)
    rows = open(bbc_csv, encoding="utf-8", newline="").read().splitlines(True)
    classes = [row.split(",", 1)[0] for row in rows[1:81]]
    (tmp_path / "my.csv").write_text("".join(rows[:81]), encoding="utf-8")
    proc = subprocess.run([sys.executable, "main.py", "--dataset", str(tmp_path / "my.csv"), "--label-column",
                           "category", "--epochs", "1", "--model-name", str(tiny_model_dir), "--max-length", "64"],
                          cwd=clone, capture_output=True, text=True, env=stranger_env(tmp_path), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((clone / "outputs" / "default" / "results.json").read_text())
    assert results["sts_spearman"] is None and results["sts_source"].startswith("not measured")
    test_rows = sum(max(1, round(0.2 * classes.count(c))) for c in set(classes))  # TEST_FRACTION of each class
    assert results["rows"]["test"] == test_rows and 0 <= results["test"]["accuracy"] <= 1
    assert "not measured" in (clone / "outputs" / "default" / "model" / "README.md").read_text()
    assert not os.path.exists(clone / "data")


def test_the_default_run_keeps_its_size_on_a_full_size_source_and_all_rows_takes_every_row(tmp_path, monkeypatch,
                                                                                           capsys):
    """A data root with a full-size AG News (here 12,000 / 5,000 rows): `python main.py`'s data is the default sample
    (MAX_TRAIN_ROWS / MAX_TEST_ROWS, the development copy's 6,931 / 3,800), said in one line, and only the sample is
    labelled; --all-rows takes every row. (spaCy is replaced by a stand-in that counts the texts it labels.)"""
    from synthetic_data import write_ag_news

    import create_ner_dataset
    import experiment
    import main

    write_ag_news(tmp_path / "root" / "ag_news", train_rows=12000, test_rows=5000)
    labelled = []

    def count(texts, *args, **kwargs):
        labelled.append(len(texts))
        return [([], [], []) for _ in texts]

    monkeypatch.setattr(create_ner_dataset, "label_texts", count)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(data_root.ENV, str(tmp_path / "root"))
    train, val, test, _ = experiment.load_data(main.parse_args([]))
    assert (len(train) + len(val), len(test)) == (main.MAX_TRAIN_ROWS, main.MAX_TEST_ROWS) == (6931, 3800)
    assert labelled == [6931, 3800]
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sample:")]
    assert printed == ["sample: 6,931 of 12,000 train rows and 3,800 of 5,000 test rows (stratified, seeded: "
                       "max_train_rows / max_test_rows, main.py's MAX_TRAIN_ROWS / MAX_TEST_ROWS; --all-rows uses "
                       "every row)"]
    train, val, test, _ = experiment.load_data(main.parse_args(["--all-rows"]))
    assert (len(train) + len(val), len(test)) == (12000, 5000) and labelled[2:] == [12000, 5000]
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("sample:")]
    experiment.load_data(main.parse_args([]))  # the sample again, from the cache: the line is said again
    assert len([line for line in capsys.readouterr().out.splitlines() if line.startswith("sample:")]) == 1
    assert len(labelled) == 4
