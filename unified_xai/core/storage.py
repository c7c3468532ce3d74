"""Atomic writes: write to a temporary file beside the target, then rename.

Temporaries are named ``.<target name>.<writer pid>.<random>.uxai-tmp`` so that a file left behind
by a killed writer (``kill -9``, power loss) is recognisable: :func:`clean_stale_temporaries`
removes those whose writer process no longer runs.
"""
from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

import h5py

TEMP_SUFFIX = ".uxai-tmp"
#: ``.<name>.<pid>.<random>.uxai-tmp``; mkstemp's random part is letters, digits and underscores
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<random>[A-Za-z0-9_]+)" + re.escape(TEMP_SUFFIX) + "$")


def _default_mode() -> int:
    """Permissions a plain ``open()`` would give (mkstemp creates 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _temporary_beside(path: Path) -> tuple[int, str]:
    """Create ``.<name>.<pid>.<random>.uxai-tmp`` in the target's folder; returns (fd, path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=path.parent)


def temporary_owner(path: str | os.PathLike) -> int | None:
    """PID of the process that wrote the temporary ``path``, or None when it is not one of ours."""
    match = _TEMP_NAME.match(Path(path).name)
    return int(match.group("pid")) if match else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    except OSError:
        return False
    return True


def clean_stale_temporaries(folder: str | os.PathLike, depth: int = 0) -> list[Path]:
    """Remove the temporaries of killed writers in ``folder`` (and ``depth`` levels of subfolders).

    A temporary is stale when the PID in its name no longer runs; temporaries of live writers
    (another run writing at the same time) are kept. Returns the removed paths; a missing folder
    is not an error.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if depth > 0:
                removed += clean_stale_temporaries(entry.path, depth - 1)
            continue
        pid = temporary_owner(entry.name)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        try:
            os.remove(entry.path)
        except FileNotFoundError:  # another cleaner was faster
            continue
        removed.append(Path(entry.path))
    return removed


@contextmanager
def _replace_when_done(path: str | os.PathLike):
    """Yield ``(fd, temporary path)`` beside ``path``; the temporary replaces ``path`` when the block succeeds."""
    path = Path(path)
    fd, tmp = _temporary_beside(path)
    try:
        yield fd, tmp
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@contextmanager
def atomic_h5(path: str | os.PathLike, mode: str = "w"):
    """Open a new HDF5 file that appears at ``path`` only once fully written."""
    with _replace_when_done(path) as (fd, tmp):
        os.close(fd)
        with h5py.File(tmp, mode) as handle:
            yield handle


@contextmanager
def atomic_write(path: str | os.PathLike, binary: bool = True):
    """Open a file object whose content replaces ``path`` only when the block succeeds."""
    with _replace_when_done(path) as (fd, tmp):
        with os.fdopen(fd, "wb" if binary else "w") as handle:
            yield handle
