"""atomic_io's promises: data fsynced before the rename and the folder after it, temp names unique per writer, dead
writers' leftovers (files too) tidied and live ones' left alone, and two writers of one target: one wins, the other
gets ConcurrentWriteError, and the target is always a complete version."""
import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import dead_pid

import atomic_io
from atomic_io import ConcurrentWriteError, atomic_write_dir, recover_interrupted_writes, write_text_atomic

ROOT = Path(__file__).resolve().parent.parent


def debris(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))


class FsyncLog(list):
    """Every os.fsync call as (path fsynced, what it held then: bytes or a folder's sorted names, target exists)."""
    target = None

    def record(self, fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        held = sorted(os.listdir(path)) if os.path.isdir(path) else Path(path).read_bytes()
        self.append((path, held, self.target is not None and os.path.exists(self.target)))


@pytest.fixture
def fsyncs(monkeypatch):
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to name an fd's file")
    log, real = FsyncLog(), os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (log.record(fd), real(fd))[1])
    return log


@pytest.mark.parametrize("kind", ["text", "figure"])
def test_a_file_is_fsynced_before_its_rename_and_its_folder_after(tmp_path, fsyncs, kind):
    target = tmp_path / "new" / ("results.json" if kind == "text" else "curves.png")
    fsyncs.target = target
    if kind == "text":
        write_text_atomic(target, "complete")
    else:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        atomic_io.save_figure(plt.subplots()[0], target)
    data = target.read_bytes()
    temp_syncs = [(p, held) for p, held, exists in fsyncs if os.path.basename(p).startswith(f".{target.name}.tmp-")]
    assert [held for _, held in temp_syncs] == [data]  # the whole content, under its temp name
    (i_file,) = [i for i, (p, _, _) in enumerate(fsyncs) if p == temp_syncs[0][0]]
    assert not fsyncs[i_file][2]  # ... before the rename
    folder_syncs = [i for i, (p, held, exists) in enumerate(fsyncs) if p == str(tmp_path / "new") and exists]
    assert folder_syncs and folder_syncs[-1] > i_file  # the rename made durable in its folder
    assert str(tmp_path) in [p for p, _, _ in fsyncs]  # and the folder the write created, in its parent
    assert data.startswith(b"complete" if kind == "text" else b"\x89PNG") and not debris(target.parent)


def test_every_file_and_folder_of_a_folder_write_is_fsynced_before_the_swap(tmp_path, fsyncs):
    target = tmp_path / "model"

    def write(d):
        os.makedirs(os.path.join(d, "encoder", "deep"))
        for name in ("encoder/deep/w.bin", "encoder/config.json", "heads.bin"):
            Path(d, name).write_text(name)

    atomic_write_dir(target, lambda d: Path(d, "previous").write_text("v1"))
    fsyncs.target = target
    fsyncs.clear()
    atomic_write_dir(target, write)
    (tmp,) = {p for p, _, _ in fsyncs if os.path.basename(p).startswith(".model.tmp-")}
    inside = {os.path.relpath(p, tmp): i for i, (p, _, _) in enumerate(fsyncs) if p.startswith(tmp)}
    assert sorted(inside) == sorted([".", "encoder", "encoder/config.json", "encoder/deep", "encoder/deep/w.bin",
                                     "heads.bin"])
    # then the previous version parked (its folder fsynced while the target is gone), then the new one renamed in
    (park,) = [i for i, (p, held, exists) in enumerate(fsyncs) if p == str(tmp_path) and not exists]
    assert any(name.startswith(".model.old-") for name in fsyncs[park][1]) and max(inside.values()) < park
    assert fsyncs[-1][0] == str(tmp_path) and fsyncs[-1][2] and "model" in fsyncs[-1][1]
    assert sorted(os.listdir(target)) == ["encoder", "heads.bin"] and not debris(tmp_path)


