"""Writing output files safely: never over a device or an input, never half-written, no litter.

- :func:`check_output` refuses, before any work is done, an output path that is a folder, a
  device, fifo or socket, that lies in a missing folder, or that resolves to one of the inputs.
- :func:`atomic_write` writes a private temporary file beside the target and renames it over
  the target: a crash, Ctrl-C or a full disk leaves the old file (or none), never a partial one.
- A symlink output is written through: the file it points to is replaced and the link stays.
- Temporary names carry the writer's process id, so a writer killed by SIGKILL leaves a
  ``.NAME.liftswap-PID-*.tmp`` that the next write to the same target removes.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from ..errors import LiftswapError

__all__ = ["check_output", "atomic_write", "private_temp", "resolve_output"]


def resolve_output(path: str | os.PathLike) -> Path:
    """The file a write to ``path`` replaces: a symlink's target (written through), else ``path``."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def check_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), what: str = "output") -> Path:
    """The resolved output path, or a :class:`LiftswapError` saying why ``path`` cannot be written.

    Example:
        >>> check_output("/dev/null")
        Traceback (most recent call last):
        ...
        liftswap.errors.LiftswapError: cannot write /dev/null: it exists and is not a regular file (a device, fifo or socket); give a file name
    """
    shown = Path(path)
    target = resolve_output(path)
    if target.is_dir():
        raise LiftswapError(f"cannot write {shown}: it is a folder; give a file name inside it")
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        raise LiftswapError(f"cannot write {shown}: it exists and is not a regular file (a device, fifo or socket); give a file name")
    folder = target.parent
    if not folder.is_dir():
        raise LiftswapError(f"cannot write {shown}: folder {folder} does not exist")
    for src in inputs:
        if src is not None and _same_file(target, Path(src)):
            raise LiftswapError(f"cannot write {shown}: it is also an input ({src}); choose another {what} path")
    return target


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        return False
    return os.path.realpath(a) == os.path.realpath(b)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's live process
    return True


def _remove_stale(folder: Path, name: str) -> None:
    """Remove temporaries of ``name`` left by writers that no longer run (killed by SIGKILL)."""
    prefix = f".{name}.liftswap-"
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
            continue
        pid = entry.name[len(prefix) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue  # a live writer's (ours may be in use by another thread)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            try:
                entry.unlink()
            except OSError:
                pass


def private_temp(target: Path, folder: bool = False) -> Path:
    """A new temporary file (or folder) beside ``target``, named for this process; stale ones go first."""
    _remove_stale(target.parent, target.name)
    prefix = f".{target.name}.liftswap-{os.getpid()}-"
    if folder:
        return Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=target.parent))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(tmp)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Call ``write(tmp_path)``, then rename over ``path``: a failure leaves no partial file."""
    target = check_output(path, inputs)
    tmp = private_temp(target)
    try:
        write(str(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, target)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
