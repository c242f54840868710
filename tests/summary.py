"""Parse the plain-text summaries (NAME.txt) written beside each real-kernel capture.

They state what the kernel reported: devices with IDs, class, group and driver;
bridges' bus ranges and windows; BARs with the kernel's resource flags; PCIe type
and ACS. Tests compare our loaders against them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_RANGE = re.compile(r"(io|mem|pref)-window=\[(0x[0-9a-f]+)-(0x[0-9a-f]+)\]")
_BAR = re.compile(r"(VF-BAR\d|BAR\d|ROM)=\[(0x[0-9a-f]+)-(0x[0-9a-f]+) (0x[0-9a-f]+)\]")
_ACS = re.compile(r"acs\[(none|cap=(\S+) ctrl=(\S+))\]")


@dataclass
class SummaryDevice:
    bdf: str
    vendor: str
    device: str
    klass: str
    group: str | None
    driver: str | None
    bus_range: tuple[int, int] | None = None
    windows: dict[str, tuple[int, int] | None] = field(default_factory=lambda: {"io": None, "mem": None, "pref": None})
    bars: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # index -> (start, end, flags)
    rom: tuple[int, int, int] | None = None
    vf_bars: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    pcie_type: str | None = None
    acs: tuple[str, str] | None = None  # (cap, ctrl) flag strings, None when no ACS capability


def parse_summary(path: Path) -> dict[str, SummaryDevice]:
    section = ""
    devices: dict[str, SummaryDevice] = {}
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            section = line
            continue
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if section.startswith("## devices"):
            bdf, vd, klass = parts[0], parts[1], parts[2]
            kv = dict(p.split("=", 1) for p in parts[3:])
            group = kv.get("group")
            driver = kv.get("driver")
            devices[bdf] = SummaryDevice(
                bdf, vd.split(":")[0], vd.split(":")[1], klass,
                None if group in (None, "-", "none") else group,
                None if driver in (None, "-") else driver,
            )
        elif section.startswith("## bridges") and parts[0] in devices:
            d = devices[parts[0]]
            if len(parts) > 2 and parts[1] == "bus":
                s, e = parts[2].split("-")
                d.bus_range = (int(s), int(e))
            for kind, s, e in _RANGE.findall(line):
                d.windows[kind] = (int(s, 16), int(e, 16))
        elif section.startswith("## BARs") and parts[0] in devices:
            d = devices[parts[0]]
            for name, s, e, flags in _BAR.findall(line):
                val = (int(s, 16), int(e, 16), int(flags, 16))
                if name == "ROM":
                    d.rom = val
                elif name.startswith("VF-BAR"):
                    d.vf_bars[int(name[6:])] = val
                else:
                    d.bars[int(name[3:])] = val
        elif section.startswith("## PCIe type") and parts[0] in devices:
            d = devices[parts[0]]
            m = re.search(r"type=(\S+)", line)
            d.pcie_type = m.group(1) if m else None
            a = _ACS.search(line)
            if a and a.group(1) != "none":
                d.acs = (a.group(2), a.group(3))
    return devices


def expected_parent(devices: dict[str, SummaryDevice], bdf: str) -> str | None:
    """The innermost bridge whose bus range holds the device's bus (same domain).

    A bridge left unconfigured (secondary bus 0) forwards nothing.
    """
    dom, bus = bdf.split(":")[0], int(bdf.split(":")[1], 16)
    best = None
    for other in devices.values():
        if other.bus_range is None or other.bus_range[0] == 0 or other.bdf.split(":")[0] != dom or other.bdf == bdf:
            continue
        s, e = other.bus_range
        if s <= bus <= e and (best is None or (e - s) < (best[1] - best[0])):
            best = (s, e, other.bdf)
    return best[2] if best else None


def bar_kind(flags: int) -> str:
    if flags & 0x100:
        return "io"
    pref = bool(flags & 0x2000)
    is64 = bool(flags & 0x100000)
    return ("pref" if pref else "mem") + ("64" if is64 else "32")
