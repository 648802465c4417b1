"""SIGKILL at fixed points (labelling, training, checkpoint and output writes), rerun, and the result equals an
uninterrupted run. The process kills itself where MTST_KILL_AT says (atomic_io.kill_point), so the test means the same
on any machine, however fast."""
import json
import os
import shutil
import signal
import socket
import subprocess

import pytest
from helpers import dead_pid
from main_runs import command, comparable, env

# Each run of the same command is killed at the next point; counts start afresh in each process. The run's shape
# (main_runs.ARGS): 380 texts labelled, 2 epochs of 34 steps, a checkpoint after every step, best model at epoch 1.
KILL_POINTS = [
    ("label:200", None),                        # half-way through spaCy labelling: nothing cached yet
    ("write:{cache_key}:1", ".cache/ner_datasets/.{cache_key}.tmp-"),  # cache written, not yet renamed
    ("train:3", None),                          # after a step, before its checkpoint: the step is done again
    ("swap:last:2", "out/checkpoints/.last.old-"),  # between the renames: the previous checkpoint is parked
    ("write:best_model:1", "out/.best_model.tmp-"),  # end of epoch 1: best model written, not yet renamed
    ("write:results.json:1", "out/.results.json.tmp-"),  # training done, results not yet in place
]


def debris(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name or ".old-" in p.name)


def copy_of_reference(reference, tmp_path):
    shutil.copytree(reference / "out", tmp_path / "out")
    shutil.copytree(reference / ".cache", tmp_path / ".cache")


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, tiny_model_dir, ag_news_dir, reference):
    cache_key = os.listdir(reference / ".cache" / "ner_datasets")[0]
    for point, left in KILL_POINTS:
        point, left = point.format(cache_key=cache_key), left and left.format(cache_key=cache_key)
        proc = subprocess.run(command(tiny_model_dir, ag_news_dir), cwd=tmp_path, env=dict(env(), MTST_KILL_AT=point),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert proc.returncode == -signal.SIGKILL, f"not killed at {point}: {proc.stderr[-3000:]}"
        if left:  # the kill fell where the point says: a write was cut short
            assert any(name.startswith(left) for name in debris(tmp_path)), (point, debris(tmp_path))
    proc = subprocess.run(command(tiny_model_dir, ag_news_dir), cwd=tmp_path, env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = json.loads((tmp_path / "out" / "results.json").read_text())
    theirs = json.loads((reference / "out" / "results.json").read_text())
    assert comparable(ours) == comparable(theirs)
    assert not debris(tmp_path)


@pytest.mark.slow
def test_partial_checkpoint_is_refused_with_a_fix(tmp_path, tiny_model_dir, ag_news_dir, reference):
    copy_of_reference(reference, tmp_path)
    (tmp_path / "out" / "checkpoints" / "last" / "training_state.pt").write_bytes(b"torn")
    proc = subprocess.run(command(tiny_model_dir, ag_news_dir), cwd=tmp_path, env=env(), capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert "delete" in proc.stderr and "checkpoints" in proc.stderr


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(tmp_path, tiny_model_dir, ag_news_dir, reference):
    copy_of_reference(reference, tmp_path)
    proc = subprocess.run(command(tiny_model_dir, ag_news_dir) + ["--lr", "1e-3"], cwd=tmp_path, env=env(),
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "lr differ" in proc.stderr


def test_leftovers_of_a_killed_write_are_tidied_and_a_parked_version_restored(tmp_path):
    from atomic_io import atomic_write_dir, recover_interrupted_writes

    host, dead = socket.gethostname(), dead_pid()
    # killed while writing best_model: a half-written temp folder
    (tmp_path / f".best_model.tmp-{dead}@{host}~abc" / "encoder").mkdir(parents=True)
    # killed between the two renames of last: target gone, previous version parked
    parked = tmp_path / f".last.old-{dead}@{host}~def" / "x"
    parked.mkdir(parents=True)
    (parked / "state.json").write_text("previous")
    # a writer that is still running (this process): left alone
    live = tmp_path / f".model.tmp-{os.getpid()}@{host}~ghi"
    live.mkdir()
    removed = recover_interrupted_writes(tmp_path)
    assert sorted(removed) == [f".best_model.tmp-{dead}@{host}~abc", f".last.old-{dead}@{host}~def"]
    assert (tmp_path / "last" / "state.json").read_text() == "previous"
    assert live.is_dir()
    # atomic_write_dir tidies the same way before it writes
    (tmp_path / f".best_model.tmp-{dead}@{host}~jkl").mkdir()
    atomic_write_dir(tmp_path / "best_model", lambda d: open(os.path.join(d, "f"), "w").close())
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "best_model", "last"]
