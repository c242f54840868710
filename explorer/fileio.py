"""Safe writes: atomic, and never over an existing file unless asked."""

from __future__ import annotations

import os
from pathlib import Path


class OutputExists(Exception):
    """The output file exists and overwriting was not asked for."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(f"{path}: already exists (use --force to replace it)")
        self.path = str(path)


def write_atomic(path: str | Path, data: str | bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename.

    Either the old file stays whole or the new one is there whole. Without
    ``overwrite`` an existing ``path`` is never touched (OutputExists).
    """
    path = Path(path)
    if not overwrite and (path.exists() or path.is_symlink()):
        raise OutputExists(path)
    directory = path.parent if str(path.parent) else Path(".")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    import tempfile  # here, not at import: every command imports this module, few write

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        if not overwrite:
            # link() fails if the name appeared meanwhile: no silent overwrite even in a race.
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExists(path) from None
            except OSError:
                if path.exists():
                    raise OutputExists(path) from None
                os.replace(tmp, path)
                return
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
