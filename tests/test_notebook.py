"""quickstart.ipynb runs top to bottom offline (nbclient, the python3 kernel from ipykernel), from the repository root:
a failing cell fails the test, and the executed notebook shows its figures inline and prints a cosine similarity."""
import re

import pytest

from conftest import ROOT

NOTEBOOK = ROOT / "quickstart.ipynb"


def run_notebook(path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    return nb


def outputs(nb):
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def test_notebook_is_committed_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not outputs(nb) and all(c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
def test_quickstart_notebook_runs_and_shows_its_results():
    from nbclient.exceptions import CellExecutionError

    failure = None
    try:
        nb = run_notebook(NOTEBOOK)
    except CellExecutionError as e:
        failure = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # the kernel's traceback without terminal colours
    if failure:
        pytest.fail(f"a cell of {NOTEBOOK.name} failed:\n{failure[-3000:]}", pytrace=False)
    images = [out for out in outputs(nb) if "image/png" in out.get("data", {})]
    assert len(images) >= 2  # the training curves and the test confusion matrix, inline
    printed = "".join(out.get("text", "") for out in outputs(nb) if out.get("output_type") == "stream")
    cosines = [float(x) for x in re.findall(r"cosine similarity (-?\d+\.\d+)", printed)]
    assert len(cosines) == 2 and all(-1 <= c <= 1 for c in cosines)
    assert cosines[0] > cosines[1]  # a paraphrase is closer than an unrelated sentence
    assert "test accuracy" in printed
