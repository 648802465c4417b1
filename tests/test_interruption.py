"""SIGKILL at random points (labelling, training, checkpoint writing), rerun, and the result equals an uninterrupted run."""
import json
import os
import random
import signal
import socket
import subprocess

from helpers import dead_pid
from main_runs import command, comparable, env


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
