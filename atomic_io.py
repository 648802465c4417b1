"""File safety: every file or folder the project writes goes to a temporary name beside its target first, is flushed
to disk, and is then renamed into place, so a run killed mid-write never leaves a torn file under the real name.

What is guaranteed (write_text_atomic, save_figure: a file; atomic_write_dir: a folder)
- Before the rename, the temporary file (for a folder: every file and folder under it) is fsynced; after the rename,
  the folder holding the target is fsynced too (and so are folders the call had to create). Once a call returns, the
  new version is on disk.
- After a kill (SIGKILL, out of memory, a crash) or a power loss / kernel panic at any point, a file target is the
  complete previous version (or absent, if there was none) or the complete new one: rename(2) swaps it in one step.
- A folder cannot be swapped in one step: the previous version is first parked in ".<target>.old-...", then the new
  one renamed in. An interruption between the two renames leaves the target absent and the previous version
  parked; recover_interrupted_writes puts it back (every atomic_write_dir call and every file write runs it on the
  target's folder first, and the trainer runs it on its output folders when it starts). So once that has run, a
  folder target too is the complete previous version or the complete new one.
- Temporary names name their writer (".<target>.tmp-<pid>@<host>~<random>", unique per writer and per call), so two
  writers never share one, and recover_interrupted_writes can tell a dead writer's leftovers (deleted) from a live
  one's (left alone).
- Two writers of one target at the same time (processes or threads): each write holds an exclusive flock(2) on
  ".<target>.writer-lock" beside the target from before the temporary copy is made until the rename is on disk.
  A writer that finds the lock held raises ConcurrentWriteError (naming the target and the holder) before it
  writes anything: the target stays whatever the holder leaves (a complete version), and the loser leaves no
  temporary behind. Writes one after the other are not a conflict: the later one wins. The kernel drops the lock
  when its holder dies, so a killed writer never blocks the next one; the lock file is removed after each write
  (a killed writer's is reused, and tidied by recover_interrupted_writes).

What is not guaranteed
- Storage that ignores or fakes fsync (disks with a volatile write cache that lie about flushing, some network and
  FUSE file systems, eatmydata, some container volume drivers): a power loss can then lose or tear anything.
- File systems without an atomic rename (object-store mounts such as S3 FUSE, some network file systems): a rename
  there is a copy, and a kill can leave a torn target.
- Across file systems: the temporary name lies beside the target so that the rename stays on one file system; a
  target that is itself a mount point or a symlink to another file system is not supported.
- Locking across hosts: flock on a network file system (NFS, SMB) is emulated or ignored depending on the client;
  two hosts writing one target on a shared disk are not reliably told apart. Where flock fails as unsupported
  (ENOLCK and the like) or without fcntl (Windows) there is no lock at all; on Windows the power-loss guarantees
  also rest on the platform's rename.
- Files that write() puts outside its temporary folder, and writers that bypass these helpers.
Standard library only.

exit_at_step_for_tests(step) (MTST_EXIT_AT_STEP=N) makes every process of a run exit at once after training step N.
kill_point(name) lets a test SIGKILL the process at a named point, the same on any machine: MTST_KILL_AT="train:5"
kills it the 5th time it passes kill_point("train"). Points: label (after each text spaCy labelled), train (after
each optimizer step), write:<name> (a file or folder written under its temporary name, not yet renamed; <name> is
the target's base name: last, best_model, model, results.json, metrics.jsonl, the dataset cache key...) and
swap:<name> (between atomic_write_dir's two renames: the previous version parked, the new one not yet in place).
"""
import contextlib
import errno
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time

from errors import ProjectError

try:
    import fcntl
except ImportError:  # Windows: no flock; writes are not locked (see the module docstring)
    fcntl = None

_TEMP_NAME = re.compile(r"^\.(?P<base>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)@(?P<host>[^~/]*)~")
_LOCK_SUFFIX = ".writer-lock"
_LOCK_NAME = re.compile(r"^\.(?P<base>.+)" + re.escape(_LOCK_SUFFIX) + "$")
_LOCK_TAG = re.compile(r"^(?P<pid>\d+)@(?P<host>[^~/]*)$")
_passes = {}  # kill_point name -> times this process passed it


class ConcurrentWriteError(ProjectError, RuntimeError):
    """Another writer (process or thread) is writing the same target right now; this write was abandoned."""


def kill_point(name):
    """SIGKILL this process the N-th time it gets here when MTST_KILL_AT is "<name>:<N>" (a test hook; no-op otherwise)."""
    spec = os.environ.get("MTST_KILL_AT")
    if not spec or spec.rpartition(":")[0] != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] == int(spec.rpartition(":")[2]):
        os.kill(os.getpid(), signal.SIGKILL)