def test_temp_names_are_unique_per_writer_and_name_it(tmp_path, monkeypatch):
    host, seen = socket.gethostname(), []
    # another writer's temp file (alive: this process) and a file named like the old shared temp name
    other = tmp_path / f".results.json.tmp-{os.getpid()}@{host}~other"
    other.write_text("someone else's half-written copy")
    (tmp_path / "results.json.tmp").write_text("not ours")
    monkeypatch.setattr(atomic_io, "kill_point", lambda name: name.startswith("write:") and seen.append(
        [n for n in os.listdir(tmp_path) if ".tmp-" in n and n != other.name]))
    for _ in range(2):
        write_text_atomic(tmp_path / "results.json", "v")
        atomic_write_dir(tmp_path / "model", lambda d: None)
    names = [n for names in seen for n in names]
    assert len(names) == 4 and len(set(names)) == 4, names  # each call its own temp name
    for name in names:
        m = atomic_io._TEMP_NAME.match(name)
        assert m and m["kind"] == "tmp" and (int(m["pid"]), m["host"]) == (os.getpid(), host), name
    assert other.read_text() == "someone else's half-written copy"  # never written through, nor tidied
    assert (tmp_path / "results.json.tmp").read_text() == "not ours"


def test_a_dead_writers_temp_files_are_tidied_and_a_live_ones_left(tmp_path):
    host, dead = socket.gethostname(), dead_pid()
    dead_file = tmp_path / f".results.json.tmp-{dead}@{host}~abc"
    dead_lock = tmp_path / ".results.json.writer-lock"
    live_file = tmp_path / f".metrics.jsonl.tmp-{os.getpid()}@{host}~def"
    foreign_lock = tmp_path / ".other.writer-lock"  # not naming a writer: not ours to remove
    for path, text in ((dead_file, "half"), (dead_lock, f"{dead}@{host}"), (live_file, "half"), (foreign_lock, "")):
        path.write_text(text)
    assert sorted(recover_interrupted_writes(tmp_path)) == sorted([dead_file.name, dead_lock.name])
    assert live_file.read_text() == "half" and foreign_lock.exists()
    # a dead writer's lock file that a new writer has just taken (its name not yet written over): left alone
    dead_lock.write_text(f"{dead}@{host}")
    with open(dead_lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert recover_interrupted_writes(tmp_path) == [] and dead_lock.exists()
    dead_lock.unlink()
    # the next write beside them tidies the same way
    dead_file.write_text("half")
    write_text_atomic(tmp_path / "metrics.jsonl", "{}\n")
    assert debris(tmp_path) == sorted([live_file.name, foreign_lock.name])


def test_a_writer_killed_mid_write_leaves_the_old_file_and_a_temp_the_next_write_tidies(tmp_path):
    target = tmp_path / "results.json"
    write_text_atomic(target, "old")
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import atomic_io; " \
           f"atomic_io.write_text_atomic({str(target)!r}, 'new')"
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, MTST_KILL_AT="write:results.json:1"))
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_text() == "old"
    left = [n for n in debris(tmp_path) if n.startswith(f".results.json.tmp-{proc.pid}@")]
    assert left and (tmp_path / left[0]).read_text() == "new"  # written, not yet renamed
    write_text_atomic(target, "newer")
    assert target.read_text() == "newer" and not debris(tmp_path)


def test_a_failed_swap_puts_the_previous_version_back(tmp_path, monkeypatch):
    target = tmp_path / "last"
    atomic_write_dir(target, lambda d: Path(d, "state").write_text("previous"))
    real = os.rename

    def rename(src, dst):
        if ".last.tmp-" in os.fspath(src):
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_dir(target, lambda d: Path(d, "state").write_text("new"))
    assert (target / "state").read_text() == "previous" and not debris(tmp_path)


