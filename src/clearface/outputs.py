"""Everything a command writes goes through here: the output guard, the one atomic writer, the file hash.

The guard (:func:`check_output`, :func:`check_output_dir`) runs before any work starts, so a bad ``--out``
costs nothing and leaves nothing behind. It refuses, with one line naming the option and the path:

- an output that is one of the inputs (same file by device + inode, so also through symlinks and hard links);
- a device, FIFO or socket (``/dev/full``, ``/dev/null``): these are not files we could replace atomically;
- an existing folder where a file is expected (or a file where a folder is expected);
- a missing parent folder (file outputs) and a read-only or unwritable parent folder.

Symlinked outputs are written THROUGH: the link's target is replaced atomically and the link itself stays,
so ``--out latest.txt -> runs/42/labels.txt`` updates ``runs/42/labels.txt``.

The writer puts a temporary file beside the (resolved) target, fsyncs it, and renames it over the target,
so a crash or a kill -9 leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import ClearfaceError

__all__ = ["atomic_path", "check_input", "check_output", "check_output_dir", "file_sha256", "removed_on_failure",
           "write_bytes_atomic", "write_text_atomic"]


# ---------------------------------------------------------------------------- hashing

def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------- atomic writing

def _write_target(path) -> Path:
    """Where bytes for ``path`` really go: through any symlinks, so the link survives the rename."""
    return Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some file systems do not open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is untouched. ``suffix`` is appended to the
    temporary name for writers that pick a format from the extension (e.g. ``.onnx``, ``.npy``).
    """
    target = _write_target(path)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if target.is_file():  # a replaced file keeps its permissions
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        if os.path.lexists(tmp):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file beside it, fsync, rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (temporary file beside it, fsync, rename)."""
    write_bytes_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def removed_on_failure(folder, keep=None) -> Iterator[Path]:
    """On a :class:`ClearfaceError` (bad input) in the block, take back what the block added to ``folder``.

    A folder that did not exist before is removed; in one that did, the entries that were not there before
    are removed. ``keep()`` returning true (e.g. checkpoints exist: hours of training) keeps everything.
    Other exceptions (Ctrl-C, kill) keep everything, so ``--resume`` still has its checkpoints.
    """
    folder = Path(folder)
    existed = folder.is_dir()
    before = set(os.listdir(folder)) if existed else set()
    try:
        yield folder
    except ClearfaceError:
        if folder.is_dir() and not (keep and keep()):
            if not existed:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                for name in set(os.listdir(folder)) - before:
                    entry = folder / name
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
        raise


def check_input(path, what: str, folder_ok: bool = False, must_exist: bool = False) -> None:
    """Refuse an input that would hang or make no sense to read: a FIFO, device or socket (or a folder).

    A missing path is left to the reader, whose message names what it expected, unless ``must_exist``.
    """
    if path is None:
        return
    if str(path).strip() == "":  # Path("") is the current folder: never what was meant
        raise ClearfaceError(f"{what}: empty path")
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        if must_exist:
            raise ClearfaceError(f"{what} {path}: no such file") from None
        return
    if stat.S_ISDIR(st.st_mode):
        if not folder_ok:
            raise ClearfaceError(f"{what} {path}: is a folder; give a file")
        return
    kind = _kind(st.st_mode)
    if kind:
        raise ClearfaceError(f"{what} {path}: is {kind}, not a regular file")


# ---------------------------------------------------------------------------- the guard

def _kind(mode: int) -> str | None:
    """A name for what is not a regular file or folder, or None."""
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None


def _same_as_input(path, inputs: Iterable) -> str | None:
    """The input that ``path`` is (same device and inode, so symlinks and hard links count), if any."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    for inp in inputs:
        if inp is None:
            continue
        try:
            other = os.stat(inp)
        except (OSError, ValueError, TypeError):
            continue
        if (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino):
            return str(inp)
    return None


