"""Safe writes: atomic, all or nothing, and never over an existing file unless asked.

* ``write_atomic`` writes one file through a temporary file beside it and a rename: the
  old file stays whole or the new one is there whole. Without ``overwrite`` an existing
  name is never touched (:class:`OutputExists`); even with it, a name that is not a
  regular file (a device, a FIFO, a socket, a directory, a symlink) is refused
  (:class:`OutputRefused`): ``-o /dev/null --force`` must not replace a device node.
* ``write_many_atomic`` checks every target before it writes any, stages every file, and
  only then renames them into place (a multi-file export is all or nothing).
* ``write_tree_atomic`` builds a directory tree beside its target and renames it into
  place, so a killed run never leaves a partial tree at the target's name.

New files get the mode the umask gives (``0o666 & ~umask``, ``0o777 & ~umask`` for
executables), as any other program's output would; a replaced file keeps its mode.
Errors name the target, never the hidden temporary file.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Callable, Iterable

__all__ = [
    "OutputExists",
    "OutputRefused",
    "check_target",
    "commit",
    "umask",
    "write_atomic",
    "write_many_atomic",
    "write_tree_atomic",
]


class OutputExists(Exception):
    """The output file exists and overwriting was not asked for."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(f"{path}: already exists (use --force to replace it)")
        self.path = str(path)


class OutputRefused(OSError):
    """The output cannot be written there (not a regular file, no such folder); one line."""

    def __init__(self, path: str | Path, why: str, code: int = errno.EINVAL) -> None:
        super().__init__(code, why, str(path))
        self.path = str(path)

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def check_target(path: str | Path, *, overwrite: bool, directory: bool = False) -> os.stat_result | None:
    """Check that ``path`` may be written; returns its stat when it exists (to replace).

    Raises OutputExists (exists, no ``overwrite``) or OutputRefused (its folder is missing,
    or it exists and is not a regular file — a directory for ``directory``).
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        pst = os.stat(parent)
    except FileNotFoundError:
        raise OutputRefused(path, f"no such folder: {parent}", errno.ENOENT) from None
    except OSError as e:
        raise OutputRefused(path, f"cannot use its folder {parent}: {e.strerror or e}", e.errno or errno.EIO) from None
    if not stat.S_ISDIR(pst.st_mode):
        raise OutputRefused(path, f"{parent} is not a folder", errno.ENOTDIR)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OutputRefused(path, e.strerror or str(e), e.errno or errno.EIO) from None
    want_dir = directory and stat.S_ISDIR(st.st_mode)
    if not (stat.S_ISREG(st.st_mode) or want_dir):
        raise OutputRefused(path, f"exists and is {_kind(st.st_mode)}, not a regular file: refusing to replace it"
                            + (" (even with --force)" if overwrite else ""))
    if not overwrite:
        raise OutputExists(path)
    return st


def _new_mode(executable: bool) -> int:
    return (0o777 if executable else 0o666) & ~umask()


def _stage(path: Path, raw: bytes, mode: int) -> str:
    directory = path.parent if str(path.parent) else Path(".")
    try:
        import tempfile  # here, not at import: most commands never write a file

        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise OutputRefused(path, f"cannot write in {directory}: {e.strerror or e}", e.errno or errno.EIO) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
    except BaseException as e:
        _unlink(tmp)
        if isinstance(e, OSError):
            raise OutputRefused(path, f"cannot write: {e.strerror or e}", e.errno or errno.EIO) from None
        raise
    return tmp


def _unlink(p: str) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


def commit(tmp: str, path: Path, overwrite: bool) -> None:
    """Move the staged ``tmp`` to ``path``; never over a name that appeared meanwhile
    (without ``overwrite``) and never over a non-regular file."""
    if overwrite:
        check_target(path, overwrite=True)  # still a regular file (or gone)
        os.replace(tmp, path)
        return
    # link() fails if the name appeared meanwhile: no silent overwrite even in a race.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExists(path) from None
    except OSError:
        if os.path.lexists(path):
            raise OutputExists(path) from None
        os.replace(tmp, path)
        return
    _unlink(tmp)


def write_atomic(
    path: str | Path, data: str | bytes, *, overwrite: bool = False, executable: bool = False
) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename.

    Either the old file stays whole or the new one is there whole. Without ``overwrite``
    an existing ``path`` is never touched (OutputExists); a ``path`` that exists and is not
    a regular file is refused even with it (OutputRefused).
    """
    write_many_atomic([(path, data, executable)], overwrite=overwrite)


def write_many_atomic(
    items: Iterable[tuple[str | Path, str | bytes, bool]], *, overwrite: bool = False
) -> None:
    """Write several files (path, data, executable) all or nothing.

    Every target is checked before anything is written; every file is staged beside its
    target; only then are they renamed into place. If placing one fails, the files this
    call created are removed again.
    """
    todo = []
    seen: set[str] = set()
    for path, data, executable in items:
        p = Path(path)
        key = os.path.abspath(p)
        if key in seen:
            raise OutputRefused(p, "named twice in one write (two documents would get the same file name)")
        seen.add(key)
        st = check_target(p, overwrite=overwrite)
        mode = stat.S_IMODE(st.st_mode) if st is not None and not executable else _new_mode(executable)
        raw = data.encode("utf-8") if isinstance(data, str) else data
        todo.append((p, raw, mode, st is not None))
    staged: list[tuple[Path, str, bool]] = []
    placed: list[Path] = []
    try:
        for p, raw, mode, existed in todo:
            staged.append((p, _stage(p, raw, mode), existed))
        for p, tmp, existed in staged:
            commit(tmp, p, overwrite)
            if not existed:
                placed.append(p)
    except BaseException:
        for _, tmp, _ in staged:
            _unlink(tmp)
        for p in placed:
            _unlink(str(p))
        raise


def write_tree_atomic(path: str | Path, build: Callable[[str], None], *, overwrite_empty_dir: bool = True) -> None:
    """Build a directory tree with ``build(tmpdir)`` beside ``path`` and rename it there.

    ``path`` must not exist, or be an empty directory (which the rename replaces). A run
    killed while building leaves only a hidden ``.NAME.*`` folder beside the target, never
    a partial tree at its name; on an exception (or SIGTERM turned into SystemExit) the
    temporary tree is removed.
    """
    p = Path(path)
    st = None
    try:
        st = check_target(p, overwrite=True, directory=True)
    except OutputRefused:
        raise
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            raise OutputRefused(p, "exists and is a file: give a new folder for the tree")
        if not overwrite_empty_dir or os.listdir(p):
            raise OutputExists(p)
    parent = p.parent if str(p.parent) else Path(".")
    try:
        import shutil
        import tempfile

        tmp = tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise OutputRefused(p, f"cannot write in {parent}: {e.strerror or e}", e.errno or errno.EIO) from None
    try:
        os.chmod(tmp, _new_mode(True))
        build(tmp)
        try:
            os.rename(tmp, p)
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise OutputExists(p) from None
            if e.errno == errno.ENOTDIR:
                raise OutputRefused(p, "exists and is a file: give a new folder for the tree") from None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
