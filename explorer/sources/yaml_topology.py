"""YAML topology: a hand-writable description of a machine's PCI tree, and its writer.

The format is documented in ``docs/yaml-format.md``. In brief: functions nest under
their upstream bridge (``children:``), root-bus functions under their host bridge
(``host-bridges: [{root-bus: ..., devices: [...]}]``), the functions of a VMD domain
under their VMD endpoint (``vmd:``) and VFs under their PF (``vfs:``). A key left out
means *unknown* (``None``); the plain word ``none`` means *known to be missing*
(``ABSENT``); anything else is the value.

Parsing goes through ``yaml.compose`` so every value keeps its line and column, and
scalars are read from their source text (``01:00.0`` or ``020000`` mean what they
say, whatever YAML 1.1 would make of them). Every problem is a one-line
:class:`SourceError` naming file, line, column and field.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .. import gcpause
from ..model.units import parse_size
from ..model import (
    ABSENT,
    AcsCap,
    Address,
    AddressError,
    AerCap,
    AriCap,
    AtsCap,
    Bar,
    BarKind,
    BridgeInfo,
    Capabilities,
    Function,
    HostBridge,
    LinkInfo,
    PasidCap,
    PcieType,
    PriCap,
    RcecCap,
    SlotInfo,
    SourceInfo,
    SriovCap,
    Topology,
    Window,
    WindowKind,
    acs_flags_parse,
    acs_flags_str,
)
from .errors import SourceError

__all__ = ["load_yaml", "load_yaml_text", "dump_yaml", "looks_like_yaml_topology", "FORMAT", "MARKER_KEY"]

#: The value of the top-level marker key this module writes and accepts.
FORMAT = "topology/1"
MARKER_KEY = "pci-explorer"

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_TRUE_WORDS = {"yes", "true", "on"}
_FALSE_WORDS = {"no", "false", "off"}
#: The plain word that means ABSENT (known to be missing).
ABSENT_WORD = "none"
#: Linux enables these ACS controls at boot where the port has them (pci_std_enable_acs).
_ACS_LINUX_DEFAULT = 0x01 | 0x04 | 0x08 | 0x10  # SV RR CR UF

_MARKER_LINE_RE = re.compile(r"^pci-explorer\s*:\s*['\"]?topology/", re.MULTILINE)
_TOPKEY_LINE_RE = re.compile(r"^(?:devices|host-bridges)\s*:\s*(?:#.*)?$", re.MULTILINE)


def looks_like_yaml_topology(text: str) -> bool:
    """Cheap sniffing: a top-level ``pci-explorer: topology/...`` marker, or a top-level
    ``devices:`` / ``host-bridges:`` key on a line of its own."""
    return bool(_MARKER_LINE_RE.search(text) or _TOPKEY_LINE_RE.search(text))


# =====================================================================================
# Loading
# =====================================================================================


def load_yaml(path: str | Path) -> Topology:
    """Load a YAML topology file. Raises SourceError (one line) for any problem."""
    p = str(path)
    try:
        with open(p, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SourceError(f"cannot read: {e.strerror or e}", path=p) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SourceError(f"not UTF-8 text (byte {e.start})", path=p, line=line) from None
    return load_yaml_text(text, p)


def load_yaml_text(text: str, path: str = "<string>") -> Topology:
    """Load a YAML topology from ``text``; ``path`` names it in errors and SourceInfo."""
    # (a large node graph: loading a 3000-function machine takes 4x longer with the collector on)
    with gcpause.paused():
        return _load_text(text, path)


def _load_text(text: str, path: str) -> Topology:
    from ..model.limits import yaml_expansion_problem

    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        raise _syntax_error(e, text, path) from None
    except yaml.reader.ReaderError as e:
        line = text[: e.position].count("\n") + 1 if isinstance(e.position, int) else None
        raise SourceError(f"YAML error: character {_char_name(e.character)} is not allowed in YAML", path=path, line=line) from None
    except yaml.YAMLError as e:
        raise SourceError(f"YAML error: {_one_line(str(e))}", path=path) from None
    except RecursionError:
        raise SourceError("YAML nested too deeply", path=path) from None
    # Aliases and merge keys are resolved by walking the graph: refuse one that would
    # expand a small file into millions of nodes before anything walks it.
    problem = yaml_expansion_problem(root)
    if problem is not None:
        mark = getattr(problem[1], "start_mark", None)
        raise SourceError(problem[0], path=path, line=mark.line + 1 if mark else None,
                          column=mark.column + 1 if mark else None)
    parser = _Parser(path)
    try:
        return parser.document(root)
    except SourceError:
        raise
    except RecursionError:
        raise SourceError("nesting too deep (or an alias that contains itself)", path=path) from None
    except (ValueError, TypeError, KeyError, AttributeError) as e:  # pragma: no cover - last resort
        raise SourceError(f"cannot read this topology: {type(e).__name__}: {_one_line(str(e))}", path=path) from None


def _one_line(s: str) -> str:
    return " ".join(s.split())


def _syntax_error(e: yaml.MarkedYAMLError, text: str, path: str) -> SourceError:
    mark = e.problem_mark or e.context_mark
    msg = e.problem or "syntax error"
    if e.context:
        msg = f"{msg} ({e.context})"
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    # Name the key being written where the error happened: the nearest key at or above it.
    field = None
    if line is not None:
        lines = text.splitlines()
        for i in range(min(line, len(lines)) - 1, -1, -1):
            m = re.match(r"^\s*(?:-\s+)?([A-Za-z0-9_.-]+)\s*:", lines[i])
            if m:
                field = m.group(1)
                break
    return SourceError(f"YAML syntax error: {_one_line(msg)}", path=path, line=line, column=col, field=field)


class _Unknown:
    """Marker for 'the key is not there' inside the writer (distinct from None = null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


_UNKNOWN = _Unknown()

# ---- keys ---------------------------------------------------------------------------

_TOP_KEYS = (
    "pci-explorer", "description", "kernel-release", "kernel-cmdline", "iommu-present",
    "group-types", "defaults", "host-bridges", "devices", "firmware", "mdev", "thunderbolt",
)
#: ``firmware:`` keys and the SourceInfo.firmware names they stand for (DMI bios_*).
_FIRMWARE_KEYS = {"bios-vendor": "bios_vendor", "bios-version": "bios_version", "bios-date": "bios_date"}
_HB_KEYS = ("root-bus", "bus-range", "windows", "vmd-owner", "devices")
_VMD_KEYS = ("domain", "root-bus", "bus-range", "windows", "devices")
#: Function keys, in the order the writer writes them.
_FN_KEYS = (
    "address", "parent", "ids", "subsystem", "class", "revision",
    "vendor-name", "device-name", "subsystem-name", "class-name",
    "header-type", "multifunction", "pcie-type", "config-size",
    "bars", "rom", "vf-bars", "bridge", "caps", "slot", "link",
    "driver", "driver-override", "iommu-group", "numa-node", "boot-vga", "reset-methods",
    "external-facing", "removable", "is-virtfn", "physfn", "virtfns",
    "vmd", "vfs", "children",
)
#: Keys that cannot be given in ``defaults:`` (they say where a function is).
_STRUCTURAL = ("address", "parent", "physfn", "virtfns", "vmd", "vfs", "children")
_DEFAULTABLE = tuple(k for k in _FN_KEYS if k not in _STRUCTURAL)
_BAR_KEYS = ("kind", "start", "size", "unassigned", "disabled", "total-size")
_ROM_KEYS = ("kind", "index", "start", "size", "unassigned", "disabled", "total-size")
_BRIDGE_KEYS = ("primary", "secondary", "subordinate", "bus-range", "io", "mem", "pref")
_WINDOW_KEYS = ("kind", "start", "end", "size", "64-bit")
_SLOT_KEYS = ("physical-slot", "number", "hotplug", "surprise", "hotplug-driver")
_HOTPLUG_DRIVERS = ("acpiphp", "pciehp", "shpchp")
_LINK_KEYS = ("current-speed", "current-width", "max-speed", "max-width")
_CAP_KEYS = (
    "acs", "ats", "pri", "pasid", "sriov", "ari", "aer", "rcec", "dsn",
    "eetlp-prefix", "ari-forwarding", "others",
)
#: Capabilities fields that are Maybe[...] (ABSENT when known missing) and the bool ones.
_CAP_MAYBE = ("acs", "ats", "pri", "pasid", "sriov", "ari", "aer", "rcec", "dsn")
_CAP_BOOL = ("eetlp_prefix", "ari_forwarding")


def _attr(key: str) -> str:
    return key.replace("-", "_")


class _Parser:
    def __init__(self, path: str) -> None:
        self.path = path
        self.functions: list[Function] = []
        self.host_bridges: list[HostBridge] = []
        self.seen: dict[Address, int] = {}
        self.hb_seen: dict[tuple[int, int], int] = {}
        self.defaults: dict[str, dict[str, Any]] = {}
        self.warnings: list[str] = []
        #: (address, explicit parent, line) to check once everything is known.
        self.explicit_parents: list[tuple[Address, Address, int]] = []
        #: (who, what, address it names, line): links to check once everything is known.
        self.links: list[tuple[str, str, Address, int]] = []

    # ---- errors and node helpers -----------------------------------------------------
    def err(self, node: Node | None, message: str, field: str | None = None) -> SourceError:
        field = field or None
        if node is None:
            return SourceError(message, path=self.path, field=field)
        m = node.start_mark
        return SourceError(message, path=self.path, line=m.line + 1, column=m.column + 1, field=field)

    def warn(self, node: Node, message: str) -> None:
        self.warnings.append(f"{self.path}:{node.start_mark.line + 1}: {message}")

    @staticmethod
    def is_null(node: Node) -> bool:
        return isinstance(node, ScalarNode) and not node.style and node.tag == _NULL_TAG

    @staticmethod
    def is_absent(node: Node) -> bool:
        """The plain word ``none`` (or a plain ``false``, accepted as a synonym)."""
        if not isinstance(node, ScalarNode) or bool(node.style):
            return False
        v = node.value.strip().lower()
        return v == ABSENT_WORD or (node.tag == _BOOL_TAG and v in _FALSE_WORDS)

    def mapping(self, node: Node, field: str, allowed: Iterable[str], what: str) -> dict[str, tuple[Node, Node]]:
        """Check a mapping: string keys, no duplicates, no unknown keys."""
        out = self.pairs(node, field, what)
        allowed = tuple(allowed)
        for key, (k, _) in out.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed here: {', '.join(allowed)}"
                raise self.err(k, f"unknown key {key!r} in {what} ({hint})", _join(field, key))
        return out

    def pairs(self, node: Node, field: str, what: str, _depth: int = 0) -> dict[str, tuple[Node, Node]]:
        """The keys of a mapping, with YAML merge keys (``<<: *anchor``) resolved: the
        mapping's own keys win over merged ones, earlier merged mappings over later ones."""
        if not isinstance(node, MappingNode):
            raise self.err(node, f"expected {what} (a mapping of keys), got {_kind_of(node)}", field)
        if _depth > 50:
            raise self.err(node, "merge keys nested too deep", field)
        own: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        for k, v in node.value:
            if k.tag == "tag:yaml.org,2002:merge":
                sources = v.value if isinstance(v, SequenceNode) else [v]
                for src in sources:
                    for key, kv in self.pairs(src, field, "a merged mapping", _depth + 1).items():
                        merged.setdefault(key, kv)
                continue
            if not isinstance(k, ScalarNode):
                raise self.err(k, f"keys of {what} must be plain words, got {_kind_of(k)}", field)
            key = k.value
            if key in own:
                first = own[key][0].start_mark.line + 1
                raise self.err(k, f"key {key!r} given twice in {what} (first at line {first})", _join(field, key))
            own[key] = (k, v)
        for key, kv in merged.items():
            own.setdefault(key, kv)
        return own

    def sequence(self, node: Node, field: str, what: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            raise self.err(node, f"expected a list of {what}, got {_kind_of(node)}", field)
        return list(node.value)

    def scalar(self, node: Node, field: str, what: str) -> str:
        if not isinstance(node, ScalarNode):
            raise self.err(node, f"expected {what}, got {_kind_of(node)}", field)
        return node.value.strip() if not node.style else node.value

    def text(self, node: Node, field: str) -> str:
        return self.scalar(node, field, "a string")

    def bool(self, node: Node, field: str) -> bool:
        v = self.scalar(node, field, "true or false").lower()
        if not node.style and v in _TRUE_WORDS:
            return True
        if not node.style and v in _FALSE_WORDS:
            return False
        raise self.err(node, f"expected true or false, got {v!r}", field)

    def int(self, node: Node, field: str, lo: int | None = None, hi: int | None = None) -> int:
        raw = self.scalar(node, field, "a number")
        try:
            v = _parse_int(raw)
        except ValueError:
            raise self.err(node, f"expected a number (decimal or 0x hex), got {raw!r}", field) from None
        self._range(node, field, v, lo, hi)
        return v

    def hexnum(self, node: Node, field: str, hi: int, what: str) -> int:
        """A hex number written without 0x (``8086``, ``020000``, ``1f``); 0x is allowed."""
        raw = self.scalar(node, field, what)
        s = raw[2:] if raw.lower().startswith("0x") else raw
        if not s or not re.fullmatch(r"[0-9a-fA-F_]+", s):
            raise self.err(node, f"expected {what} in hex, got {raw!r}", field)
        v = int(s.replace("_", ""), 16)
        if v > hi:
            raise self.err(node, f"{what} {raw!r} out of range (at most {hi:#x})", field)
        return v

    def bus(self, node: Node, field: str) -> int:
        return self.hexnum(node, field, 0xFF, "a bus number")

    def quantity(self, node: Node, field: str, what: str = "size") -> int:
        raw = self.scalar(node, field, f"a {what}")
        try:
            v = parse_size(raw)
        except ValueError as e:
            shown = raw if len(raw) <= 60 else raw[:50] + "…"
            raise self.err(node, f"invalid {what} {shown!r}: {str(e).split(': ', 1)[-1]}", field) from None
        return v

    def size(self, node: Node, field: str) -> int:
        v = self.quantity(node, field, "size")
        if v <= 0:
            raise self.err(node, f"invalid size {node.value!r}: must be positive", field)
        return v

    def _range(self, node: Node, field: str, v: int, lo: int | None, hi: int | None) -> None:
        if lo is not None and v < lo:
            raise self.err(node, f"{v} is below {lo}", field)
        if hi is not None and v > hi:
            raise self.err(node, f"{v} is above {hi}", field)

    def address(self, node: Node, field: str, domain: int) -> Address:
        raw = self.scalar(node, field, "a PCI address like 0000:00:1f.3")
        try:
            a = Address.parse(raw)
        except AddressError as e:
            raise self.err(node, str(e), field) from None
        if raw.count(":") == 1 and domain:
            a = Address(domain, a.bus, a.device, a.function)
        return a

    def bus_range(self, node: Node, field: str) -> tuple[int, int]:
        raw = self.scalar(node, field, "a bus range like 01-03")
        parts = raw.split("-")
        if len(parts) != 2:
            raise self.err(node, f"expected a bus range like 01-03 (hex), got {raw!r}", field)
        try:
            lo, hi = (int(p.strip().removeprefix("0x"), 16) for p in parts)
        except ValueError:
            raise self.err(node, f"expected a bus range like 01-03 (hex), got {raw!r}", field) from None
        if not (0 <= lo <= hi <= 0xFF):
            raise self.err(node, f"bad bus range {raw!r}: need 00 <= first <= last <= ff", field)
        return lo, hi

    def root_bus(self, node: Node, field: str, domain: int | None) -> tuple[int, int]:
        raw = self.scalar(node, field, "a root bus like 0000:00")
        s = raw[3:] if raw.startswith("pci") else raw
        m = re.fullmatch(r"(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2})", s)
        if not m:
            raise self.err(node, f"expected a root bus like 0000:00 ([domain:]bus, hex), got {raw!r}", field)
        if m.group(1) is None and domain is None:
            raise self.err(node, f"root bus {raw!r} needs its domain here (like 10000:{m.group(2)})", field)
        dom = int(m.group(1), 16) if m.group(1) is not None else domain
        return dom, int(m.group(2), 16)  # type: ignore[return-value]

    # ---- the document ----------------------------------------------------------------
    def document(self, root: Node | None) -> Topology:
        if root is None:
            raise SourceError("empty document: expected a YAML topology (see docs/yaml-format.md)", path=self.path, line=1)
        top = self.mapping(root, "", _TOP_KEYS, "a topology")
        if "pci-explorer" in top:
            k, v = top["pci-explorer"]
            marker = self.scalar(v, "pci-explorer", "the format marker")
            if marker != FORMAT:
                raise self.err(v, f"unsupported format {marker!r} (this version reads {FORMAT!r})", "pci-explorer")

        def opt(key: str, parse: Callable[[Node, str], Any]) -> Any:
            if key not in top or self.is_null(top[key][1]):
                return None
            return parse(top[key][1], key)

        description = opt("description", self.text)
        release = opt("kernel-release", self.text)
        cmdline = opt("kernel-cmdline", self.text)
        iommu = opt("iommu-present", self.bool)
        group_types: list[tuple[str, str]] = []
        if "group-types" in top and not self.is_null(top["group-types"][1]):
            node = top["group-types"][1]
            if not isinstance(node, MappingNode):
                raise self.err(node, f"expected a mapping of group label to domain type, got {_kind_of(node)}", "group-types")
            for label, (_, v) in self.pairs(node, "group-types", "group types").items():
                group_types.append((label, self.text(v, f"group-types.{label}")))
        firmware: list[tuple[str, str]] = []
        if "firmware" in top and not self.is_null(top["firmware"][1]):
            node = top["firmware"][1]
            if not isinstance(node, MappingNode):
                raise self.err(node, f"expected a mapping (bios-vendor, bios-version, bios-date), got {_kind_of(node)}", "firmware")
            for key, (knode, v) in self.pairs(node, "firmware", "firmware facts").items():
                if key not in _FIRMWARE_KEYS:
                    raise self.err(knode, f"unknown key {key!r} (expected {', '.join(_FIRMWARE_KEYS)})", f"firmware.{key}")
                if not self.is_null(v):
                    firmware.append((_FIRMWARE_KEYS[key], self.text(v, f"firmware.{key}")))
        if "defaults" in top and not self.is_null(top["defaults"][1]):
            self.parse_defaults(top["defaults"][1])

        if "host-bridges" in top and not self.is_null(top["host-bridges"][1]):
            for i, hb_node in enumerate(self.sequence(top["host-bridges"][1], "host-bridges", "host bridges")):
                self.host_bridge(hb_node, f"host-bridges[{i}]", owner=None, vmd_domain=None, top_level=True)
        if "devices" in top and not self.is_null(top["devices"][1]):
            for i, fn_node in enumerate(self.sequence(top["devices"][1], "devices", "devices")):
                self.function(fn_node, _Ctx(domain=0, top_level=True), f"devices[{i}]")

        self.cross_checks()
        mdev = None
        if "mdev" in top and not self.is_null(top["mdev"][1]):
            from .yaml_mdev import parse as parse_mdev  # the mdev: section (sources/yaml_mdev.py)

            mdev = parse_mdev(self, top["mdev"][1], {f.address: f for f in self.functions})
        thunderbolt = None
        if "thunderbolt" in top and not self.is_null(top["thunderbolt"][1]):
            thunderbolt = tuple(self.thunderbolt_device(n, f"thunderbolt[{i}]")
                                for i, n in enumerate(self.sequence(top["thunderbolt"][1], "thunderbolt", "Thunderbolt devices")))
        source = SourceInfo(
            kind="yaml",
            location=self.path,
            description=description,
            kernel_release=release,
            kernel_cmdline=cmdline,
            iommu_present=iommu,
            group_types=tuple(group_types),
            warnings=tuple(self.warnings),
            firmware=tuple(sorted(firmware, key=lambda kv: list(_FIRMWARE_KEYS.values()).index(kv[0]))),
            thunderbolt=thunderbolt,
        )
        return Topology.build(self.functions, self.host_bridges, source, mdev)

    def thunderbolt_device(self, node: Node, field: str) -> "ThunderboltDevice":
        """One ``thunderbolt:`` entry: /sys/bus/thunderbolt/devices/NAME (docs/yaml-format.md)."""
        from ..model.thunderbolt import ThunderboltDevice

        keys = ("name", "authorized", "security", "iommu-dma-protection", "vendor-name", "device-name", "pci-device")
        m = self.mapping(node, field, keys, "a Thunderbolt device")
        if "name" not in m:
            raise self.err(node, "a Thunderbolt device needs its name (domain0, 0-0, 0-1, ...)", field)

        def get(key: str, parse: Callable[[Node, str], Any]) -> Any:
            if key not in m or self.is_null(m[key][1]):
                return None
            return parse(m[key][1], f"{field}.{key}")

        pci = get("pci-device", self.text)
        if pci is not None:
            try:
                pci = Address.parse(pci)
            except AddressError as e:
                raise self.err(m["pci-device"][1], str(e), f"{field}.pci-device") from None
        return ThunderboltDevice(
            name=get("name", self.text),
            authorized=get("authorized", lambda n, f: self.int(n, f, 0, 2)),
            security=get("security", self.text),
            iommu_dma_protection=get("iommu-dma-protection", self.bool),
            vendor_name=get("vendor-name", self.text),
            device_name=get("device-name", self.text),
            pci_device=pci,
        )

    def cross_checks(self) -> None:
        by_addr = {f.address: f for f in self.functions}
        for addr, parent, line in self.explicit_parents:
            pf = by_addr.get(parent)
            if pf is None:
                self.warnings.append(f"{self.path}:{line}: {addr}: parent {parent} is not described here")
                continue
            if parent.domain != addr.domain:
                self.warnings.append(f"{self.path}:{line}: {addr}: its parent {parent} is in another PCI domain")
                continue
            self._check_bus_range(addr, parent, pf.bridge, None, line)
        for who, what, other, line in self.links:
            if other not in by_addr:
                self.warnings.append(f"{self.path}:{line}: {who}: its {what} {other} is not described here")

    def _check_bus_range(self, addr: Address, parent: Address, bridge: Any, node: Node | None, line: int | None = None) -> None:
        if not isinstance(bridge, BridgeInfo) or bridge.bus_range is None:
            return
        lo, hi = bridge.bus_range
        if not lo <= addr.bus <= hi:
            where = f"{self.path}:{line if line is not None else node.start_mark.line + 1}"  # type: ignore[union-attr]
            self.warnings.append(
                f"{where}: {addr} is on bus {addr.bus:02x}, outside its parent bridge {parent}'s "
                f"bus range {lo:02x}-{hi:02x}"
            )

    # ---- defaults --------------------------------------------------------------------
    def parse_defaults(self, node: Node) -> None:
        allowed = _DEFAULTABLE
        if isinstance(node, MappingNode):
            for k, _ in node.value:
                if isinstance(k, ScalarNode) and k.value in _STRUCTURAL:
                    raise self.err(k, f"{k.value!r} says where a device is and cannot have a default", f"defaults.{k.value}")
        m = self.mapping(node, "defaults", allowed, "defaults")
        for key, (_, v) in m.items():
            self.defaults[key] = self.fn_value(key, v, f"defaults.{key}", None)

    # ---- host bridges ------------------------------------------------------------------
    def host_bridge(self, node: Node, field: str, owner: Address | None, vmd_domain: int | None, top_level: bool) -> None:
        keys = _HB_KEYS if top_level else _VMD_KEYS
        m = self.mapping(node, field, keys, "a host bridge" if top_level else "a VMD domain")
        self._host_bridge_from(m, node, field, owner, vmd_domain)

    def _host_bridge_from(
        self, m: dict[str, tuple[Node, Node]], node: Node, field: str, owner: Address | None, vmd_domain: int | None
    ) -> None:
        if "root-bus" not in m:
            raise self.err(node, "a host bridge needs root-bus (like 0000:00)", f"{field}.root-bus" if field else "root-bus")
        rb_node = m["root-bus"][1]
        dom, bus = self.root_bus(rb_node, _join(field, "root-bus"), vmd_domain if owner is not None else 0)
        if (dom, bus) in self.hb_seen:
            raise self.err(rb_node, f"host bridge {dom:04x}:{bus:02x} given twice (first at line {self.hb_seen[(dom, bus)]})", _join(field, "root-bus"))
        self.hb_seen[(dom, bus)] = rb_node.start_mark.line + 1
        bus_range = None
        if "bus-range" in m and not self.is_null(m["bus-range"][1]):
            bus_range = self.bus_range(m["bus-range"][1], _join(field, "bus-range"))
        windows: tuple[Window, ...] | None = None
        if "windows" in m and not self.is_null(m["windows"][1]):
            wn = m["windows"][1]
            f = _join(field, "windows")
            if self.is_absent(wn):
                windows = ()
            else:
                windows = tuple(self.window(w, f"{f}[{i}]", None) for i, w in enumerate(self.sequence(wn, f, "windows")))
        if "vmd-owner" in m and not self.is_null(m["vmd-owner"][1]):
            on = m["vmd-owner"][1]
            owner = self.address(on, _join(field, "vmd-owner"), 0)
            self.links.append((f"host bridge {dom:04x}:{bus:02x}", "VMD owner", owner, on.start_mark.line + 1))
        self.host_bridges.append(HostBridge(dom, bus, bus_range, windows, owner))
        if "devices" in m and not self.is_null(m["devices"][1]):
            f = _join(field, "devices")
            for i, fn_node in enumerate(self.sequence(m["devices"][1], f, "devices")):
                self.function(fn_node, _Ctx(domain=dom, root_bus=(dom, bus)), f"{f}[{i}]")

    # ---- windows, BARs -----------------------------------------------------------------
    def window(self, node: Node, field: str, kind: WindowKind | None) -> Window:
        """``"[KIND] START-END [32-bit|64-bit]"`` or ``{kind, start, end | size, 64-bit}``."""
        if isinstance(node, MappingNode):
            m = self.mapping(node, field, _WINDOW_KEYS, "a window")
            wkind = kind
            if "kind" in m:
                wkind = self.window_kind(m["kind"][1], f"{field}.kind")
            if wkind is None:
                raise self.err(node, "a host bridge window needs kind: io, mem or pref", f"{field}.kind")
            if "start" not in m:
                raise self.err(node, "a window needs start", f"{field}.start")
            start = self.quantity(m["start"][1], f"{field}.start", "address")
            if ("end" in m) == ("size" in m):
                raise self.err(node, "a window needs exactly one of end (inclusive) or size", f"{field}.end")
            if "end" in m:
                end = self.quantity(m["end"][1], f"{field}.end", "address")
            else:
                end = start + self.size(m["size"][1], f"{field}.size") - 1
            is64 = None
            if "64-bit" in m and not self.is_null(m["64-bit"][1]):
                is64 = self.bool(m["64-bit"][1], f"{field}.64-bit")
            if end < start:
                raise self.err(node, f"window ends ({end:#x}) before it starts ({start:#x})", field)
            return Window(wkind, start, end, is64)
        raw = self.scalar(node, field, "a window like 0xfe000000-0xfe1fffff")
        text = raw.strip()
        is64 = None
        low = text.lower()
        for suffix, val in ((" 64-bit", True), (" 32-bit", False)):
            if low.endswith(suffix):
                is64, text = val, text[: -len(suffix)].strip()
                break
        wkind = kind
        head, _, rest = text.partition(" ")
        if head.lower() in ("io", "mem", "pref"):
            given = WindowKind(head.lower())
            if kind is not None and given is not kind:
                raise self.err(node, f"a {kind.value} window cannot be of kind {given.value}", field)
            wkind, text = given, rest.strip()
        if wkind is None:
            raise self.err(node, f"a host bridge window starts with its kind (io, mem or pref), got {raw!r}", field)
        parts = [p.strip() for p in text.split("-")]
        if len(parts) != 2 or not all(parts):
            raise self.err(node, f"expected START-END (inclusive), got {raw!r}", field)
        try:
            start, end = parse_size(parts[0]), parse_size(parts[1])
        except ValueError as e:
            raise self.err(node, f"invalid window {raw!r}: {e}", field) from None
        if end < start:
            raise self.err(node, f"window ends ({end:#x}) before it starts ({start:#x})", field)
        return Window(wkind, start, end, is64)

    def window_kind(self, node: Node, field: str) -> WindowKind:
        raw = self.scalar(node, field, "a window kind").lower()
        try:
            return WindowKind(raw)
        except ValueError:
            raise self.err(node, f"unknown window kind {raw!r} (expected io, mem or pref)", field) from None

    def bar_kind(self, node: Node, field: str) -> BarKind:
        raw = self.scalar(node, field, "a BAR kind").lower()
        try:
            return BarKind(raw)
        except ValueError:
            names = [k.value for k in BarKind]
            close = difflib.get_close_matches(raw, names, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(names)}"
            raise self.err(node, f"unknown BAR kind {raw!r} ({hint})", field) from None

    def bar(self, node: Node, field: str, index: int | None) -> Bar:
        keys = _BAR_KEYS if index is not None else _ROM_KEYS
        m = self.mapping(node, field, keys, "a BAR" if index is not None else "the expansion ROM")
        if index is None:
            kind = BarKind.MEM32
            index = 6
            if "index" in m:
                index = self.int(m["index"][1], f"{field}.index", 0, 255)
        elif "kind" not in m:
            raise self.err(node, "a BAR needs kind: io, mem32, mem64, pref32 or pref64", f"{field}.kind")
        if "kind" in m:
            kind = self.bar_kind(m["kind"][1], f"{field}.kind")

        def get(key: str, parse: Callable[[Node, str], Any]) -> Any:
            if key not in m or self.is_null(m[key][1]):
                return None
            return parse(m[key][1], f"{field}.{key}")

        start = get("start", lambda n, f: self.quantity(n, f, "address"))
        size = get("size", self.size)
        unassigned = get("unassigned", self.bool)
        disabled = get("disabled", self.bool)
        total = get("total-size", self.size)
        return Bar(index, kind, start, size, bool(unassigned), disabled, total)

    def bars(self, node: Node, field: str) -> tuple[Bar, ...]:
        if self.is_absent(node):
            return ()
        if isinstance(node, SequenceNode) and not node.value:
            return ()
        if not isinstance(node, MappingNode):
            raise self.err(node, f"expected a mapping of BAR index (0-5) to BAR, or none, got {_kind_of(node)}", field)
        out: list[Bar] = []
        seen: dict[int, Node] = {}
        for k, v in self.pairs(node, field, "BARs").values():
            idx = self.int(k, field, 0, 5)
            sub = f"{field}.{idx}"
            if idx in seen:
                raise self.err(k, f"BAR {idx} given twice (first at line {seen[idx].start_mark.line + 1})", sub)
            seen[idx] = k
            out.append(self.bar(v, sub, idx))
        by_index = {b.index: b for b in out}
        for b in out:
            if b.kind.is_64bit and b.index + 1 in by_index:
                raise self.err(seen[b.index + 1], f"BAR {b.index + 1} overlaps 64-bit BAR {b.index} (which uses two registers)", f"{field}.{b.index + 1}")
        return tuple(out)

    # ---- capabilities ------------------------------------------------------------------
    def caps(self, node: Node, field: str) -> Capabilities:
        if self.is_absent(node):
            return Capabilities(
                **{a: ABSENT for a in _CAP_MAYBE}, **{b: False for b in _CAP_BOOL}  # type: ignore[arg-type]
            )
        m = self.mapping(node, field, _CAP_KEYS, "capabilities")
        kw: dict[str, Any] = {}
        if "others" in m:
            on = m["others"][1]
            if not self.is_absent(on):
                raise self.err(on, "others can only be none (every capability not listed is known to be absent)", f"{field}.others")
            kw.update({a: ABSENT for a in _CAP_MAYBE})
            kw.update({b: False for b in _CAP_BOOL})
        for key, (_, v) in m.items():
            if key == "others":
                continue
            f = f"{field}.{key}"
            attr = _attr(key)
            if attr in _CAP_BOOL:
                kw[attr] = None if self.is_null(v) else self.bool(v, f)
                continue
            if self.is_null(v):
                kw[attr] = None
            elif self.is_absent(v):
                kw[attr] = ABSENT
            else:
                kw[attr] = self.one_cap(key, v, f)
        return Capabilities(**kw)

    def one_cap(self, key: str, node: Node, field: str) -> Any:
        if key == "dsn":
            return self.dsn(node, field)
        present_only = isinstance(node, ScalarNode) and not node.style and node.value.strip().lower() in _TRUE_WORDS
        if key == "acs":
            if present_only:
                raise self.err(node, "acs needs its capability bits: acs: {cap: SV+RR+CR+UF}", field)
            m = self.mapping(node, field, ("cap", "ctrl"), "the ACS capability")
            if "cap" not in m:
                raise self.err(node, "acs needs cap (the ACS capability bits, like SV+RR+CR+UF)", f"{field}.cap")
            cap = self.acs_bits(m["cap"][1], f"{field}.cap")
            ctrl = self.acs_bits(m["ctrl"][1], f"{field}.ctrl") if "ctrl" in m else cap & _ACS_LINUX_DEFAULT
            return AcsCap(cap=cap, ctrl=ctrl)
        spec = _CAP_SPECS[key]
        cls, fields = spec
        if present_only:
            return cls()
        m = self.mapping(node, field, tuple(fields), f"the {key.upper()} capability")
        kw: dict[str, Any] = {}
        for k, (_, v) in m.items():
            f = f"{field}.{k}"
            if self.is_null(v):
                continue
            kind = fields[k]
            if kind == "bool":
                kw[_attr(k)] = self.bool(v, f)
            elif kind == "int":
                kw[_attr(k)] = self.int(v, f, 0)
            elif kind == "id":
                kw[_attr(k)] = self.hexnum(v, f, 0xFFFF, "a device ID")
            elif kind == "bus":
                kw[_attr(k)] = self.bus(v, f)
            elif kind == "devices":
                kw["bitmap"] = kw.get("bitmap", 0) | self.rcec_devices(v, f)
            elif kind == "bitmap":
                kw["bitmap"] = kw.get("bitmap", 0) | self.int(v, f, 0)
        return cls(**kw)

    def acs_bits(self, node: Node, field: str) -> int:
        if isinstance(node, SequenceNode):
            names = [self.scalar(n, field, "an ACS flag name") for n in node.value]
        else:
            raw = self.scalar(node, field, "ACS flags like SV+RR+CR+UF")
            if re.fullmatch(r"0x[0-9a-fA-F]+|[0-9]+", raw):
                return int(raw, 0) & 0x7F
            names = raw  # type: ignore[assignment]
        try:
            return acs_flags_parse(names)
        except ValueError as e:
            raise self.err(node, str(e), field) from None

    def rcec_devices(self, node: Node, field: str) -> int:
        bitmap = 0
        for n in self.sequence(node, field, "device numbers (hex, 00-1f)"):
            bitmap |= 1 << self.hexnum(n, field, 0x1F, "a device number")
        return bitmap

    def dsn(self, node: Node, field: str) -> str:
        raw = self.scalar(node, field, "a serial number like 00-11-22-33-44-55-66-77").strip().lower()
        if re.fullmatch(r"(?:[0-9a-f]{2}-){7}[0-9a-f]{2}", raw):
            return raw
        s = raw[2:] if raw.startswith("0x") else raw
        if re.fullmatch(r"[0-9a-f]{1,16}", s):
            v = int(s, 16)
            return "-".join(f"{(v >> (8 * i)) & 0xFF:02x}" for i in range(7, -1, -1))
        raise self.err(node, f"expected a serial number like 00-11-22-33-44-55-66-77, got {raw!r}", field)

    # ---- one function key ------------------------------------------------------------
    def fn_value(self, key: str, node: Node, field: str, addr: Address | None) -> dict[str, Any]:
        """Parse the value of a (non-structural) function key into Function attributes."""
        if self.is_null(node):
            if key == "caps":
                return {"caps": Capabilities()}  # the model's "nothing known" for capabilities
            return {a: None for a in _KEY_ATTRS[key]}
        if key in ("ids", "subsystem"):
            raw = self.scalar(node, field, "IDs like 8086:10d3")
            parts = raw.split(":")
            if len(parts) != 2:
                raise self.err(node, f"expected vendor:device in hex like 8086:10d3 (? for unknown), got {raw!r}", field)
            vals = []
            for p in parts:
                p = p.strip()
                if p == "?":
                    vals.append(None)
                elif re.fullmatch(r"(?:0x)?[0-9a-fA-F]{1,4}", p):
                    vals.append(int(p, 16))
                else:
                    raise self.err(node, f"expected vendor:device in hex like 8086:10d3 (? for unknown), got {raw!r}", field)
            a, b = _KEY_ATTRS[key]
            return {a: vals[0], b: vals[1]}
        if key == "class":
            raw = self.scalar(node, field, "a class code like 020000")
            s = raw[2:] if raw.lower().startswith("0x") else raw
            if not re.fullmatch(r"[0-9a-fA-F]{6}", s):
                raise self.err(node, f"expected 6 hex digits (class, subclass, prog-if) like 020000, got {raw!r}", field)
            return {"class_code": int(s, 16)}
        if key == "revision":
            return {"revision": self.hexnum(node, field, 0xFF, "a revision")}
        if key in ("vendor-name", "device-name", "subsystem-name", "class-name"):
            return {_attr(key): self.text(node, field)}
        if key == "header-type":
            return {"header_type": self.int(node, field, 0, 0x7F)}
        if key in ("multifunction", "boot-vga", "external-facing", "removable", "is-virtfn"):
            return {_attr(key): self.bool(node, field)}
        if key == "pcie-type":
            raw = self.scalar(node, field, "a PCIe type").lower()
            try:
                return {"pcie_type": PcieType(raw)}
            except ValueError:
                names = [t.value for t in PcieType]
                close = difflib.get_close_matches(raw, names, n=1, cutoff=0.5)
                hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(names)}"
                raise self.err(node, f"unknown PCIe type {raw!r} ({hint})", field) from None
        if key == "config-size":
            return {"config_size": self.int(node, field, 0, 4096)}
        if key in ("bars", "vf-bars"):
            return {_attr(key): self.bars(node, field)}
        if key == "rom":
            return {"rom": ABSENT if self.is_absent(node) else self.bar(node, field, None)}
        if key == "bridge":
            return {"bridge": ABSENT if self.is_absent(node) else self.bridge(node, field)}
        if key == "caps":
            return {"caps": self.caps(node, field)}
        if key == "slot":
            if self.is_absent(node):
                return {"slot": ABSENT}
            m = self.mapping(node, field, _SLOT_KEYS, "a slot")
            kw: dict[str, Any] = {}
            for k, (_, v) in m.items():
                f = f"{field}.{k}"
                if self.is_null(v):
                    continue
                if k == "physical-slot":
                    kw["physical_slot"] = self.text(v, f)
                elif k == "number":
                    kw["number"] = self.int(v, f, 0)
                elif k == "hotplug-driver":
                    drv = self.text(v, f)
                    if drv not in _HOTPLUG_DRIVERS:
                        raise self.err(v, f"unknown hotplug driver {drv!r} (expected one of {', '.join(_HOTPLUG_DRIVERS)})", f)
                    kw["hotplug_driver"] = drv
                else:
                    kw[k] = self.bool(v, f)
            return {"slot": SlotInfo(**kw)}
        if key == "link":
            if self.is_absent(node):
                raise self.err(node, "link cannot be none: leave it out when the function has no link", field)
            m = self.mapping(node, field, _LINK_KEYS, "a link")
            kw = {}
            for k, (_, v) in m.items():
                f = f"{field}.{k}"
                if self.is_null(v):
                    continue
                kw[_attr(k)] = self.text(v, f) if k.endswith("speed") else self.int(v, f, 0)
            return {"link": LinkInfo(**kw)}
        if key in ("driver", "driver-override", "iommu-group"):
            if self.is_absent(node):
                return {_attr(key): ABSENT}
            return {_attr(key): self.text(node, field)}
        if key == "numa-node":
            return {"numa_node": self.int(node, field)}
        if key == "reset-methods":
            if self.is_absent(node):
                return {"reset_methods": ()}
            if isinstance(node, ScalarNode):
                return {"reset_methods": tuple(self.text(node, field).split())}
            return {"reset_methods": tuple(self.text(n, field) for n in self.sequence(node, field, "reset methods"))}
        raise AssertionError(key)  # pragma: no cover - every key is handled above

    def bridge(self, node: Node, field: str) -> BridgeInfo:
        m = self.mapping(node, field, _BRIDGE_KEYS, "a bridge")
        kw: dict[str, Any] = {}
        if "bus-range" in m and ("secondary" in m or "subordinate" in m):
            raise self.err(m["bus-range"][0], "give bus-range or secondary/subordinate, not both", f"{field}.bus-range")
        for k, (_, v) in m.items():
            f = f"{field}.{k}"
            if self.is_null(v):
                continue
            if k in ("primary", "secondary", "subordinate"):
                kw[k] = self.bus(v, f)
            elif k == "bus-range":
                kw["secondary"], kw["subordinate"] = self.bus_range(v, f)
            else:
                wk = WindowKind(k)
                kw[f"{k}_window"] = ABSENT if self.is_absent(v) else self.window(v, f, wk)
        return BridgeInfo(**kw)

    # ---- functions ---------------------------------------------------------------------
    def function(self, node: Node, ctx: "_Ctx", field: str) -> Address:
        """One device entry (and, recursively, its VFs, VMD domain and children).

        Fields in errors are relative to the entry (``bars.2.size``), and messages start
        with the device's address so the line and the device both point at the problem.
        """
        if not isinstance(node, MappingNode):
            raise self.err(node, f"expected a device (a mapping with address and ids), got {_kind_of(node)}", field)
        an = self.pairs(node, "", "a device").get("address", (None, None))[1]
        if an is None:
            raise self.err(node, "a device needs address (like 0000:01:00.0)", "address")
        addr = self.address(an, "address", ctx.domain)
        try:
            return self._function(node, ctx, field, an, addr)
        except SourceError as e:
            if not getattr(e, "_device_named", False):
                e.message = f"device {addr}: {e.message}"
                e._device_named = True  # type: ignore[attr-defined]
            raise

    def _function(self, node: MappingNode, ctx: "_Ctx", field: str, an: Node, addr: Address) -> Address:
        m = self.mapping(node, "", _FN_KEYS, "a device")
        line = an.start_mark.line + 1
        if addr in self.seen:
            raise self.err(an, f"duplicate address: another device has it (first at line {self.seen[addr]})", "address")
        self.seen[addr] = line
        if ctx.root_bus is not None and (addr.domain, addr.bus) != ctx.root_bus:
            dom, bus = ctx.root_bus
            raise self.err(
                an,
                f"listed on root bus {dom:04x}:{bus:02x} but not on that bus "
                "(put it under its bridge's children:)",
                "address",
            )
        if ctx.parent is not None and addr.domain != ctx.parent.domain:
            raise self.err(an, f"in another PCI domain than its upstream bridge {ctx.parent}", "address")
        if "ids" not in m and "ids" not in self.defaults:
            raise self.err(node, "needs ids (vendor:device like 8086:10d3; ? for an unknown half)", "ids")

        kw: dict[str, Any] = {"address": addr, "parent": ctx.parent, "physfn": ctx.physfn}
        # Defaults first, then the entry's own keys.
        for key, vals in self.defaults.items():
            if key not in m:
                kw.update(vals)
        for key, (_, v) in m.items():
            if key in _STRUCTURAL:
                continue
            kw.update(self.fn_value(key, v, key, addr))

        if "parent" in m:
            pn = m["parent"][1]
            if not ctx.top_level:
                raise self.err(m["parent"][0], "parent is given by nesting here; it is only for top-level devices", "parent")
            if not self.is_null(pn):
                kw["parent"] = self.address(pn, "parent", addr.domain)
                self.explicit_parents.append((addr, kw["parent"], pn.start_mark.line + 1))
        if "physfn" in m:
            pn = m["physfn"][1]
            if ctx.physfn is not None:
                raise self.err(m["physfn"][0], "physfn is given by nesting under vfs:", "physfn")
            if not self.is_null(pn):
                kw["physfn"] = self.address(pn, "physfn", addr.domain)
                self.links.append((str(addr), "PF", kw["physfn"], pn.start_mark.line + 1))
        if "is-virtfn" not in m and kw.get("physfn") is not None:
            kw["is_virtfn"] = True

        if ctx.parent is not None:
            self._check_bus_range(addr, ctx.parent, ctx.parent_bridge, an)

        # VFs: listed under the PF (parent = the PF's parent), or named by virtfns:.
        if "vfs" in m and "virtfns" in m:
            raise self.err(m["virtfns"][0], "give vfs: (the VFs themselves) or virtfns: (their addresses), not both", "virtfns")
        virtfns: list[Address] = []
        if "virtfns" in m and not self.is_null(m["virtfns"][1]):
            vn = m["virtfns"][1]
            if not self.is_absent(vn):
                for n in self.sequence(vn, "virtfns", "VF addresses"):
                    va = self.address(n, "virtfns", addr.domain)
                    virtfns.append(va)
                    self.links.append((str(addr), "VF", va, n.start_mark.line + 1))
        if "vfs" in m and not self.is_null(m["vfs"][1]):
            vn = m["vfs"][1]
            if not self.is_absent(vn):
                vctx = _Ctx(domain=addr.domain, parent=kw["parent"], parent_bridge=ctx.parent_bridge, physfn=addr)
                if ctx.top_level and kw["parent"] is not None:
                    vctx.parent_bridge = None  # checked once the explicit parent is known
                for i, n in enumerate(self.sequence(vn, "vfs", "VFs")):
                    virtfns.append(self.function(n, vctx, f"{field}.vfs[{i}]"))
        kw["virtfns"] = tuple(virtfns)

        # A VMD endpoint: the domain it owns and that domain's root bus with its devices.
        if "vmd" in m and not self.is_null(m["vmd"][1]):
            vn = m["vmd"][1]
            vm = self.mapping(vn, "vmd", _VMD_KEYS, "a VMD domain")
            vdom = None
            if "domain" in vm and not self.is_null(vm["domain"][1]):
                vdom = self.hexnum(vm["domain"][1], "vmd.domain", 0xFFFFFFFF, "a PCI domain")
            kw["vmd_domain"] = vdom
            hb_keys = set(vm) - {"domain"}
            if hb_keys:
                self._host_bridge_from(vm, vn, "vmd", addr, vdom)
                if vdom is not None and self.host_bridges[-1].domain != vdom:
                    raise self.err(vm["root-bus"][1], f"root bus is not in the VMD domain {vdom:04x}", "vmd.root-bus")

        if "children" in m and not self.is_null(m["children"][1]):
            cn = m["children"][1]
            if not self.is_absent(cn):
                bridge = kw.get("bridge")
                if bridge is ABSENT:
                    self.warn(cn, f"{addr} has children but is marked as not a bridge (bridge: none)")
                cctx = _Ctx(domain=addr.domain, parent=addr, parent_bridge=bridge)
                for i, n in enumerate(self.sequence(cn, "children", "devices")):
                    self.function(n, cctx, f"{field}.children[{i}]")

        try:
            fn = Function(**kw)
        except (TypeError, ValueError) as e:  # pragma: no cover - parsers above validate
            raise self.err(node, str(e), field) from None
        self.functions.append(fn)
        return addr


class _Ctx:
    """Where a device entry sits: what its address and links default to."""

    __slots__ = ("domain", "parent", "parent_bridge", "physfn", "root_bus", "top_level")

    def __init__(
        self,
        domain: int,
        parent: Address | None = None,
        parent_bridge: Any = None,
        physfn: Address | None = None,
        root_bus: tuple[int, int] | None = None,
        top_level: bool = False,
    ) -> None:
        self.domain = domain
        self.parent = parent
        self.parent_bridge = parent_bridge
        self.physfn = physfn
        self.root_bus = root_bus
        self.top_level = top_level


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def _kind_of(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, ScalarNode):
        if not node.style and node.tag == _NULL_TAG:
            return "nothing (null)"
        return f"{node.value!r}"
    return "something else"  # pragma: no cover


#: Function attributes each (non-structural) key sets.
_KEY_ATTRS: dict[str, tuple[str, ...]] = {
    "ids": ("vendor_id", "device_id"),
    "subsystem": ("subsystem_vendor_id", "subsystem_device_id"),
    "class": ("class_code",),
}
for _k in _DEFAULTABLE:
    _KEY_ATTRS.setdefault(_k, (_attr(_k),))
_KEY_ATTRS["vf-bars"] = ("vf_bars",)

#: Capability name -> (dataclass, {key: value kind}).
_CAP_SPECS: dict[str, tuple[type, dict[str, str]]] = {
    "ats": (AtsCap, {"queue-depth": "int", "enabled": "bool", "stu": "int"}),
    "pri": (PriCap, {"enabled": "bool", "capacity": "int", "allocation": "int"}),
    "pasid": (PasidCap, {"exec-supported": "bool", "priv-supported": "bool", "max-width": "int", "enabled": "bool"}),
    "sriov": (
        SriovCap,
        {
            "initial-vfs": "int", "total-vfs": "int", "num-vfs": "int", "vf-offset": "int", "vf-stride": "int",
            "vf-device": "id", "ari-hierarchy": "bool", "enabled": "bool", "driver-total-vfs": "int",
            "drivers-autoprobe": "bool",
        },
    ),
    "ari": (AriCap, {"next-function": "int"}),
    "aer": (AerCap, {"version": "int"}),
    "rcec": (RcecCap, {"devices": "devices", "bitmap": "bitmap", "next-bus": "bus", "last-bus": "bus"}),
}

def _parse_int(raw: str) -> int:
    s = raw.strip().replace("_", "")
    neg = s.startswith("-")
    if neg or s.startswith("+"):
        s = s[1:]
    if re.fullmatch(r"0x[0-9a-fA-F]+", s):
        v = int(s, 16)
    elif re.fullmatch(r"[0-9]+", s):
        v = int(s, 10)
    else:
        raise ValueError(raw)
    return -v if neg else v


# =====================================================================================
# Writing
# =====================================================================================


class _Q(str):
    """A string always written double-quoted."""


class _Flow(dict):  # type: ignore[type-arg]
    """A mapping written on one line: ``{kind: mem64, size: 16K}``."""


class _FlowList(list):  # type: ignore[type-arg]
    """A list written on one line: ``[flr, bus]``."""


class _Dumper(yaml.SafeDumper):
    """The pure-Python emitter, told to indent block sequences under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True  # never write anchors and aliases (&id001 / *id001)


class _CDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """The C emitter (when PyYAML has it): its block sequences are indented by _indent_sequences."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


for _d in (_Dumper, _CDumper):
    _d.add_representer(_Q, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", str(v), style='"'))
    _d.add_representer(_Flow, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(), flow_style=True))
    _d.add_representer(_FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))

