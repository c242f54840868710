"""Damaged lspci output never crashes the loader.

Real files (lspci text, pciutils dumps with hex, real-kernel captures) are mutated:
lines deleted, duplicated, shuffled within a device block, the file truncated,
random characters or bytes injected, digits changed. Whatever comes out, the loader
either returns a consistent Topology or raises SourceError, nothing else.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import LSPCI, PCIUTILS, QEMU
from explorer.model import Topology
from explorer.sources import SourceError
from explorer.sources.lspci import load_lspci, load_lspci_text

FILES = sorted(
    [p for p in LSPCI.glob("*.txt")]
    + [p for p in PCIUTILS.iterdir() if p.name != "INDEX.tsv"]
    + [p for p in QEMU.glob("*.lspci.txt")]
)
TEXTS = {p.name: p.read_text(encoding="utf-8", errors="replace") for p in FILES}
# Small and varied inputs keep examples fast; every file is still in the pool.
NAMES = sorted(TEXTS)
_HEADER = re.compile(r"^(?:[0-9a-f]{4,8}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[0-7] ")

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _check(text: str) -> None:
    try:
        t = load_lspci_text(text, path="fuzz.txt")
    except SourceError as e:
        assert str(e).startswith("fuzz.txt")
        return
    assert isinstance(t, Topology)
    assert all(isinstance(w, str) for w in t.source.warnings)
    for fn in t:
        assert fn.parent is None or fn.parent in t.functions
        assert all(v in t.functions for v in fn.virtfns)
        assert fn.physfn is None or fn.physfn in t.functions
        assert fn.parent != fn.address
    # No parent cycles.
    for fn in t:
        assert len(t.path_to_root(fn.address)) <= len(t)
    assert len({(h.domain, h.root_bus) for h in t.host_bridges}) == len(t.host_bridges)


def _blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(start, end) line ranges of device blocks."""
    starts = [i for i, ln in enumerate(lines) if _HEADER.match(ln)] + [len(lines)]
    return list(zip(starts, starts[1:]))


@st.composite
def mutated(draw) -> str:
    name = draw(st.sampled_from(NAMES))
    lines = TEXTS[name].split("\n")
    for _ in range(draw(st.integers(1, 6))):
        if not lines:
            break
        op = draw(st.sampled_from(["delete", "duplicate", "shuffle", "truncate", "inject", "digits", "bytes", "swap"]))
        i = draw(st.integers(0, len(lines) - 1))
        if op == "delete":
            n = draw(st.integers(1, 20))
            del lines[i:i + n]
        elif op == "duplicate":
            n = draw(st.integers(1, 20))
            lines[i:i] = lines[i:i + n]
        elif op == "shuffle":
            blocks = _blocks(lines)
            if blocks:
                s, e = draw(st.sampled_from(blocks))
                body = lines[s + 1:e]
                lines[s + 1:e] = draw(st.permutations(body))
        elif op == "truncate":
            text = "\n".join(lines)
            cut = draw(st.integers(0, len(text)))
            lines = text[:cut].split("\n")
        elif op == "inject":
            junk = draw(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40))
            ln = lines[i]
            at = draw(st.integers(0, len(ln)))
            lines[i] = ln[:at] + junk + ln[at:]
        elif op == "digits":
            ln = lines[i]
            lines[i] = re.sub(r"[0-9a-f]", lambda m: draw(st.sampled_from("0123456789abcdefz")), ln, count=draw(st.integers(1, 8)))
        elif op == "bytes":
            raw = draw(st.binary(min_size=1, max_size=32))
            lines.insert(i, raw.decode("utf-8", "replace"))
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    sep = draw(st.sampled_from(["\n", "\r\n", "\n"]))
    quote = draw(st.sampled_from(["", "", "> "]))
    return sep.join(quote + ln for ln in lines)


@SETTINGS
@given(mutated())
def test_mutated_real_files_never_crash(text):
    _check(text)


@SETTINGS
@given(st.sampled_from(NAMES), st.data())
def test_random_prefixes_never_crash(name, data):
    text = TEXTS[name]
    cut = data.draw(st.integers(0, len(text)))
    _check(text[:cut])


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000))
def test_random_bytes_file(tmp_path_factory, raw):
    p = tmp_path_factory.mktemp("fuzz") / "x.txt"
    p.write_bytes(raw)
    try:
        t = load_lspci(p)
    except SourceError:
        return
    assert isinstance(t, Topology)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([
    "00:00.0 Host bridge [0600]: Intel Corporation Device [8086:a700] (rev 01)",
    "01:00.0 PCI bridge [0604]: V D [1234:5678] (prog-if 00 [Normal decode])",
    "10000:e0:1d.0 PCI bridge [0604]: Intel Corporation Device [8086:a0b0]",
    "00:0e.0 RAID bus controller [0104]: Intel Corporation VMD [8086:9a0b]",
    "\tBus: primary=00, secondary=01, subordinate=ff, sec-latency=0",
    "\tBus: primary=01, secondary=01, subordinate=00, sec-latency=0",
    "\tBus: primary=00, secondary=e1, subordinate=e1, sec-latency=0",
    "\tControl: I/O+ Mem+", "\tStatus: Cap+ 66MHz-", "\tStatus: Cap- 66MHz-",
    "\tCapabilities: [40] Express (v2) Root Port (Slot+), MSI 00",
    "\t\tSltCap:\tAttnBtn- HotPlug+ Surprise+", "\t\t\tSlot #ffffffffff, PowerLimit 0W",
    "\tCapabilities: [100 v1] Single Root I/O Virtualization (SR-IOV)",
    "\t\tInitial VFs: 65535, Total VFs: 65535, Number of VFs: 65535, Function Dependency Link: 00",
    "\t\tVF offset: 0, stride: 0, Device ID: 5678",
    "\t\tVF offset: 1, stride: 1, Device ID: 5678",
    "\t\tRegion 9: Memory at 00000000 (64-bit, prefetchable)",
    "\tRegion 0: Memory at ffffffffffffffffffff (64-bit, prefetchable) [size=99999999T]",
    "\tI/O behind bridge: ffff-0000", "\tMemory behind bridge: 0-ffffffffffffffffff",
    "\tCapabilities: [160 v2] Root Complex Event Collector Endpoint Association",
    "\t\tRCiEPBitmap: RCiEP at Device(s): 40-99, x", "\t\tAssociatedBusNumbers: zz-00",
    "\tCapabilities: <access denied>", "\tKernel driver in use: x", "\tIOMMU group: 1",
    "00: 86 80 29 c0 07 00 10 00 00 00 00 06 00 00 81 00", "10: 00", "20: ff ff",
    "", "garbage", "pcilib: oops",
]), max_size=60))
def test_random_line_soup_never_crashes(lines):
    _check("\n".join(lines))
