"""SIGKILL at random points (labelling, training, checkpoint writing), rerun, and the result equals an uninterrupted run.

main.py runs on the real shared data and real spaCy with a tiny random encoder saved as a local model directory,
so a whole run takes seconds.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from helpers import tiny_sentence_transformer

ARGS = ["--max-train-rows", "300", "--max-test-rows", "80", "--epochs", "2", "--batch-size", "8",
        "--save-every-steps", "1", "--lr", "5e-4", "--output-dir", "out"]


def command(model_dir, data_dir):
    return [sys.executable, str(ROOT / "main.py"), "--model-name", str(model_dir), "--dataset", data_dir, *ARGS]


def env():
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def comparable(results):
    """What must be identical between runs: test metrics and the per-epoch history without wall times."""
    history = [{k: v for k, v in r.items() if k != "train_seconds"} for r in results["history"]]
    return results["test"], history, results["best_epoch"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_model") / "bert"
    model = tiny_sentence_transformer(max_length=128)
    model.encoder.save_pretrained(path)
    model.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir, ag_news_dir):
    cwd = tmp_path_factory.mktemp("reference")
    subprocess.run(command(tiny_model_dir, ag_news_dir), cwd=cwd, env=env(), check=True, capture_output=True)
    return cwd


def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, tiny_model_dir, ag_news_dir, reference):
    rng = random.Random(1234)
    kills, attempts = 0, 0
    while True:
        attempts += 1
        assert attempts < 30, "the run never finished"
        proc = subprocess.Popen(command(tiny_model_dir, ag_news_dir), cwd=tmp_path, env=env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        delay = rng.uniform(3.0, 9.0) if kills < 5 else None
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        assert proc.returncode == 0, proc.stderr.read()[-3000:]
        break
    assert kills >= 3
    ours = json.loads((tmp_path / "out" / "results.json").read_text())
    theirs = json.loads((reference / "out" / "results.json").read_text())
    assert comparable(ours) == comparable(theirs)
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name or ".old-" in p.name]
    assert not leftovers, leftovers


def test_partial_checkpoint_is_refused_with_a_fix(tmp_path, tiny_model_dir, ag_news_dir, reference):
    import shutil

    shutil.copytree(reference / "out", tmp_path / "out")
    shutil.copytree(reference / ".cache", tmp_path / ".cache")
    (tmp_path / "out" / "checkpoints" / "last" / "training_state.pt").write_bytes(b"torn")
    proc = subprocess.run(command(tiny_model_dir, ag_news_dir), cwd=tmp_path, env=env(), capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert "delete" in proc.stderr and "checkpoints" in proc.stderr


def test_resume_with_other_settings_is_refused(tmp_path, tiny_model_dir, ag_news_dir, reference):
    import shutil

    shutil.copytree(reference / "out", tmp_path / "out")
    shutil.copytree(reference / ".cache", tmp_path / ".cache")
    proc = subprocess.run(command(tiny_model_dir, ag_news_dir) + ["--lr", "1e-3"], cwd=tmp_path, env=env(),
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "lr differ" in proc.stderr


def test_same_flags_and_seed_repeat_exactly(tmp_path, tiny_model_dir, ag_news_dir, reference):
    """Repeatability: dataset cache key, tag ids, metrics and saved weights are identical on CPU."""
    from safetensors.torch import load_file

    subprocess.run(command(tiny_model_dir, ag_news_dir), cwd=tmp_path, env=env(), check=True, capture_output=True)
    a = json.loads((tmp_path / "out" / "results.json").read_text())
    b = json.loads((reference / "out" / "results.json").read_text())
    assert comparable(a) == comparable(b)
    assert os.listdir(tmp_path / ".cache" / "ner_datasets") == os.listdir(reference / ".cache" / "ner_datasets")
    config_a = json.loads((tmp_path / "out" / "model" / "multitask_config.json").read_text())
    config_b = json.loads((reference / "out" / "model" / "multitask_config.json").read_text())
    assert config_a["tags"] == config_b["tags"]
    for name in ("heads.safetensors", "encoder/model.safetensors"):
        wa, wb = load_file(tmp_path / "out" / "model" / name), load_file(reference / "out" / "model" / name)
        assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa), name
