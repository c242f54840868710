"""The kernel log of a boot: the firmware's PCI assignment as the kernel found it, and what it changed.

While it enumerates, before it assigns anything, the kernel prints what the firmware left in
each function's registers (drivers/pci/probe.c ``__pci_read_base``, ``pci_read_bridge_*``):

* ``pci 0000:00:02.0: [1b36:000c] type 01 class 0x060400 PCIe Root Port``
* ``pci 0000:00:02.0: BAR 0 [mem 0xfe400000-0xfe400fff]`` (6.1 as Debian ships it, 6.12), or the
  older ``pci 0000:00:02.0: reg 0x10: [mem 0xfe400000-0xfe400fff]``; ``ROM [...]`` / ``reg 0x30``;
  ``VF BAR 0 [...]`` / ``reg 0x1a4`` (SR-IOV);
* ``pci 0000:00:02.0: PCI bridge to [bus 01-04]`` and ``pci 0000:00:02.0:   bridge window [mem ...]``;
* ``pci 0000:00:03.0: bridge configuration invalid ([bus 01-00]), reconfiguring`` (probe.c
  ``pci_scan_bridge_extend``: the firmware's bus numbers, rejected);
* ``pci_bus 0000:00: root bus resource [mem 0x40000000-0xafffffff window]`` (host bridge windows).

After that (``pcibios_resource_survey``, ``pci_assign_unassigned_resources``) come the lines that
say what the kernel changed: ``...: assigned``, ``can't assign; no space``, ``can't claim``,
``releasing`` / ``released``, ``No. 2 try to assign unassigned res``.

:func:`parse_dmesg` splits the log there. A log whose first line is not the kernel's first
(``[    0.000000] Linux version``) has wrapped: the enumeration may be lost, and then the
firmware's state is unknown (:attr:`DmesgBoot.firmware_known` is False); nothing is guessed.

Layer rule: stdlib and :mod:`explorer.model` only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..model import Address
from ..model.firmware import DmesgBoot, FwDevice, FwResource, FwRoot
from .errors import SourceError

__all__ = [
    "DmesgBoot",
    "FwDevice",
    "FwResource",
    "FwRoot",
    "parse_dmesg",
    "read_dmesg",
    "load_dmesg",
]

#: Longest kernel log read (the ring buffer is at most a few MiB).
_MAX_BYTES = 32 << 20


#: optional syslog / ``journalctl -k`` prefix ("Dec 07 05:50:23 host kernel: "), level, timestamp
_TS = (r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ kernel: |\S+T\S+ \S+ kernel: )?"
       r"(?:<\d+>)?(?:\[\s*(?P<ts>\d+\.\d+)\]\s*)?")
_BDF = r"(?P<bdf>[0-9a-fA-F]{4,5}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])"
_RES = r"\[(?P<res>(?:io|mem)\s+[^\]]*)\]"
_LINE_DEV = re.compile(_TS + r"(?:pci|pcieport|[\w-]+) " + _BDF + r": (?P<msg>.*)$")
_LINE_BUS = re.compile(_TS + r"pci_bus (?P<dom>[0-9a-fA-F]{4,5}):(?P<bus>[0-9a-fA-F]{2}): (?P<msg>.*)$")
_ID = re.compile(r"^\[(?P<v>[0-9a-f]{4}):(?P<d>[0-9a-f]{4})\] type (?P<t>[0-9a-f]{2}) class 0x(?P<c>[0-9a-f]{6})")
_BAR = re.compile(r"^(?:BAR (?P<n>\d)|reg 0x(?P<reg>[0-9a-f]+):|(?P<rom>ROM)|VF BAR (?P<vf>\d)) " + _RES + r"(?P<rest>.*)$")
#: 6.12 "VF BAR 0 [mem ...]: contains BAR 0 for 7 VFs"; 6.1 "VF(n) BAR0 space: [mem ...] (contains BAR0 for 7 VFs)"
_VF_TOTAL = re.compile(r"^(?:VF BAR (?P<n>\d) " + _RES + r": contains BAR \d+ for \d+ VFs|"
                       r"VF\(n\) BAR(?P<n2>\d) space: " + _RES.replace("res>", "res2>") + r")")
_WIN = re.compile(r"^  bridge window " + _RES + r"\s*$")
_BRIDGE_TO = re.compile(r"^PCI bridge to \[bus (?P<s>[0-9a-f]{2})(?:-(?P<e>[0-9a-f]{2}))?\]")
_INVALID = re.compile(r"^bridge configuration invalid \(\[bus (?P<s>[0-9a-f]{2})-(?P<e>[0-9a-f]{2})\]\)")
_ROOT_RES = re.compile(r"^root bus resource (?:\[bus (?P<b0>[0-9a-f]{2})(?:-(?P<b1>[0-9a-f]{2}))?\]|" + _RES + r")")
_RES_BODY = re.compile(r"^(?P<k>io|mem)\s+(?:size (?P<size>0x[0-9a-f]+)|(?P<s>0x[0-9a-f]+)(?:-(?P<e>0x[0-9a-f]+))?)"
                       r"(?P<flags>(?: \w+)*)$")
#: Lines that only the survey and the assignment print: the enumeration is over.
_AFTER = re.compile(r"add_size|: assigned|can't assign|can't claim|failed to assign|try to assign|max bus depth|"
                    r"released|releasing|reassigned|failed to expand|disabling bridge window|"
                    r"^resource \d+ \[|Some PCI device resources are unassigned|Automatically enabled pci realloc")


def parse_resource(body: str) -> FwResource | None:
    """``mem 0xfe400000-0xfe400fff 64bit pref`` (the inside of ``%pR``)."""
    m = _RES_BODY.match(body.strip())
    if not m:
        return None
    flags = (m.group("flags") or "").split()
    if m.group("size"):
        start, end, unset = 0, int(m.group("size"), 16) - 1, True
    else:
        start = int(m.group("s"), 16)
        end = int(m.group("e"), 16) if m.group("e") else start
        unset = False
    return FwResource(m.group("k"), start, end, "64bit" in flags, "pref" in flags, unset, "disabled" in flags)


def _reg_to_bar(reg: int) -> tuple[str, int] | None:
    if 0x10 <= reg <= 0x24 and reg % 4 == 0:
        return ("bar", (reg - 0x10) // 4)
    if reg in (0x30, 0x38):
        return ("rom", 0)
    if reg >= 0x100:
        return ("vf", -1)  # the SR-IOV capability's BARs: numbered in order seen
    return None


def parse_dmesg(text: str, path: str = "dmesg") -> DmesgBoot:
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    m0 = re.match(_TS + r"Linux version", first)
    complete = bool(m0) and (m0.group("ts") is None or float(m0.group("ts")) == 0.0)
    boot = DmesgBoot(path, complete, False)
    m = re.match(_TS + r"Linux version (?P<rel>\S+)", first)
    if m:
        boot.kernel_release = m.group("rel")
    for ln in lines:
        mg = re.match(_TS + r"\[mem (?P<s>0x[0-9a-f]+)-0x[0-9a-f]+\] available for PCI devices", ln)
        if mg:
            boot.pci_mem_start = int(mg.group("s"), 16)
            break
    for ln in lines[:400]:
        mc = re.match(_TS + r"(?:Kernel )?[Cc]ommand line: (?P<cmd>.*)$", ln)
        if mc:
            boot.cmdline = mc.group("cmd").strip()
            break
    roots: dict[tuple[int, int], dict] = {}
    enumerating = False
    over = False
    current_bridge: FwDevice | None = None
    for no, ln in enumerate(lines, 1):
        mb = _LINE_BUS.match(ln)
        if mb:
            msg = mb.group("msg")
            key = (int(mb.group("dom"), 16), int(mb.group("bus"), 16))
            mr = _ROOT_RES.match(msg)
            if mr and not over:
                enumerating = True
                root = roots.setdefault(key, {"range": None, "windows": []})
                if mr.group("b0"):
                    b0 = int(mr.group("b0"), 16)
                    root["range"] = (b0, int(mr.group("b1"), 16) if mr.group("b1") else b0)
                else:
                    r = parse_resource(mr.group("res"))
                    if r is not None:
                        root["windows"].append(r)
            elif enumerating and (over or _AFTER.search(msg)):
                over = True
                boot.changes.append(ln.strip())
            continue
        md = _LINE_DEV.match(ln)
        if not md:
            continue
        msg = md.group("msg")
        if not enumerating:
            continue
        if over or _AFTER.search(msg):
            over = True
            boot.changes.append(ln.strip())
            continue
        try:
            addr = Address.parse(md.group("bdf"))
        except ValueError:
            continue
        dev = boot.devices.get(addr)
        mi = _ID.match(msg)
        if mi:
            dev = boot.devices.setdefault(addr, FwDevice(addr, no))
            dev.vendor_id, dev.device_id = int(mi.group("v"), 16), int(mi.group("d"), 16)
            dev.header_type, dev.class_code = int(mi.group("t"), 16), int(mi.group("c"), 16)
            continue
        if dev is None:
            continue
        mvf = _VF_TOTAL.match(msg)
        if mvf:
            # sriov_init(): the IOV resource (all VFs), after the one-VF size printed by __pci_read_base
            r = parse_resource(mvf.group("res") or mvf.group("res2"))
            if r is not None:
                dev.vf_bars[int(mvf.group("n") or mvf.group("n2"))] = r
            continue
        if msg.startswith("Video device with shadowed ROM"):
            dev.rom = None  # pci_fixup_video: the shadow copy is fixed, never assigned
            continue
        mbar = _BAR.match(msg)
        if mbar:
            r = parse_resource(mbar.group("res"))
            if r is None:
                continue
            if mbar.group("n") is not None:
                dev.bars.setdefault(int(mbar.group("n")), r)
            elif mbar.group("rom"):
                if dev.rom is None:
                    dev.rom = r
            elif mbar.group("vf") is not None:
                dev.vf_bars.setdefault(int(mbar.group("vf")), r)
            else:
                what = _reg_to_bar(int(mbar.group("reg"), 16))
                if what is None:
                    continue
                if what[0] == "bar":
                    dev.bars.setdefault(what[1], r)
                elif what[0] == "rom":
                    if dev.rom is None:
                        dev.rom = r
                else:
                    dev.vf_bars.setdefault(len(dev.vf_bars), r)
            continue
        mv = _INVALID.match(msg)
        if mv:
            dev.fw_secondary, dev.fw_subordinate = int(mv.group("s"), 16), int(mv.group("e"), 16)
            dev.fw_bus_invalid = True
            continue
        mt = _BRIDGE_TO.match(msg)
        if mt:
            current_bridge = dev
            if dev.fw_secondary is None:
                s = int(mt.group("s"), 16)
                dev.fw_secondary = s
                dev.fw_subordinate = int(mt.group("e"), 16) if mt.group("e") else s
            continue
        mw = _WIN.match(msg)
        if mw and current_bridge is dev:
            r = parse_resource(mw.group("res"))
            if r is not None:
                kind = "io" if r.kind == "io" else ("pref" if r.prefetchable else "mem")
                dev.windows.setdefault(kind, r)
            continue
    # A bridge renumbered in pass 1 printed "PCI bridge to [bus NN-ff]" before its invalid line
    # only on kernels that print the firmware's range first; the invalid line wins (set above).
    for (dom, bus), r in roots.items():
        boot.roots.append(FwRoot(dom, bus, r["range"], tuple(r["windows"])))
    boot.firmware_known = bool(boot.roots) and bool(boot.devices)
    body = [ln for ln in lines if ln.strip()]
    if body and all("root bus resource" in ln for ln in body):
        boot.complete = False
        boot.notes.append("the kernel log kept has only the host bridges' lines (an extract, not the log): "
                          "the firmware's assignment is not in it")
    elif not boot.complete:
        boot.notes.append("the kernel log does not begin with the kernel's first line: it has wrapped"
                          + ("" if boot.firmware_known else ", and the PCI enumeration is lost"))
    if boot.complete and not boot.firmware_known:
        boot.notes.append("the kernel log has no PCI enumeration lines (loglevel too low, or no PCI host bridge)")
    if boot.firmware_known and not over:
        boot.notes.append("the kernel log ends before the kernel assigned resources")
    return boot


def read_dmesg(spec: str | None) -> tuple[str, str] | None:
    """The kernel log kept with a SOURCE: ``(where, text)``, or None when the source has none.

    A snapshot archive (``dmesg.txt`` at its top), an unpacked snapshot or sysfs root directory
    (``DIR/dmesg.txt``), or a plain kernel log file. The live machine's log is not read here.
    """
    if not spec or spec.startswith("builtin:"):
        return None
    p = Path(spec)
    if p.is_dir():
        f = p / "dmesg.txt"
        if f.is_file():
            return str(f), _decode(f.read_bytes()[:_MAX_BYTES])
        return None
    if not p.is_file():
        return None
    with open(p, "rb") as fh:
        head = fh.read(512)
    if head[:2] == b"\x1f\x8b" or (len(head) > 262 and head[257:262] == b"ustar"):
        import tarfile  # a snapshot's log only: a sysfs directory needs none of it

        try:
            with tarfile.open(p, mode="r:*") as tf:
                for ti in tf:
                    name = ti.name[2:] if ti.name.startswith("./") else ti.name
                    if name != "dmesg.txt":
                        continue
                    if not ti.isreg() or ti.size > _MAX_BYTES:
                        return None
                    fh2 = tf.extractfile(ti)
                    if fh2 is None:
                        return None
                    return f"{spec}#dmesg.txt", _decode(fh2.read(_MAX_BYTES))
        except (tarfile.TarError, OSError, EOFError) as e:
            raise SourceError(f"cannot read the archive: {e}", path=spec) from None
        return None
    text = _decode(open(p, "rb").read(_MAX_BYTES))
    if re.search(r"(?:^(?:<\d+>)?\[\s*\d+\.\d+\] | kernel: )", text, re.M) and ("pci" in text):
        return spec, text
    return None


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def load_dmesg(spec: str | None, dmesg: str | None = None) -> DmesgBoot | None:
    """Parse the kernel log of SOURCE (or the file ``dmesg``); None when there is none."""
    if dmesg is not None:
        if not os.path.isfile(dmesg):
            raise SourceError("no such file", path=dmesg)
        with open(dmesg, "rb") as f:
            return parse_dmesg(_decode(f.read(_MAX_BYTES)), dmesg)
    got = read_dmesg(spec)
    if got is None:
        return None
    return parse_dmesg(got[1], got[0])
