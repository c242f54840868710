"""Human names for vendor, device, subsystem and class codes.

Names come from the system's pci.ids (``/usr/share/misc/pci.ids`` or
``/usr/share/hwdata/pci.ids``, or the file named by ``PCI_EXPLORER_PCI_IDS``)
when one is present, else from what the source itself said; a small table of
the standard class names ships here so classes always have a name. A missing
or unreadable pci.ids never fails anything.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field

from .device import Function

PCI_IDS_PATHS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")

# PCI Code and ID Assignment spec: base class and common subclasses.
_CLASS_NAMES = {
    0x00: "Unclassified device",
    0x01: "Mass storage controller",
    0x02: "Network controller",
    0x03: "Display controller",
    0x04: "Multimedia controller",
    0x05: "Memory controller",
    0x06: "Bridge",
    0x07: "Communication controller",
    0x08: "Generic system peripheral",
    0x09: "Input device controller",
    0x0A: "Docking station",
    0x0B: "Processor",
    0x0C: "Serial bus controller",
    0x0D: "Wireless controller",
    0x0E: "Intelligent controller",
    0x0F: "Satellite communications controller",
    0x10: "Encryption controller",
    0x11: "Signal processing controller",
    0x12: "Processing accelerators",
    0x13: "Non-Essential Instrumentation",
    0x40: "Coprocessor",
    0xFF: "Unassigned class",
}
_SUBCLASS_NAMES = {
    0x0100: "SCSI storage controller",
    0x0101: "IDE interface",
    0x0104: "RAID bus controller",
    0x0106: "SATA controller",
    0x0107: "Serial Attached SCSI controller",
    0x0108: "Non-Volatile memory controller",
    0x0180: "Mass storage controller",
    0x0200: "Ethernet controller",
    0x0207: "Infiniband controller",
    0x0280: "Network controller",
    0x0300: "VGA compatible controller",
    0x0302: "3D controller",
    0x0380: "Display controller",
    0x0401: "Multimedia audio controller",
    0x0403: "Audio device",
    0x0480: "Multimedia controller",
    0x0500: "RAM memory",
    0x0580: "Memory controller",
    0x0600: "Host bridge",
    0x0601: "ISA bridge",
    0x0604: "PCI bridge",
    0x0607: "CardBus bridge",
    0x0609: "Semi-transparent PCI-to-PCI bridge",
    0x0680: "Bridge",
    0x0700: "Serial controller",
    0x0780: "Communication controller",
    0x0800: "PIC",
    0x0805: "SD Host controller",
    0x0806: "IOMMU",
    0x0807: "Root Complex Event Collector",
    0x0880: "System peripheral",
    0x0C03: "USB controller",
    0x0C05: "SMBus",
    0x0C80: "Serial bus controller",
    0x0D80: "Wireless controller",
    0x1080: "Encryption controller",
    0x1180: "Signal processing controller",
    0x1200: "Processing accelerators",
}


@dataclass
class PciIds:
    """A parsed pci.ids database (vendors, devices, subsystems, classes)."""

    path: str | None = None
    vendors: dict[int, str] = field(default_factory=dict)
    devices: dict[tuple[int, int], str] = field(default_factory=dict)
    subsystems: dict[tuple[int, int, int, int], str] = field(default_factory=dict)
    #: keyed (base,), (base, sub) or (base, sub, prog_if)
    classes: dict[tuple[int, ...], str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, path: str | None = None, subsystem_lines: dict | None = None) -> "PciIds":
        """The database in ``text``. With ``subsystem_lines``, the subsystem lines are not
        parsed but kept there, raw, under the (vendor, device) they belong to
        (:func:`_parse_subsystem_line` parses them later)."""
        db = cls(path=path)
        vendor = device = None
        cls_base = cls_sub = None
        in_classes = False
        for raw in text.splitlines():
            try:
                if raw[:1] == "\t":  # most lines: a device or a subsystem (tested first)
                    if in_classes:
                        if raw.startswith("\t\t") and cls_base is not None and cls_sub is not None:
                            code, _, name = raw[2:].partition("  ")
                            db.classes[(cls_base, cls_sub, int(code, 16))] = name.strip()
                        elif cls_base is not None:
                            code, _, name = raw[1:].partition("  ")
                            cls_sub = int(code, 16)
                            db.classes[(cls_base, cls_sub)] = name.strip()
                    elif raw[1:2] == "\t":
                        if vendor is None or device is None:
                            continue
                        if subsystem_lines is not None:
                            subsystem_lines.setdefault((vendor, device), []).append(raw)
                            continue
                        key, name = _parse_subsystem_line(vendor, device, raw)
                        db.subsystems[key] = name
                    elif vendor is not None:
                        code, _, name = raw[1:].partition("  ")
                        device = int(code, 16)
                        db.devices[(vendor, device)] = name.strip()
                    continue
                if not raw or raw[0] == "#":
                    continue
                if raw.startswith("C "):
                    in_classes = True
                    code, _, name = raw[2:].partition("  ")
                    cls_base = int(code, 16)
                    cls_sub = None
                    db.classes[(cls_base,)] = name.strip()
                    continue
                in_classes = False
                code, _, name = raw.partition("  ")
                vendor = int(code, 16)
                db.vendors[vendor] = name.strip()
            except ValueError:
                continue  # a malformed line in pci.ids is skipped, never fatal
        return db

    def class_name(self, code: int) -> str | None:
        base, sub = code >> 16, (code >> 8) & 0xFF
        return self.classes.get((base, sub)) or self.classes.get((base,))

    @classmethod
    def parse_indexed(cls, text: str, path: str | None = None) -> "PciIds":
        """The same database, built lazily: vendor names and classes at once (one regular
        expression pass over the top-level lines), a vendor's devices and subsystems on the
        first lookup that needs them. A command names a few dozen vendors of the ~2,500.
        Lookups (``in``, ``[]``, ``get``) give what ``parse`` gives; iterating over
        ``devices`` or ``subsystems`` parses everything first."""
        db = cls(path=path)
        spans: dict[int, list[tuple[int, int]]] = {}
        # Each top-level line follows a newline ("\n" before the text stands for its start):
        # a search for the newline is far quicker than trying "^" at every character.
        tops = [(m.start(1) - 1, m.end(1) - 1, m.group(1)) for m in _TOP_LINE.finditer("\n" + text)]
        vendor: int | None = None
        in_classes = False
        for i, (_start, end, raw) in enumerate(tops):
            nxt = tops[i + 1][0] if i + 1 < len(tops) else len(text)
            if raw.startswith("C "):
                in_classes = True
                db._parse_block("C", text[_start:nxt])
                continue
            in_classes = False
            code, _, name = raw.partition("  ")
            try:
                vendor = int(code, 16)
            except ValueError:
                pass  # skipped, as parse() does: the lines below go to the vendor before
            else:
                db.vendors[vendor] = name.strip()
            if vendor is not None and not in_classes and end < nxt:
                spans.setdefault(vendor, []).append((end, nxt))
        lazy = _LazyTable(db, spans, text)
        db.devices = lazy.devices
        db.subsystems = lazy.subsystems
        return db

    def _parse_block(self, kind: str, block: str) -> None:
        """A class block (``C`` line and its lines), parsed as parse() does."""
        sub = PciIds.parse(block)
        self.classes.update(sub.classes)


def _parse_subsystem_line(vendor: int, device: int, raw: str) -> tuple[tuple[int, int, int, int], str]:
    """(key, name) of a subsystem line (two tabs, ``ssvid ssid  name``); ValueError when malformed."""
    ids, _, name = raw[2:].partition("  ")
    sv, sd = ids.split()
    return (vendor, device, int(sv, 16), int(sd, 16)), name.strip()


#: A line that is not indented, a comment or empty (a vendor or class line), after its newline.
_TOP_LINE = re.compile(r"\n([^\t#\n][^\n]*)")


class _LazyTable:
    """Parses one vendor's device and subsystem lines when a lookup first asks for it."""

    def __init__(self, db: PciIds, spans: dict[int, list[tuple[int, int]]], text: str) -> None:
        self.db, self.spans, self.text = db, spans, text
        #: Subsystem lines of the vendors parsed so far, raw, by (vendor, device): parsed
        #: when a lookup asks for that device (Intel alone has some 4,700).
        self.pending: dict[tuple[int, int], list[str]] = {}
        self.devices = _VendorDict(self)
        self.subsystems = _VendorDict(self, by_device=True)

    def ensure(self, vendor: object) -> None:
        spans = self.spans.pop(vendor, None) if self.spans else None  # type: ignore[call-overload]
        if not spans:
            return
        header = f"{vendor:04x}  x\n"
        for a, b in spans:
            part = PciIds.parse(header + self.text[a:b], subsystem_lines=self.pending)
            dict.update(self.devices, part.devices)

    def ensure_device(self, key: object) -> None:
        """A subsystem key's vendor, then the subsystem lines of its (vendor, device)."""
        if not isinstance(key, tuple) or len(key) < 2:
            return
        self.ensure(key[0])
        lines = self.pending.pop(key[:2], None) if self.pending else None  # type: ignore[call-overload]
        for raw in lines or ():
            try:
                k, name = _parse_subsystem_line(key[0], key[1], raw)  # type: ignore[arg-type]
            except ValueError:
                continue  # a malformed line in pci.ids is skipped, never fatal
            dict.__setitem__(self.subsystems, k, name)

    def ensure_all(self) -> None:
        for v in list(self.spans):
            self.ensure(v)
        for vd in list(self.pending):
            self.ensure_device(vd)