_HAVE_C_DUMPER = hasattr(yaml, "CSafeDumper")


def _indent_sequences(text: str) -> str:
    """Indent the block sequences of PyYAML's default output under their keys.

    PyYAML writes ``key:`` and then ``- item`` at the key's own column. Here every line is
    one structural line (all scalars are single-line), so a sequence is the run of lines
    after ``key:`` at column c that are items (``- ``) at c or anything deeper; each line
    moves right by two columns per open sequence around it.
    """
    out: list[str] = []
    open_cols: list[int] = []
    opener: int | None = None  # column of the key on the previous line, if it ended with ":"
    for line in text.splitlines():
        body = line.lstrip(" ")
        col = len(line) - len(body)
        is_item = body.startswith("- ") or body == "-"
        while open_cols and (col < open_cols[-1] or (col == open_cols[-1] and not is_item)):
            open_cols.pop()
        if is_item and opener == col and (not open_cols or open_cols[-1] != col):
            open_cols.append(col)
        out.append(" " * (2 * len(open_cols)) + line if line else line)
        opener = None
        if body.endswith(":") and not body.startswith(("'", '"', "{", "[")):
            opener = col + 2 if is_item else col
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _emit(doc: dict[str, Any], fast: bool = _HAVE_C_DUMPER) -> str:
    opts: dict[str, Any] = dict(sort_keys=False, default_flow_style=False, allow_unicode=True, width=100000, indent=2)
    if fast:
        return _indent_sequences(yaml.dump(doc, Dumper=_CDumper, **opts))
    return yaml.dump(doc, Dumper=_Dumper, **opts)


