"""Config-space hex dumps: ``lspci -x`` / ``-xxx`` / ``-xxxx`` (what ``lspci -F`` reads).

Each device's dump is lines of ``OFF: b0 b1 ... b15`` (``OFF`` two or three hex
digits, a multiple of 16). This module turns those lines back into bytes and feeds
them to the one config-space decoder, :func:`explorer.sources.config.decode_config`,
so a dump and a sysfs ``config`` file are read by the same code.

A dump says nothing the kernel alone knows: BAR sizes (they need probing), the
driver, the IOMMU group. :mod:`explorer.sources.lspci` takes those from the text
part of the same output when there is one.

Dumps are always prefixes of config space (64, 256 or 4096 bytes). A 256-byte dump
does not say whether extended config space exists, so extended capabilities stay
unknown for it (``decode_config(data, file_size=None)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from ..model import ABSENT, Bar, BarKind, BridgeInfo, SlotInfo
from .config import ConfigFacts, decode_config

__all__ = ["HEX_LINE_RE", "HexDump", "assemble", "is_hex_line", "decode_dump", "config_fields", "ROM_INDEX"]

#: ``00: 86 80 29 c0 ...`` (up to 16 bytes; a truncated last line is accepted).
HEX_LINE_RE = re.compile(r"^[ \t]*([0-9a-fA-F]{2,3}):((?:[ \t]+[0-9a-fA-F]{2}){1,16})[ \t]*$")
#: Cheap pre-check: hex digits then ``: `` then a byte.
_HEX_PREFIX_RE = re.compile(r"^[ \t]*[0-9a-fA-F]{2,3}: [0-9a-fA-F]{2}")

#: The index the kernel's ``resource`` file (and so the model) gives the expansion ROM.
ROM_INDEX = 6
_MAX_CONFIG = 4096


def is_hex_line(line: str) -> bool:
    """True for one line of a config-space hex dump."""
    return bool(_HEX_PREFIX_RE.match(line)) and bool(HEX_LINE_RE.match(line))


@dataclass
class HexDump:
    """The bytes of one device's dump: the contiguous prefix of config space shown."""

    data: bytes
    first_line: int | None = None
    warnings: list[str] = field(default_factory=list)


def assemble(lines: Iterable[tuple[int, str]], where: str = "") -> HexDump:
    """Rebuild config bytes from ``(line number, text)`` hex lines of one device.

    Only the contiguous prefix from offset 0 is kept: a missing, repeated or
    misaligned line ends the usable data there, and each oddity becomes a warning
    naming its line (``where`` prefixes the messages, e.g. the device address).
    """
    prefix = f"{where}: " if where else ""
    chunks: dict[int, tuple[bytes, int]] = {}
    warnings: list[str] = []
    first: int | None = None
    for lineno, text in lines:
        m = HEX_LINE_RE.match(text)
        if not m:
            warnings.append(f"{prefix}line {lineno}: not a hex dump line; skipped")
            continue
        if first is None:
            first = lineno
        off = int(m.group(1), 16)
        if off % 16 or off >= _MAX_CONFIG:
            warnings.append(f"{prefix}line {lineno}: hex offset {off:#x} is not a multiple of 16 below 0x1000; skipped")
            continue
        if off in chunks:
            warnings.append(f"{prefix}line {lineno}: hex offset {off:#x} given twice (first on line {chunks[off][1]}); skipped")
            continue
        chunks[off] = (bytes.fromhex(m.group(2).replace("\t", " ")), lineno)
    data = bytearray()
    off = 0
    while off in chunks:
        chunk, lineno = chunks[off]
        data += chunk
        if len(chunk) < 16:
            off += 16
            if any(o >= off for o in chunks):
                warnings.append(f"{prefix}line {lineno}: short hex line at offset {off - 16:#x}; bytes after it ignored")
            break
        off += 16
    else:
        beyond = sorted(o for o in chunks if o > off)
        if beyond:
            warnings.append(
                f"{prefix}line {chunks[beyond[0]][1]}: hex dump has no line for offset {off:#x}; "
                f"{len(beyond)} line(s) after the gap ignored"
            )
    if not data and chunks:
        warnings.append(f"{prefix}hex dump does not start at offset 0; ignored")
    return HexDump(bytes(data), first, warnings)


def decode_dump(data: bytes) -> ConfigFacts:
    """Decode a dump. It is a prefix of config space of unknown total size."""
    return decode_config(data, file_size=None)


def _bar(raw_index: int, kind: BarKind, base: int) -> Bar:
    return Bar(raw_index, kind, start=base or None, size=None, unassigned=base == 0)


def config_fields(facts: ConfigFacts, data: bytes) -> dict[str, object]:
    """Function keyword arguments that the config bytes alone establish.

    Facts the bytes cannot give (BAR sizes, names, driver, group, NUMA node,
    physical slot name) are left out; unknown facts are None.
    """
    out: dict[str, object] = {
        "vendor_id": facts.vendor_id,
        "device_id": facts.device_id,
        "subsystem_vendor_id": facts.subsystem_vendor_id,
        "subsystem_device_id": facts.subsystem_device_id,
        "class_code": facts.class_code,
        "revision": facts.revision,
        "header_type": facts.header_type,
        "multifunction": facts.multifunction,
        "pcie_type": facts.pcie_type,
        "config_size": facts.length,
        "caps": facts.caps,
        "link": facts.link,
    }
    ht = facts.header_type
    if ht in (0, 1) and facts.length >= (0x28 if ht == 0 else 0x18):
        out["bars"] = tuple(_bar(b.index, b.kind, b.base) for b in facts.bars)
    if facts.rom_base is not None:
        # A ROM register reading 0 is either no ROM or an unassigned one: unknown.
        if facts.rom_base:
            out["rom"] = Bar(
                ROM_INDEX, BarKind.PREF32, start=facts.rom_base, size=None,
                disabled=True if facts.rom_enabled is False else None,
            )
    if ht == 1 and facts.bridge is not None:
        out["bridge"] = facts.bridge
    elif ht == 2 and facts.length >= 0x1B:
        # CardBus: primary/CardBus/subordinate bus numbers at 0x18..0x1a; its
        # windows are not the model's three kinds, so they stay unknown.
        out["bridge"] = BridgeInfo(data[0x18], data[0x19], data[0x1A])
    elif ht == 0:
        out["bridge"] = ABSENT
    if facts.caps.sriov is not None and facts.caps.sriov is not ABSENT:
        out["vf_bars"] = tuple(_bar(b.index, b.kind, b.base) for b in facts.vf_bars)
    elif facts.caps.sriov is ABSENT:
        out["vf_bars"] = ()
    if facts.slot_implemented:
        out["slot"] = SlotInfo(number=facts.slot_number, hotplug=facts.slot_hotplug, surprise=facts.slot_surprise)
    elif facts.pcie_type is not None:
        out["slot"] = ABSENT
    return out