class _VendorDict(dict):
    """A dict keyed by tuples whose first item is the vendor, filled per vendor on demand."""

    def __init__(self, table: _LazyTable, by_device: bool = False) -> None:
        super().__init__()
        self._table = table
        self._by_device = by_device

    def _ensure(self, key: object) -> None:
        if self._by_device:
            self._table.ensure_device(key)
        else:
            self._table.ensure(key[0] if isinstance(key, tuple) and key else None)

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        self._ensure(key)
        return dict.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        self._ensure(key)
        return dict.__contains__(self, key)

    def get(self, key, default=None):  # type: ignore[no-untyped-def]
        self._ensure(key)
        return dict.get(self, key, default)

    def _all(self) -> "_VendorDict":
        self._table.ensure_all()
        return self

    def __iter__(self):  # type: ignore[no-untyped-def]
        return dict.__iter__(self._all())

    def __len__(self) -> int:
        return dict.__len__(self._all())

    def keys(self):  # type: ignore[no-untyped-def]
        return dict.keys(self._all())

    def values(self):  # type: ignore[no-untyped-def]
        return dict.values(self._all())

    def items(self):  # type: ignore[no-untyped-def]
        return dict.items(self._all())

    def __eq__(self, other: object) -> bool:
        return dict.__eq__(self._all(), other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return dict.__repr__(self._all())


_lock = threading.Lock()
_db: PciIds | None = None
_loaded = False


def find_pci_ids() -> str | None:
    override = os.environ.get("PCI_EXPLORER_PCI_IDS")
    if override is not None:
        return override if override and os.path.isfile(override) else None
    for p in PCI_IDS_PATHS:
        if os.path.isfile(p):
            return p
    return None


def database() -> PciIds | None:
    """The system pci.ids, parsed once; None when the machine has none."""
    global _db, _loaded
    with _lock:
        if not _loaded:
            _loaded = True
            path = find_pci_ids()
            if path:
                try:
                    with open(path, encoding="utf-8", errors="replace") as f:
                        _db = PciIds.parse_indexed(f.read(), path)
                except OSError:
                    _db = None
        return _db


def reset_cache() -> None:
    global _db, _loaded
    with _lock:
        _db, _loaded = None, False


def vendor_name(fn: Function) -> str | None:
    db = database()
    if db and fn.vendor_id is not None and fn.vendor_id in db.vendors:
        return db.vendors[fn.vendor_id]
    return fn.vendor_name


def device_name(fn: Function) -> str | None:
    db = database()
    if db and fn.vendor_id is not None and fn.device_id is not None:
        name = db.devices.get((fn.vendor_id, fn.device_id))
        if name:
            return name
    return fn.device_name


def subsystem_name(fn: Function) -> str | None:
    db = database()
    if db and None not in (fn.vendor_id, fn.device_id, fn.subsystem_vendor_id, fn.subsystem_device_id):
        name = db.subsystems.get((fn.vendor_id, fn.device_id, fn.subsystem_vendor_id, fn.subsystem_device_id))  # type: ignore[arg-type]
        if name:
            return name
    return fn.subsystem_name


def class_name(fn: Function) -> str | None:
    if fn.class_code is None:
        return fn.class_name
    db = database()
    if db:
        name = db.class_name(fn.class_code)
        if name:
            return name
    if fn.class_name:
        return fn.class_name
    return _SUBCLASS_NAMES.get(fn.class_code >> 8) or _CLASS_NAMES.get(fn.class_code >> 16)


def short_name(fn: Function) -> str:
    """A one-line description: vendor and device names, else the class name."""
    dev = device_name(fn)
    ven = vendor_name(fn)
    if dev and ven:
        return f"{ven} {dev}"
    if dev:
        return dev
    cls = class_name(fn) or "PCI function"
    if ven:
        return f"{ven} {cls}"
    return cls