def _blocked_writer(target, kind, inside, release, errors):
    """Start a thread writing target (kind: "dir" or "file") that stops inside the write until release is set."""
    def write(d):
        Path(d, "a").write_text("winner")
        inside.set()
        release.wait(30)
        Path(d, "b").write_text("winner")

    def run():
        try:
            if kind == "dir":
                atomic_write_dir(target, write)
            else:
                write_text_atomic(target, "winner")
        except Exception as e:  # reported by the test
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_the_second_of_two_overlapping_writers_gets_a_clear_error(tmp_path, monkeypatch, kind):
    target = tmp_path / ("model" if kind == "dir" else "results.json")
    if kind == "dir":
        atomic_write_dir(target, lambda d: [Path(d, n).write_text("previous") for n in "ab"])
    else:
        write_text_atomic(target, "previous")
        real_kill_point = atomic_io.kill_point

        def kill_point(name):  # the file writer stops between its write and its rename
            if threading.current_thread() is not threading.main_thread():
                inside.set()
                release.wait(30)
            real_kill_point(name)

        monkeypatch.setattr(atomic_io, "kill_point", kill_point)
    inside, release, errors = threading.Event(), threading.Event(), []
    thread = _blocked_writer(target, kind, inside, release, errors)
    try:
        assert inside.wait(30)
        with pytest.raises(ConcurrentWriteError) as e:
            if kind == "dir":
                atomic_write_dir(target, lambda d: Path(d, "a").write_text("loser"))
            else:
                write_text_atomic(target, "loser")
        msg = str(e.value)
        assert str(target) in msg and f"pid {os.getpid()}@{socket.gethostname()}" in msg and "retry" in msg
        # meanwhile the target is the complete previous version, and the loser left nothing behind
        if kind == "dir":
            assert sorted(os.listdir(target)) == ["a", "b"] and (target / "a").read_text() == "previous"
        else:
            assert target.read_text() == "previous"
        assert len([n for n in debris(tmp_path) if ".tmp-" in n]) == 1  # the winner's only
        assert recover_interrupted_writes(tmp_path) == []  # nothing of a live writer is tidied: temp nor lock
    finally:
        release.set()
        thread.join(30)
    assert not errors
    if kind == "dir":
        assert [(target / n).read_text() for n in "ab"] == ["winner", "winner"]
    else:
        assert target.read_text() == "winner"
    assert not debris(tmp_path)
    # once the winner is done, the next write is no conflict
    write_text_atomic(tmp_path / "results.json", "after")


def test_a_file_system_without_flock_writes_unlocked(tmp_path, monkeypatch):
    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    write_text_atomic(tmp_path / "results.json", "v")
    atomic_write_dir(tmp_path / "model", lambda d: Path(d, "f").write_text("v"))
    assert (tmp_path / "results.json").read_text() == "v" and (tmp_path / "model" / "f").read_text() == "v"
    assert not debris(tmp_path)


RACER = """
import os, sys, time
sys.path.insert(0, {root!r})
import atomic_io
target, go = sys.argv[1], sys.argv[2]
me = str(os.getpid())
def write(d):
    for i in range(20):  # a slow write of several files, each naming this writer
        with open(os.path.join(d, f"part{{i}}"), "w") as f:
            f.write(me)
        time.sleep(0.05)
open(go + "." + me, "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
try:
    atomic_io.atomic_write_dir(target, write)
    print("won", me)
except atomic_io.ConcurrentWriteError as e:
    print("lost", me, e)
"""


def test_processes_racing_on_one_target_one_wins_the_others_get_the_error(tmp_path):
    target, go, n = tmp_path / "out" / "best_model", tmp_path / "go", 4
    atomic_write_dir(target, lambda d: Path(d, "part0").write_text("previous"))
    script = RACER.format(root=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(target), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    deadline = time.time() + 60
    while len(list(tmp_path.glob("go.*"))) < n and time.time() < deadline:
        time.sleep(0.01)
    go.touch()  # all start writing at once; each write takes about a second
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    lines = [out.strip() for out, _ in outs]
    won = [line.split()[1] for line in lines if line.startswith("won")]
    lost = [line for line in lines if line.startswith("lost")]
    assert len(won) == 1 and len(lost) == n - 1, lines
    for line in lost:
        assert f"writing {target} right now" in line and f"pid {won[0]}@" in line, line
    assert sorted(os.listdir(target)) == sorted(f"part{i}" for i in range(20))  # the winner's complete version
    assert {(target / name).read_text() for name in os.listdir(target)} == {won[0]}
    assert not debris(target.parent)