def _s(v: str) -> str:
    """A free-text string, plain when that reads back the same; else double-quoted (the ABSENT
    word, outer spaces, and line breaks or control characters, which only that style escapes)."""
    return _Q(v) if v.strip().lower() == ABSENT_WORD or v != v.strip() or not v.isprintable() else v


def fmt_size(n: int) -> int | str:
    """Sizes in the largest binary unit that divides them exactly: 16K, 256M, 4G; else an int."""
    for unit, shift in (("E", 60), ("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= (1 << shift) and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return n


def _hexaddr(n: int) -> _Q:
    return _Q(f"{n:#x}")


def _idpair(a: int | None, b: int | None) -> Any:
    if a is None and b is None:
        return _UNKNOWN
    return _Q(f"{'?' if a is None else format(a, '04x')}:{'?' if b is None else format(b, '04x')}")


def _enc_bar(b: Bar, rom: bool = False) -> _Flow:
    d = _Flow()
    if rom:
        if b.index != 6:
            d["index"] = b.index
        if b.kind is not BarKind.MEM32:
            d["kind"] = b.kind.value
    else:
        d["kind"] = b.kind.value
    if b.start is not None:
        d["start"] = _hexaddr(b.start)
    if b.size is not None:
        d["size"] = fmt_size(b.size)
    if b.unassigned:
        d["unassigned"] = True
    if b.disabled is not None:
        d["disabled"] = b.disabled
    if b.total_size is not None:
        d["total-size"] = fmt_size(b.total_size)
    return d


def _enc_bars(bars: tuple[Bar, ...] | None) -> Any:
    if bars is None:
        return _UNKNOWN
    if not bars:
        return ABSENT_WORD
    return {b.index: _enc_bar(b) for b in bars}


def _enc_window(w: Window, slot: WindowKind | None) -> Any:
    if slot is not None and w.kind is not slot:
        d = _Flow(kind=w.kind.value, start=_hexaddr(w.start), end=_hexaddr(w.end))
        if w.is_64bit is not None:
            d["64-bit"] = w.is_64bit
        return d
    text = f"{w.start:#x}-{w.end:#x}"
    if slot is None:
        text = f"{w.kind.value} {text}"
    if w.is_64bit is not None:
        text += " 64-bit" if w.is_64bit else " 32-bit"
    return _Q(text)


def _enc_maybe(v: Any, enc: Callable[[Any], Any]) -> Any:
    if v is None:
        return _UNKNOWN
    if v is ABSENT:
        return ABSENT_WORD
    return enc(v)


def _enc_bridge(br: BridgeInfo) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if br.primary is not None:
        d["primary"] = _Q(f"{br.primary:02x}")
    if br.secondary is not None and br.subordinate is not None and br.secondary <= br.subordinate:
        d["bus-range"] = _Q(f"{br.secondary:02x}-{br.subordinate:02x}")
    else:
        if br.secondary is not None:
            d["secondary"] = _Q(f"{br.secondary:02x}")
        if br.subordinate is not None:
            d["subordinate"] = _Q(f"{br.subordinate:02x}")
    for kind, w in ((WindowKind.IO, br.io_window), (WindowKind.MEM, br.mem_window), (WindowKind.PREF, br.pref_window)):
        e = _enc_maybe(w, lambda x, k=kind: _enc_window(x, k))
        if e is not _UNKNOWN:
            d[kind.value] = e
    return d if d else _Flow()


def _enc_cap(name: str, v: Any) -> Any:
    if name == "dsn":
        return _Q(v)
    if name == "acs":
        return _Flow(cap=acs_flags_str(v.cap), ctrl=acs_flags_str(v.ctrl))
    d = _Flow()
    if name == "rcec":
        if v.bitmap:
            d["devices"] = _FlowList(_Q(f"{x:02x}") for x in v.devices)
        if v.bitmap >> 32:
            d["bitmap"] = _hexaddr(v.bitmap)
            d.pop("devices", None)
        if v.next_bus is not None:
            d["next-bus"] = _Q(f"{v.next_bus:02x}")
        if v.last_bus is not None:
            d["last-bus"] = _Q(f"{v.last_bus:02x}")
        return d
    _, spec = _CAP_SPECS[name]
    for key, kind in spec.items():
        val = getattr(v, _attr(key))
        if val is None:
            continue
        d[key] = _Q(f"{val:04x}") if kind == "id" else val
    return d


def _enc_caps(c: Capabilities) -> Any:
    values = {a: getattr(c, a) for a in _CAP_MAYBE + _CAP_BOOL}
    if all(v is None for v in values.values()):
        return _UNKNOWN
    missing = [a for a, v in values.items() if v is ABSENT or v is False]
    if len(missing) == len(values):
        return ABSENT_WORD
    use_others = len(missing) >= 2 and all(v is not None for v in values.values())
    d: dict[str, Any] = {}
    for a in _CAP_MAYBE:
        v = values[a]
        if v is None or (use_others and v is ABSENT):
            continue
        d[a] = ABSENT_WORD if v is ABSENT else _enc_cap(a, v)
    for a in _CAP_BOOL:
        v = values[a]
        if v is None or (use_others and v is False):
            continue
        d[a.replace("_", "-")] = v
    if use_others:
        d["others"] = ABSENT_WORD
    return d


def _enc_slot(s: SlotInfo) -> _Flow:
    d = _Flow()
    if s.physical_slot is not None:
        d["physical-slot"] = _Q(s.physical_slot)
    if s.number is not None:
        d["number"] = s.number
    if s.hotplug is not None:
        d["hotplug"] = s.hotplug
    if s.surprise is not None:
        d["surprise"] = s.surprise
    if s.hotplug_driver is not None:
        d["hotplug-driver"] = s.hotplug_driver
    return d


def _enc_link(lk: LinkInfo) -> _Flow:
    d = _Flow()
    for key in _LINK_KEYS:
        v = getattr(lk, _attr(key))
        if v is not None:
            d[key] = _s(v) if isinstance(v, str) else v
    return d


def _encode_value(fn: Function, key: str) -> Any:
    """The YAML value of one non-structural key of ``fn`` (``_UNKNOWN`` when unknown)."""
    if key == "ids":
        return _idpair(fn.vendor_id, fn.device_id)
    if key == "subsystem":
        return _idpair(fn.subsystem_vendor_id, fn.subsystem_device_id)
    if key == "class":
        return _UNKNOWN if fn.class_code is None else _Q(f"{fn.class_code:06x}")
    if key == "revision":
        return _UNKNOWN if fn.revision is None else _Q(f"{fn.revision:02x}")
    if key in ("vendor-name", "device-name", "subsystem-name", "class-name"):
        v = getattr(fn, _attr(key))
        return _UNKNOWN if v is None else _s(v)
    if key in ("header-type", "config-size", "numa-node", "multifunction", "boot-vga", "external-facing", "removable", "is-virtfn"):
        v = getattr(fn, _attr(key))
        return _UNKNOWN if v is None else v
    if key == "pcie-type":
        return _UNKNOWN if fn.pcie_type is None else fn.pcie_type.value
    if key == "bars":
        return _enc_bars(fn.bars)
    if key == "vf-bars":
        return _enc_bars(fn.vf_bars)
    if key == "rom":
        return _enc_maybe(fn.rom, lambda b: _enc_bar(b, rom=True))
    if key == "bridge":
        return _enc_maybe(fn.bridge, _enc_bridge)
    if key == "caps":
        return _enc_caps(fn.caps)
    if key == "slot":
        return _enc_maybe(fn.slot, _enc_slot)
    if key == "link":
        return _UNKNOWN if fn.link is None else _enc_link(fn.link)
    if key in ("driver", "driver-override"):
        return _enc_maybe(getattr(fn, _attr(key)), _s)
    if key == "iommu-group":
        return _enc_maybe(fn.iommu_group, _Q)
    if key == "reset-methods":
        if fn.reset_methods is None:
            return _UNKNOWN
        return _FlowList(_s(m) for m in fn.reset_methods) if fn.reset_methods else ABSENT_WORD
    raise AssertionError(key)  # pragma: no cover


def _canon(v: Any) -> Any:
    """A hashable, type-aware form of an encoded value (to compare and count them)."""
    if isinstance(v, dict):
        return ("map", tuple((_canon(k), _canon(x)) for k, x in v.items()))
    if isinstance(v, list):
        return ("seq", tuple(_canon(x) for x in v))
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, int):
        return ("int", v)
    if v is None or v is _UNKNOWN:
        return ("unknown",)
    if isinstance(v, _Q):
        return ("quoted", str(v))
    return ("str", str(v))


#: Keys the writer may lift into ``defaults:`` when most functions share a value.
_WRITER_DEFAULTS = (
    "config-size", "rom", "vf-bars", "bridge", "caps", "slot", "driver-override", "iommu-group",
    "numa-node", "boot-vga", "reset-methods", "external-facing", "removable", "is-virtfn",
)


class _Writer:
    def __init__(self, topology: Topology) -> None:
        self.t = topology
        self.fns: dict[Address, Function] = dict(topology.functions)
        self.hbs = sorted(topology.host_bridges, key=lambda h: (h.domain, h.root_bus))
        self.defaults: dict[str, Any] = {}
        self.default_canon: dict[str, Any] = {}

    # ---- where each function is written ------------------------------------------------
    def layout(self) -> None:
        fns = self.fns
        forced_top: set[Address] = set()
        explicit_pf: set[Address] = set()
        while True:
            self._place(forced_top, explicit_pf)
            reached = self._reachable()
            missing = sorted(a for a in fns if a not in reached)
            if not missing:
                return
            a = missing[0]
            if a in self.claimed:
                explicit_pf.add(self.claimed[a])
            else:
                forced_top.add(a)

    def _place(self, forced_top: set[Address], explicit_pf: set[Address]) -> None:
        fns = self.fns
        self.claimed: dict[Address, Address] = {}
        self.vf_mode: set[Address] = set()
        for pa, pf in fns.items():
            if not pf.virtfns or pf.physfn is not None or pa in explicit_pf:
                continue
            vfs = pf.virtfns
            ok = len(set(vfs)) == len(vfs) and all(
                v in fns and v != pa and v not in self.claimed and v not in forced_top
                and v.domain == pa.domain and fns[v].physfn == pa and fns[v].parent == pf.parent and not fns[v].virtfns
                for v in vfs
            )
            if ok:
                self.vf_mode.add(pa)
                for v in vfs:
                    self.claimed[v] = pa
        # Host bridges: nested under their VMD endpoint (the first one it owns), else top level.
        self.hb_nested: dict[Address, HostBridge] = {}
        self.hb_top: list[HostBridge] = []
        hb_key_first: dict[tuple[int, int], HostBridge] = {}
        for hb in self.hbs:
            hb_key_first.setdefault((hb.domain, hb.root_bus), hb)
            o = hb.vmd_owner
            if (
                o is not None and o in fns and o not in self.hb_nested
                and fns[o].vmd_domain in (None, hb.domain)
            ):
                self.hb_nested[o] = hb
            else:
                self.hb_top.append(hb)
        self.kids: dict[Any, list[Address]] = {}
        self.top: list[Address] = []
        for a, f in fns.items():
            if a in self.claimed:
                continue  # written under its PF
            if a in forced_top:
                self.top.append(a)
            elif f.parent is not None and f.parent in fns and f.parent != a and f.parent.domain == a.domain:
                self.kids.setdefault(f.parent, []).append(a)
            elif f.parent is None and (a.domain, a.bus) in hb_key_first:
                self.kids.setdefault(id(hb_key_first[(a.domain, a.bus)]), []).append(a)
            else:
                self.top.append(a)

    def _reachable(self) -> set[Address]:
        seen: set[Address] = set()
        stack: list[Address] = list(self.top)
        for hb in self.hb_top:
            stack.extend(self.kids.get(id(hb), ()))
        while stack:
            a = stack.pop()
            if a in seen:
                continue
            seen.add(a)
            stack.extend(self.kids.get(a, ()))
            if a in self.vf_mode:
                stack.extend(self.fns[a].virtfns)
            hb = self.hb_nested.get(a)
            if hb is not None:
                stack.extend(self.kids.get(id(hb), ()))
        return seen

    # ---- defaults ----------------------------------------------------------------------
    def choose_defaults(self) -> None:
        n = len(self.fns)
        if n < 3:
            return
        for key in _WRITER_DEFAULTS:
            counts: Counter[Any] = Counter()
            sample: dict[Any, Any] = {}
            pool = [f for f in self.fns.values() if key != "is-virtfn" or f.physfn is None]
            for f in pool:
                v = _encode_value(f, key)
                c = _canon(v)
                counts[c] += 1
                sample.setdefault(c, v)
            if not counts:
                continue
            best, count = counts.most_common(1)[0]
            if best != ("unknown",) and count * 2 > len(pool) and count >= 2:
                self.defaults[key] = sample[best]
                self.default_canon[key] = best

    # ---- entries -----------------------------------------------------------------------
    def entry(self, a: Address, top_level: bool, nested_vf: bool) -> dict[str, Any]:
        f = self.fns[a]
        d: dict[str, Any] = {"address": _Q(str(a))}
        if top_level and f.parent is not None:
            d["parent"] = _Q(str(f.parent))
        for key in _FN_KEYS:
            if key in _STRUCTURAL:
                if key == "physfn" and f.physfn is not None and not nested_vf:
                    d["physfn"] = _Q(str(f.physfn))
                continue
            v = _encode_value(f, key)
            # What the reader would fill in if the key were left out: implied, default or unknown.
            if key == "is-virtfn" and f.physfn is not None:
                implied: Any = _canon(True)
            else:
                implied = self.default_canon.get(key)
            if implied is None:  # no default: leave out exactly the unknown values
                if v is not _UNKNOWN:
                    d[key] = v
                elif key == "ids":
                    d["ids"] = _Q("?:?")  # ids is required; this says both halves are unknown
                continue
            if _canon(v) != implied:
                d[key] = None if v is _UNKNOWN else v
        if f.virtfns and a not in self.vf_mode:
            d["virtfns"] = [_Q(str(v)) for v in f.virtfns]
        hb = self.hb_nested.get(a)
        if f.vmd_domain is not None or hb is not None:
            vmd: dict[str, Any] = {}
            if f.vmd_domain is not None:
                vmd["domain"] = _Q(f"{f.vmd_domain:04x}")
            if hb is not None:
                vmd.update(self.host_bridge(hb, nested=True))
            d["vmd"] = vmd
        if a in self.vf_mode:
            d["vfs"] = [self.entry(v, False, True) for v in f.virtfns]
        kids = self.kids.get(a)
        if kids:
            d["children"] = [self.entry(k, False, False) for k in sorted(kids)]
        return d

    def host_bridge(self, hb: HostBridge, nested: bool) -> dict[str, Any]:
        d: dict[str, Any] = {"root-bus": _Q(f"{hb.domain:04x}:{hb.root_bus:02x}")}
        if hb.bus_range is not None:
            d["bus-range"] = _Q(f"{hb.bus_range[0]:02x}-{hb.bus_range[1]:02x}")
        if hb.windows is not None:
            d["windows"] = [_enc_window(w, None) for w in hb.windows] if hb.windows else ABSENT_WORD
        if not nested and hb.vmd_owner is not None:
            d["vmd-owner"] = _Q(str(hb.vmd_owner))
        kids = self.kids.get(id(hb))
        if kids:
            d["devices"] = [self.entry(k, False, False) for k in sorted(kids)]
        return d

    def document(self) -> dict[str, Any]:
        self.layout()
        self.choose_defaults()
        src = self.t.source
        doc: dict[str, Any] = {MARKER_KEY: FORMAT}
        if src.description is not None:
            doc["description"] = _s(src.description)
        if src.kernel_release is not None:
            doc["kernel-release"] = _s(src.kernel_release)
        if src.kernel_cmdline is not None:
            doc["kernel-cmdline"] = _Q(src.kernel_cmdline)
        if src.iommu_present is not None:
            doc["iommu-present"] = src.iommu_present
        if src.group_types:
            doc["group-types"] = {_Q(label): _s(t) for label, t in src.group_types}
        names = {v: k for k, v in _FIRMWARE_KEYS.items()}
        if any(k in names for k, _ in src.firmware):
            doc["firmware"] = {names[k]: _Q(v) for k, v in src.firmware if k in names}
        if self.defaults:
            doc["defaults"] = dict(self.defaults)
        if self.hb_top:
            doc["host-bridges"] = [self.host_bridge(hb, nested=False) for hb in self.hb_top]
        if self.top:
            doc["devices"] = [self.entry(a, True, False) for a in sorted(self.top)]
        from .yaml_mdev import dump as dump_mdev  # the mdev: section (sources/yaml_mdev.py)

        mdev = dump_mdev(self.t)
        if mdev is not None:
            doc["mdev"] = mdev
        if src.thunderbolt is not None:
            doc["thunderbolt"] = [
                {k: v for k, v in (
                    ("name", _s(d.name)), ("authorized", d.authorized), ("security", None if d.security is None else _s(d.security)),
                    ("iommu-dma-protection", d.iommu_dma_protection),
                    ("vendor-name", None if d.vendor_name is None else _Q(d.vendor_name)),
                    ("device-name", None if d.device_name is None else _Q(d.device_name)),
                    ("pci-device", None if d.pci_device is None else _Q(str(d.pci_device))),
                ) if v is not None}
                for d in src.thunderbolt
            ]
        return doc


def dump_yaml(topology: Topology) -> str:
    """Write ``topology`` as a YAML topology (deterministic: same topology, same text)."""
    # (a large node graph, as for loading)
    with gcpause.paused():
        body = _emit(_Writer(topology).document())
    return "# PCI topology for pci-explorer; the format is described in docs/yaml-format.md\n" + body


def _char_name(c: object) -> str:
    """U+0001 for a character YAML refuses (ReaderError gives it as a number or a text)."""
    if isinstance(c, str) and len(c) == 1:
        c = ord(c)
    return f"U+{c:04X}" if isinstance(c, int) else repr(c)
