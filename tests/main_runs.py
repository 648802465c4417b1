"""A tiny main.py run shared by the interruption and repeatability tests (fixtures exported through conftest).

main.py runs on the tests' data root (synthetic_data.py) and real spaCy with a tiny random encoder saved as a local model directory,
so a whole run takes seconds.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import save_tiny_encoder

ROOT = Path(__file__).resolve().parent.parent

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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_encoder(tmp_path_factory.mktemp("tiny_model") / "bert")


@pytest.fixture(scope="session")
def reference(tmp_path_factory, tiny_model_dir, ag_news_dir):
    cwd = tmp_path_factory.mktemp("reference")
    subprocess.run(command(tiny_model_dir, ag_news_dir), cwd=cwd, env=env(), check=True, capture_output=True)
    return cwd