def exit_at_step_for_tests(global_step):
    """MTST_EXIT_AT_STEP=N: every process exits at once (like a kill) right after global step N (tests only)."""
    if os.environ.get("MTST_EXIT_AT_STEP") == str(global_step):
        os._exit(75)


def writer_tag():
    """Names this process in temp names (".<target>.tmp-<writer_tag><random>")."""
    return f"{os.getpid()}@{socket.gethostname()}~"


# ----------------------------------------------------------------------------------------------------------- fsync
def _fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path):
    """fsync a folder (its entries: names created, renamed or removed in it); a no-op where folders cannot be."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # Windows cannot open a folder; nothing to flush there
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise  # EIO and the like: the data may not be on disk
    finally:
        os.close(fd)


def _fsync_tree(root):
    """fsync every regular file under root, then every folder (deepest first, root last)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                _fsync_file(path)
        _fsync_dir(folder)


def _makedirs(folder):
    """os.makedirs, with each folder it creates made durable in its parent."""
    missing = []
    while folder and not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    if missing:
        os.makedirs(missing[0], exist_ok=True)
    for created in reversed(missing):
        _fsync_dir(os.path.dirname(created))


# ------------------------------------------------------------------------------------------------ writers and locks
_boot = []


def _boot_time():
    """When this machine booted (Linux /proc/stat), or None: a temp name older than that has no live writer."""
    if not _boot:
        try:
            with open("/proc/stat") as f:
                _boot.append(next((int(line.split()[1]) for line in f if line.startswith("btime ")), None))
        except (OSError, ValueError):
            _boot.append(None)
    return _boot[0]


def _writer_is_gone(pid, host, mtime, max_age_s):
    if host == socket.gethostname():
        if _boot_time() is not None and mtime < _boot_time():
            return True  # written before a reboot (a power loss): the pid may be someone else's now
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive, just not ours to signal
            return False
        return False
    return time.time() - mtime > max_age_s  # written from another host (shared disk): only when clearly stale


def _lock_holder(fd):
    """(pid, host) the lock file open as fd names, or None when it names no one (yet)."""
    try:
        m = _LOCK_TAG.match(os.pread(fd, 300, 0).decode(errors="replace").strip())
    except OSError:
        return None
    return (int(m["pid"]), m["host"]) if m else None


def _same_file(fd, path):
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _holder_is_gone(fd, max_age_s=3600):
    holder = _lock_holder(fd)
    return holder is not None and _writer_is_gone(*holder, os.fstat(fd).st_mtime, max_age_s)


def _lock(path):
    """An fd holding the exclusive flock on path's writer lock (".<base>.writer-lock" beside it), None where the file
    system has no flock; ConcurrentWriteError at once when another writer holds it."""
    parent, base = os.path.split(path)
    lock = os.path.join(parent, f".{base}{_LOCK_SUFFIX}")
    tries = 0
    for _ in range(200):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder, gone = _lock_holder(fd), _holder_is_gone(fd)
            os.close(fd)
            # held, yet naming no one (its holder has not written its name yet) or a dead writer (a holder that has
            # not written its name over that one yet, or recover_interrupted_writes tidying it): look again shortly
            if (holder is None or gone) and tries < 20:
                tries += 1
                time.sleep(0.005)
                continue
            who = f"pid {holder[0]}@{holder[1]}" if holder else "a process that names no pid"
            raise ConcurrentWriteError(
                f"another writer ({who}) is writing {path} right now; this write was abandoned and {path} left as "
                f"that writer leaves it (a complete version). Let it finish and retry, or give this run its own "
                f"output path") from None
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.ENOLCK, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                with contextlib.suppress(OSError):
                    os.unlink(lock)
                return None  # no flock on this file system (some network mounts): unlocked, as without fcntl
            raise
        if _same_file(fd, lock):
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}@{socket.gethostname()}".encode(), 0)
            except BaseException:
                os.close(fd)
                raise
            return fd
        os.close(fd)  # locked a lock file its last holder had just removed: take the one at the path now
    raise ConcurrentWriteError(f"could not lock {lock} to write {path}: it keeps being replaced")


@contextlib.contextmanager
def _writing(path):
    """Hold path's writer lock for the with block (see _lock)."""
    fd = _lock(path) if fcntl is not None else None
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):  # while still holding it: a writer that opened it retries on the new one
                os.unlink(os.path.join(os.path.dirname(path), f".{os.path.basename(path)}{_LOCK_SUFFIX}"))
            os.close(fd)


