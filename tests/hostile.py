"""Hostile inputs, made at run time (nothing big is committed): shared by tests/test_hostile.py
and bench/fuzz.

Each maker writes a small input into a directory and returns its path. The bombs are small
versions of the real thing: big enough to show that reading is capped and linear (a config
file larger than any config space, a YAML file whose aliases expand a billion times), small
enough for CI.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QEMU = REPO / "tests" / "fixtures" / "qemu"

#: Characters that must never reach a terminal raw (C0 but tab/newline, DEL, C1 CSI).
CONTROL = [chr(c) for c in range(0x20) if c not in (9, 10)] + ["\x7f", "\x9b"]
#: Strings an attacker puts where names go.
INJECTIONS = [
    "$(touch${IFS}/tmp/pwned)", "`id`", "a;reboot", "x|sh", "a&&b", "a\nb", "a\rb", "'quoted'", '"dq"',
    "a b", "\x1b]0;title\x07\x1b[2J", "a\x00b", "../../etc/passwd", "a\\b", "${HOME}", "a>b", "a<b", "*", "?",
    "a\u202eb", "x\x85y", "trailing\n",
]


def run_cli(args: list[str], *, timeout: float = 30, cwd: str | Path | None = None, env: dict | None = None,
            umask: int | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m explorer ARGS`` in a subprocess (bytes out), failing on a hang."""
    e = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    e.pop("PCI_EXPLORER_DEBUG", None)
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, timeout=timeout, cwd=cwd,
                          env=e, preexec_fn=pre)


def one_line_error(p: subprocess.CompletedProcess) -> str:
    """The error line of a refused run (exit 2, exactly one line on stderr, no traceback)."""
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 2, (p.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    lines = err.splitlines()
    assert len(lines) == 1, err[-2000:]
    assert not any(c in lines[0] for c in CONTROL), repr(lines[0])
    return lines[0]


def has_control(data: bytes) -> bool:
    text = data.decode("utf-8", "replace")
    return any(c in text for c in CONTROL)


# ---- snapshots --------------------------------------------------------------------------------


def base_members() -> list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]:
    """The members of a real capture (tests/fixtures/qemu/base.tar.gz), data read into memory."""
    out: list = []
    with tarfile.open(QEMU / "base.tar.gz") as tf:
        for m in tf.getmembers():
            if m.isreg():
                f = tf.extractfile(m)
                out.append((m, f.read() if f else b""))
            else:
                out.append(m)
    return out


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def snapshot(path: Path, extra: list[tuple[str, str, object]], *, drop: set[str] = frozenset()) -> Path:
    """A snapshot: the base capture's members (but ``drop``) and ``extra`` ones:
    (name, "file", bytes), (name, "zeros", size), (name, "link", target), (name, "dir", None)."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        for item in base_members():
            m, data = item if isinstance(item, tuple) else (item, None)
            if m.name.lstrip("./") in drop:
                continue
            tf.addfile(m, io.BytesIO(data) if data is not None else None)
        for name, kind, val in extra:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                val = val.encode() if isinstance(val, str) else val
                ti.size = len(val)  # type: ignore[arg-type]
                tf.addfile(ti, io.BytesIO(val))  # type: ignore[arg-type]
            elif kind == "zeros":
                ti.size = int(val)  # type: ignore[arg-type]
                tf.addfile(ti, io.BufferedReader(_Zeros(ti.size), 1 << 20))
            elif kind == "link":
                ti.type, ti.linkname = tarfile.SYMTYPE, str(val)
                tf.addfile(ti)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
    return path


DEV = "./sys/devices/pci0000:00/0000:00:1f.2"


def config_bomb(d: Path, size: int = 8 << 20) -> Path:
    return snapshot(d / "config-bomb.tar.gz", [(f"{DEV}/config", "zeros", size)], drop={DEV[2:] + "/config"})


def iomem_bomb(d: Path, size: int = 16 << 20) -> Path:
    return snapshot(d / "iomem-bomb.tar.gz", [("./proc/iomem", "zeros", size)], drop={"proc/iomem"})


def entries_bomb(d: Path, n: int = 20_000) -> Path:
    return snapshot(d / "entries-bomb.tar.gz", [(f"./sys/devices/pci0000:00/junk{i}", "file", b"") for i in range(n)])


def links_bomb(d: Path, n: int = 2_000) -> Path:
    extra = []
    for i in range(n):
        name = f"./sys/bus/pci/devices/0001:{(i >> 8) & 0xff:02x}:{(i >> 3) & 0x1f:02x}.{i & 7}"
        extra.append((name, "link", "../../../devices/pci0000:00/0000:00:1f.2"))
    return snapshot(d / "links-bomb.tar.gz", extra)


def sysfs_tree(d: Path) -> Path:
    """The base capture unpacked as a sysfs root directory."""
    root = d / "root"
    root.mkdir()
    with tarfile.open(QEMU / "base.tar.gz") as tf:
        tf.extractall(root, filter="tar")
    return root


# ---- YAML ---------------------------------------------------------------------------------------


def merge_bomb(levels: int = 9, width: int = 10) -> str:
    """Nested merge keys: ``&l1 {<<: [*l0 x width]}`` ``levels`` deep (width^levels mappings)."""
    lines = ["pci-explorer: topology/1", "defaults:", "  x0: &l0 {vendor-name: a}"]
    for i in range(1, levels + 1):
        lines.append(f"  x{i}: &l{i} {{<<: [" + ", ".join([f"*l{i - 1}"] * width) + "]}")
    return "\n".join(lines) + "\ndevices: []\n"


def laughs_bomb(levels: int = 9, width: int = 10, plan: bool = True) -> str:
    """The billion laughs as lists."""
    lines = ["pci-explorer-plan: 1" if plan else "pci-explorer: topology/1", "x0: &a0 [lol]"]
    for i in range(1, levels + 1):
        lines.append(f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


TOPOLOGY_TWO_BRIDGES = """pci-explorer: topology/1
devices:
  - address: 0000:01:00.0
    parent: {p1}
    ids: 8086:1234
    class: 060400
    bridge: {{bus-range: {r1}}}
  - address: 0000:02:00.0
    parent: {p2}
    ids: 8086:1234
    class: 060400
    bridge: {{bus-range: {r2}}}
"""


def random_text(rng: random.Random, n: int = 60) -> str:
    pool = INJECTIONS + ["a", "0000:00:00.0", ":", "=", ",", "-", "[", "]", "{", "}", "&x", "*x", "<<", "!!int", "#", "\t", " "]
    return "".join(rng.choice(pool) for _ in range(rng.randrange(1, n)))
