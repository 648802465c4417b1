"""File safety: every file or folder the project writes goes to a temporary name first and is renamed into place,
so a run killed mid-write (SIGKILL, power loss) never leaves a torn file under the real name.

Temporary folders name their writer (".<target>.tmp-<pid>@<host>~<random>"), so a later run can tell a dead writer's
leftovers from a live one's and tidy them (recover_interrupted_writes). Standard library only.

kill_point(name) lets a test SIGKILL the process at a named point, the same on any machine: MTST_KILL_AT="train:5"
kills it the 5th time it passes kill_point("train"). Points: label (after each text spaCy labelled), train (after
each optimizer step), write:<name> (a file or folder written under its temporary name, not yet renamed; <name> is
the target's base name: last, best_model, model, results.json, metrics.jsonl, the dataset cache key...) and
swap:<name> (between atomic_write_dir's two renames: the previous version parked, the new one not yet in place).
"""
import os
import re
import shutil
import signal
import socket
import tempfile
import time

_TEMP_NAME = re.compile(r"^\.(?P<base>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)@(?P<host>[^~/]*)~")
_passes = {}  # kill_point name -> times this process passed it


def kill_point(name):
    """SIGKILL this process the N-th time it gets here when MTST_KILL_AT is "<name>:<N>" (a test hook; no-op otherwise)."""
    spec = os.environ.get("MTST_KILL_AT")
    if not spec or spec.rpartition(":")[0] != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] == int(spec.rpartition(":")[2]):
        os.kill(os.getpid(), signal.SIGKILL)


def writer_tag():
    """Names this process in temp folder names (".<target>.tmp-<writer_tag><random>")."""
    return f"{os.getpid()}@{socket.gethostname()}~"


def _writer_is_gone(pid, host, mtime, max_age_s):
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive, just not ours to signal
            return False
        return False
    return time.time() - mtime > max_age_s  # written from another host (shared disk): only when clearly stale


def recover_interrupted_writes(folder, max_age_s=3600):
    """Tidy what killed atomic_write_dir calls left in folder: delete dead writers' temp folders and, where a kill fell
    between the two renames (target gone, previous version parked in an .old- folder), put the previous version back.
    Returns the names removed. Leftovers of writers still running are not touched."""
    try:
        names = sorted(os.listdir(folder), key=lambda n: "tmp" in n)  # .old- first: restore before deleting temps
    except OSError:
        return []
    removed = []
    for name in names:
        m = _TEMP_NAME.match(name)
        full = os.path.join(folder, name)
        try:
            if not m or not _writer_is_gone(int(m["pid"]), m["host"], os.stat(full).st_mtime, max_age_s):
                continue
            target, parked = os.path.join(folder, m["base"]), os.path.join(full, "x")
            if m["kind"] == "old" and os.path.exists(parked) and not os.path.exists(target):
                os.rename(parked, target)
        except OSError:
            continue
        shutil.rmtree(full, ignore_errors=True)
        removed.append(name)
    return removed


def atomic_write_dir(path, write):
    """Call write(tmp_dir) on a fresh temp dir beside path, then swap it into place; never leaves a half-written path.

    A run killed mid-write leaves a temp folder behind; the next write beside it removes it (and restores the
    previous version if the kill fell between the two renames). Returns the absolute path.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    recover_interrupted_writes(parent)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-{writer_tag()}", dir=parent)
    old = None
    try:
        write(tmp)
        kill_point("write:" + os.path.basename(path))
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-{writer_tag()}", dir=parent)
            os.rename(path, os.path.join(old, "x"))
            kill_point("swap:" + os.path.basename(path))
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    return path


def write_text_atomic(path, text):
    """Write text to path.tmp, then rename: a killed run never leaves a torn file under the real name."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    kill_point("write:" + os.path.basename(path))
    os.replace(path + ".tmp", path)


def save_figure(fig, path, dpi=100):
    """Save a matplotlib figure the same way (temp name, then rename) and close it."""
    import matplotlib.pyplot as plt

    fig.savefig(path + ".tmp.png", dpi=dpi)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