def _tidy_lock(path, max_age_s):
    """Remove a lock file left by a dead writer (no one holds it); True when removed."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        if not _holder_is_gone(fd, max_age_s):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer took it over (and will remove it)
        if not (_same_file(fd, path) and _holder_is_gone(fd, max_age_s)):
            return False
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def recover_interrupted_writes(folder, max_age_s=3600):
    """Tidy what killed writes left in folder: delete dead writers' temp files and folders and lock files and, where
    a kill fell between atomic_write_dir's two renames (target gone, previous version parked in an .old- folder), put
    the previous version back. Returns the names removed. Leftovers of writers still running are not touched; a temp
    name from another host counts as dead only when older than max_age_s."""
    try:
        names = sorted(os.listdir(folder), key=lambda n: "tmp" in n)  # .old- first: restore before deleting temps
    except OSError:
        return []
    removed = []
    for name in names:
        full = os.path.join(folder, name)
        if _LOCK_NAME.match(name):
            if _tidy_lock(full, max_age_s):
                removed.append(name)
            continue
        m = _TEMP_NAME.match(name)
        try:
            if not m or not _writer_is_gone(int(m["pid"]), m["host"], os.lstat(full).st_mtime, max_age_s):
                continue
            target, parked = os.path.join(folder, m["base"]), os.path.join(full, "x")
            if m["kind"] == "old" and os.path.lexists(parked) and not os.path.lexists(target):
                os.rename(parked, target)
                _fsync_dir(folder)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.remove(full)
        except OSError:
            continue
        removed.append(name)
    return removed


# ----------------------------------------------------------------------------------------------------------- writes
def atomic_write_dir(path, write):
    """Call write(tmp_dir) on a fresh temp dir beside path, fsync what it wrote, then swap it into place; never leaves
    a half-written path (see the module docstring for what survives a kill or a power loss).

    A run killed mid-write leaves a temp folder behind; the next write beside it removes it (and restores the
    previous version if the kill fell between the two renames). Raises ConcurrentWriteError, having written nothing,
    when another writer is writing path. Returns the absolute path.
    """
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    _makedirs(parent)
    with _writing(path):
        recover_interrupted_writes(parent)
        tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-{writer_tag()}", dir=parent)
        old, done = None, False
        try:
            write(tmp)
            _fsync_tree(tmp)
            kill_point("write:" + base)
            if os.path.lexists(path):
                old = tempfile.mkdtemp(prefix=f".{base}.old-{writer_tag()}", dir=parent)
                os.rename(path, os.path.join(old, "x"))
                _fsync_dir(old)
                _fsync_dir(parent)  # the park is on disk before the new version moves in
                kill_point("swap:" + base)
            os.rename(tmp, path)
            done = True
            _fsync_dir(parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if old:
                parked = os.path.join(old, "x")
                if not done and os.path.lexists(parked) and not os.path.lexists(path):
                    try:  # the new version did not move in: put the previous one back
                        os.rename(parked, path)
                        _fsync_dir(parent)
                    except OSError:
                        old = None  # leave it parked; recover_interrupted_writes restores it
                if old:
                    shutil.rmtree(old, ignore_errors=True)
    return path


@contextlib.contextmanager
def _atomic_file(path, mode):
    """Yield a file object open (mode "w" or "wb") on a unique temp name beside path; on a clean exit fsync it,
    rename it to path and fsync the folder; on an error remove it."""
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    _makedirs(parent)
    with _writing(path):
        recover_interrupted_writes(parent)
        while True:
            tmp = os.path.join(parent, f".{base}.tmp-{writer_tag()}{secrets.token_hex(4)}")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
        try:
            with os.fdopen(fd, mode) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            kill_point("write:" + base)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        _fsync_dir(parent)


def open_atomic(path, mode="wb"):
    """`with open_atomic(path) as f:` a file object (mode "w" or "wb") on a unique temp name beside path, renamed to
    path (fsynced) when the block ends without an error, removed when it raises; the same guarantees as
    write_text_atomic, for writers that stream (corpus.py's parquet shards)."""
    return _atomic_file(path, mode)


def write_text_atomic(path, text):
    """Write text to a unique temp name beside path, fsync it, then rename it to path (see the module docstring).
    Raises ConcurrentWriteError when another writer is writing path."""
    with _atomic_file(path, "w") as f:
        f.write(text)


def save_figure(fig, path, dpi=100):
    """Save a matplotlib figure the same way (temp name, fsync, rename) and close it. The format follows path's
    extension (png when matplotlib does not know it). Imports nothing: a figure made with pyplot is closed there."""
    ext = os.path.splitext(os.fspath(path))[1][1:].lower()
    try:
        with _atomic_file(path, "wb") as f:
            fig.savefig(f, format=ext if ext in fig.canvas.get_supported_filetypes() else "png", dpi=dpi)
    finally:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close(fig)
