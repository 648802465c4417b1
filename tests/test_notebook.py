"""quickstart.ipynb runs top to bottom offline (nbclient, the python3 kernel from ipykernel): a failing cell fails the
test, and the executed notebook shows its figures inline and prints a cosine similarity.

The notebook runs unchanged from a temporary folder (the tests' own data root as $MTST_DATA_ROOT, the project's
modules on PYTHONPATH), so what it writes (outputs/notebook, .cache) stays out of the checkout."""
import os
import re

import pytest
from conftest import ROOT

NOTEBOOK = ROOT / "quickstart.ipynb"


def run_notebook(path, cwd):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def stand_in_root(tmp_path, monkeypatch, data_root_dir):
    """A working folder for the kernel: the tests' data root as $MTST_DATA_ROOT, the code importable."""
    root = tmp_path / "checkout"
    root.mkdir()
    monkeypatch.setenv("MTST_DATA_ROOT", str(data_root_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return root


def outputs(nb):
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def test_notebook_is_committed_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not outputs(nb) and all(c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
def test_quickstart_notebook_runs_and_shows_its_results(tmp_path, monkeypatch, data_root_dir):
    from nbclient.exceptions import CellExecutionError

    cwd = stand_in_root(tmp_path, monkeypatch, data_root_dir)
    failure = None
    try:
        nb = run_notebook(NOTEBOOK, cwd)
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
    assert (cwd / "outputs" / "notebook" / "best_model").is_dir()  # it wrote into the temporary folder