def _check_writable_folder(folder: Path, what: str, path) -> None:
    if not folder.exists():
        raise ClearfaceError(f"{what} {path}: folder {folder} does not exist")
    if not folder.is_dir():
        raise ClearfaceError(f"{what} {path}: {folder} is not a folder")
    read_only_fs = False
    try:
        read_only_fs = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        pass
    # a folder with no write bit at all is meant to be read-only, even for root (who os.access lets through)
    no_write_bits = not (folder.stat().st_mode & 0o222)
    if read_only_fs or no_write_bits or not os.access(folder, os.W_OK | os.X_OK):
        raise ClearfaceError(f"{what} {path}: folder {folder} is read-only (cannot write there)")


def _inputs_list(inputs) -> list:
    if inputs is None or isinstance(inputs, (str, os.PathLike)):
        return [] if inputs is None else [inputs]
    return [i for i in inputs if i is not None]


def _check_outside(path, folders, what: str) -> None:
    """Refuse writing inside an input folder of images: the next run would read the output as an image."""
    real = os.path.realpath(path)
    for folder in folders or ():
        if folder is None or not os.path.isdir(folder):
            continue
        top = os.path.realpath(folder)
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            raise ClearfaceError(f"{what} {path}: is inside the input folder {folder}; write it elsewhere")


def _existing(path, inputs: list, what: str, advice: str):
    """``os.stat`` of an output that exists (None if missing or a dangling link); one of the inputs is refused."""
    if not os.path.lexists(path):
        return None
    same = _same_as_input(Path(path), inputs)
    if same is not None:
        raise ClearfaceError(f"{what} {path}: is the input {same}; {advice}")
    try:
        return os.stat(path)
    except OSError:
        return None


def check_output(path, inputs: Iterable = (), what: str = "--out", not_inside: Iterable = ()) -> Path | None:
    """Refuse, with one line naming ``what`` and ``path``, a file output that cannot or must not be written.

    Returns ``Path(path)`` (``None`` for ``None``, so optional outputs can pass straight through).
    """
    if path is None:
        return None
    if str(path).strip() == "":
        raise ClearfaceError(f"{what}: empty path")
    p = Path(path)
    inputs = _inputs_list(inputs)
    st = _existing(path, inputs, what, "writing it would destroy the input")
    if st is not None:  # None: missing, or a dangling symlink (written through to its missing target)
        if stat.S_ISDIR(st.st_mode):
            raise ClearfaceError(f"{what} {path}: is a folder; give a file name")
        kind = _kind(st.st_mode)
        if kind:
            raise ClearfaceError(f"{what} {path}: is {kind}, not a regular file")
    target = _write_target(p)
    _check_writable_folder(target.parent if str(target.parent) else Path("."), what, path)
    _check_outside(target, not_inside, what)
    return p


def check_output_dir(path, inputs: Iterable = (), what: str = "--out", not_inside: Iterable = ()) -> Path:
    """Refuse a folder output that is a file, a device, one of the inputs, or under a read-only folder.

    Missing parents are fine (folders are created with their parents); the nearest existing one must be
    a writable folder.
    """
    if path is None or str(path).strip() == "":
        raise ClearfaceError(f"{what}: empty path")
    p = Path(path)
    inputs = _inputs_list(inputs)
    _check_outside(p, not_inside, what)
    if os.path.lexists(p):
        st = _existing(path, inputs, what, "give a separate folder")
        if st is None:
            raise ClearfaceError(f"{what} {path}: is a broken symbolic link")
        if not stat.S_ISDIR(st.st_mode):
            kind = _kind(st.st_mode) or "a file"
            raise ClearfaceError(f"{what} {path}: is {kind}, not a folder")
        _check_writable_folder(Path(os.path.realpath(p)), what, path)
        return p
    parent = Path(os.path.abspath(p)).parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    _check_writable_folder(Path(os.path.realpath(parent)), what, path)
    return p
