"""Shared fixtures: the real-kernel captures, unpacked once per session."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
QEMU = FIXTURES / "qemu"
LSPCI = FIXTURES / "lspci"
PCIUTILS = FIXTURES / "pciutils"


def capture_names() -> list[str]:
    """Every capture tarball name (without .tar.gz), pre-hot-add states included."""
    return sorted(p.name[: -len(".tar.gz")] for p in QEMU.glob("*.tar.gz"))


@pytest.fixture(scope="session")
def unpacked(tmp_path_factory):
    """unpacked(name) -> directory holding that capture's sys/ and proc/."""
    base = tmp_path_factory.mktemp("captures")
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        """``NAME`` (a capture in qemu/) or ``FOLDER/NAME`` (e.g. ``qemu-6.12/NAME``)."""
        if name not in cache:
            folder, _, base_name = name.rpartition("/")
            dest = base / name.replace("/", "__")
            dest.mkdir()
            with tarfile.open((FIXTURES / folder if folder else QEMU) / f"{base_name}.tar.gz") as tf:
                tf.extractall(dest, filter="tar")
            cache[name] = dest
        return cache[name]

    return get


# Property tests explore new inputs on developers' machines; in CI they replay a fixed,
# derandomized sequence so a run is repeatable (failures found locally become regressions).
try:
    import os as _os

    from hypothesis import settings as _hsettings

    _hsettings.register_profile("ci", derandomize=True, print_blob=True)
    if _os.environ.get("CI"):
        _hsettings.load_profile("ci")
except ImportError:  # pragma: no cover
    pass
