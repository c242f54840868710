"""Load a topology from lspci output: ``lspci -v/-vv/-vvv`` text and ``-x/-xxx/-xxxx`` dumps.

Accepted forms: with or without ``-nn``, ``-D`` and ``-k``; tab or space
indentation; quoted mail (``> `` prefixes); CRLF; stderr interleaved into stdout
(``pcilib: ...`` even in the middle of a word: the message runs to the end of
that line and the interrupted line continues on the next one); shell prompts and
``lspci -t`` trees before the first device. When a device has a hex dump
(``lspci -vvvxxxx``, pciutils' own test files) the dump is decoded by
:func:`explorer.sources.config.decode_config` and wins; the text adds what config
space cannot say (names, IOMMU group, driver, BAR sizes, NUMA node, physical slot)
and is cross-checked against it.

What lspci cannot show stays unknown (None); what it shows to be missing is
ABSENT: a capability not in a fully shown capability list, a closed window, no
``Kernel driver in use`` line in a file that has kernel lines for other devices.

Parents are derived from bridges' bus ranges (the innermost bridge whose
secondary..subordinate holds the device's bus, in the same domain). Devices in a
VMD domain (0x10000 and up) on its root bus hang under a host bridge owned by the
VMD endpoint. SR-IOV VFs are linked to their PF by routing ID.

Bad input never raises anything but :class:`SourceError`; a damaged device block
is skipped or partly read, with a warning naming its line.

What the text can and cannot say, as read here:

* Capabilities: a block whose list was shown (and not cut off at the end of the
  file) makes every capability it does not show ABSENT; extended ones only when
  extended capabilities are visible somewhere in the file (else they stay
  unknown: the machine's extended config space may not have been readable).
  ``Capabilities: <access denied>`` leaves them unknown; ``Status: Cap-`` means none.
* Header type: ``Bus:`` means a bridge (CardBus when it has CardBus windows),
  verbose output without it type 0. Multifunction: from a hex dump; else True for
  function 0 when another non-VF function shares its slot (the kernel scans
  functions 1-7 only then); other functions' own bit is not knowable (QEMU's
  second e1000e function has it clear, ICH9's functions set).
* A missing ``(rev xx)`` is revision 0 (lspci omits zero). Without ``-nn`` only
  names are shown: IDs come from ``Device dddd`` / ``vvvv:dddd`` forms or a dump.
* Bridge windows: ``[disabled]``, ``None`` or base > limit are ABSENT; a window line
  lspci did not print (an unsupported I/O window) too; a bridge with secondary bus
  0 is unconfigured and forwards nothing. Newer lspci labels windows read from
  sysfs ``[32-bit]`` whatever they are, so a prefetchable window is known 64-bit
  only from ``[64-bit]``, 16 digits or an address above 4 GiB.
* DevCap2 ``ARIFwd`` is printed only for root and downstream ports; it is False
  for endpoint-like types (reserved bit) and unknown for bridges.
* pciutils 2.x printed the slot number as ``Slot #%3x`` (hex) and spelt
  ``Surpise``; both are read. Its DSN byte order was reversed in some versions:
  the text is taken as printed (a dump, when present, wins and the difference is
  reported).
* VF BAR sizes: a VF's own ``[virtual]`` BAR gives one VF's size; the IOV
  resource (``total_size``) is that times TotalVFs.
* Not read: ``lspci -m``/``-vmm`` machine-readable output, ``-P`` path names and
  ``-t`` trees (skipped before the first device).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from pathlib import Path

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
)
from ..model import names
from . import lspci_hex
from .errors import SourceError

__all__ = ["load_lspci", "load_lspci_text", "looks_like_lspci", "VMD_DEVICE_IDS"]

#: Intel VMD endpoints (drivers/pci/controller/vmd.c ``vmd_ids``, mainline).
VMD_DEVICE_IDS = frozenset({0x201D, 0x28C0, 0x467F, 0x4C3D, 0xA77F, 0x7D0B, 0xAD0B, 0x9A0B, 0xB60B, 0xB06F, 0xB07F})
_INTEL = 0x8086
_VMD_FIRST_DOMAIN = 0x10000

_MAX_LINE_WARNINGS = 50

# ---- whole-text patterns (the text is scanned a few times at C speed, not line by line) --
_QUOTE_RE = re.compile(r"^(?:>[ ]?)+", re.M)
_CR_RE = re.compile(r"\r+(?=\n|\Z)")
#: An interleaved stderr message: it runs to the end of its line; removing it together
#: with that newline joins the interrupted stdout line with its continuation.
_STDERR_SPAN_RE = re.compile(r"(?:pcilib|lspci|setpci): [^\n]*(?:\n|\Z)")
#: The newline before a device line (the text is prefixed with a newline).
_HEADER_NL_RE = re.compile(r"\n(?=[ \t]*(?:[0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-9a-fA-F](?:[ \t]|\n|\Z))")
_HEADER_RE = re.compile(r"^[ \t]*(?:([0-9a-fA-F]{4,8}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])(?:[ \t]+(.*))?$")
_TREE_OR_PROMPT_RE = re.compile(r"^\s*(?:[$#%] |[-+|\\`]|.*[+\\]-)")
#: A capability line: offset, version, title and (group 4) the kind of the ones the
#: model has a place for; group 5 is anything else after "Capabilities:".
_CAPLINE_RE = re.compile(
    r"\n[ \t]*Capabilities:[ \t]?(?:\[([0-9a-fA-F]{1,3})(?: v(\d+))?\] ?"
    r"((Express|Access Control Services|Alternative Routing-ID Interpretation|Address Translation Service"
    r"|Page Request Interface|Process Address Space ID|Single Root I/O Virtualization|Advanced Error Reporting"
    r"|Root Complex Event Collector Endpoint Association|Device Serial Number)?[^\n]*)|([^\n]*))"
)
_DENIED_RE = re.compile(r"\n[ \t]*(?:Capabilities:[ \t]*)?<access denied")
_KERNEL_RE = re.compile(r"\n[ \t]*Kernel (driver in use|modules):[ \t]*([^\n]*)")
_HEX_START_RE = re.compile(r"\n[ \t]*[0-9a-fA-F]{2,3}:[ \t]+[0-9a-fA-F]{2}(?:[ \t]|\n|\Z)")

#: The top-level lines the model needs (group 1/2: "Key: value"; group 3: BAR, ROM,
#: CardBus window or "!!!" lines), and unindented lines that are not lspci's (group 4).
_TOP_RE = re.compile(
    r"\n[ \t]*(?:(Subsystem|Control|Status|IOMMU group|NUMA node|Physical Slot|Flags|Bus"
    r"|I/O behind bridge|Memory behind bridge|Prefetchable memory behind bridge):([^\n]*)"
    r"|((?:Region \d+: |\[virtual\] )*(?:Memory|I/O ports) at [^\n]*|(?:\[virtual\] )?Expansion ROM at [^\n]*"
    r"|Memory window[^\n]*|I/O window[^\n]*|16-bit legacy interface[^\n]*|!!! Unknown header type[^\n]*))"
    r"|\n(?!(?:DeviceName|Latency|Interrupt|Secondary status|BridgeCtl|Device tree node|Kernel driver in use"
    r"|Kernel modules|BIST|!!!|Region|Memory|I/O|Prefetchable|Expansion|Capabilities)\b)([^ \t\n][^\n]*)"
)

# ---- header line -----------------------------------------------------------------------
_HEADER_NN_RE = re.compile(
    r"^([^:\[]*?) \[([0-9a-fA-F]{4})\]: (.*?) ?\[([0-9a-fA-F]{4}):([0-9a-fA-F]{4})\]"
    r"(?: \(rev ([0-9a-fA-F]{2})\))?(?: \(prog-if ([0-9a-fA-F]{2})(?: \[[^\]]*\])?\))?$"
)
_PROGIF_RE = re.compile(r" \(prog-if ([0-9a-fA-F]{2})(?: \[(.*)\])?\)$")
_REV_RE = re.compile(r" \(rev ([0-9a-fA-F]{2})\)$")
_IDS_NN_RE = re.compile(r"^(.*?) ?\[([0-9a-fA-F]{4}):([0-9a-fA-F]{4})\]$")
_IDS_N_RE = re.compile(r"^(?:Device )?([0-9a-fA-F]{4}):([0-9a-fA-F]{4})$")
_DEV_ONLY_RE = re.compile(r"^(.*?)(?::? Unknown device| Device) ([0-9a-fA-F]{4})$")
_CLASS_NN_RE = re.compile(r"^(.*?) \[([0-9a-fA-F]{4})\]$")
_CLASS_NUM_RE = re.compile(r"^(?:Class )?([0-9a-fA-F]{4})$")

# ---- body lines ------------------------------------------------------------------------
_REGION_RE = re.compile(
    r"^(?:Region (\d+): )?(\[virtual\] )?(Memory|I/O ports) at (\S+)(?: \(([^)]*)\))?(.*)$"
)
_ROM_RE = re.compile(r"^(\[virtual\] )?Expansion ROM at (\S+)(.*)$")
_SIZE_RE = re.compile(r"\[size=(\d+)([KMGT]?)\]")
_BUS_RE = re.compile(r"primary=([0-9a-fA-F]{1,2}), secondary=([0-9a-fA-F]{1,2}), subordinate=([0-9a-fA-F]{1,2})")
_RANGE_RE = re.compile(r"^([0-9a-fA-F]+)-([0-9a-fA-F]+)")
_FLAG_RE = re.compile(r"(?<![A-Za-z0-9])([A-Za-z][A-Za-z0-9]*)([+-])(?![A-Za-z0-9+-])")
_REG_KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9 ]*:")
_EXPRESS_RE = re.compile(r"^Express (?:\(v(\d+)\) )?(.*?)(?:, (?:MSI|IntMsgNum)\b.*)?$")
_SPEED_RE = re.compile(r"Speed (?:([0-9.]+)GT/s|unknown)")
_WIDTH_RE = re.compile(r"Width x(\d+)")
#: "Slot #12" (decimal); pciutils before 3.x printed "Slot #%3x" ("Slot # 40" is 0x40).
_SLOTNUM_RE = re.compile(r"Slot #( *)([0-9a-fA-F]+)")
_NEXTFN_RE = re.compile(r"Next Function: (\d+)")
_ATS_DEPTH_RE = re.compile(r"Invalidate Queue Depth: ([0-9a-fA-F]+)")
_ATS_STU_RE = re.compile(r"Smallest Translation Unit: ([0-9a-fA-F]+)")
_PRI_RE = re.compile(r"^([0-9a-fA-F]+), Page Request Allocation: ([0-9a-fA-F]+)")
_PASID_WIDTH_RE = re.compile(r"Max PASID Width: ([0-9a-fA-F]+)")
_VFS_RE = re.compile(r"^(\d+), Total VFs: (\d+), Number of VFs: (\d+)")
_VFOFF_RE = re.compile(r"^(\d+), stride: (\d+), Device ID: ([0-9a-fA-F]{1,4})")
_RCIEP_RE = re.compile(r"^(?:([0-9a-fA-F]{8}) )?(?:\[none\]|RCiEP at Device\(s\):(.*))$")
_BUSNUM_RE = re.compile(r"^(?:\[none\]|([0-9a-fA-F]{2})-([0-9a-fA-F]{2})(?: \[none\])?)$")
_DSN_RE = re.compile(r"^Device Serial Number ((?:[0-9a-fA-F]{2}-){7}[0-9a-fA-F]{2})\s*$")
_FLAGS_GROUP_RE = re.compile(r"IOMMU group (\S+?)(?:,|$)")
_FLAGS_NUMA_RE = re.compile(r"NUMA node (-?\d+)")
_UNKNOWN_HT_RE = re.compile(r"^!!! Unknown header type ([0-9a-fA-F]{1,2})")

_ACS_FAST_RE = re.compile(
    r"SrcValid([+-]) TransBlk([+-]) ReqRedir([+-]) CmpltRedir([+-]) UpstreamFwd([+-]) EgressCtrl([+-]) DirectTrans([+-])"
)
_ACS_NAMES = (("SrcValid", 0x01), ("TransBlk", 0x02), ("ReqRedir", 0x04), ("CmpltRedir", 0x08),
              ("UpstreamFwd", 0x10), ("EgressCtrl", 0x20), ("DirectTrans", 0x40))

_PCIE_TYPES = (
    ("Root Complex Integrated Endpoint", PcieType.RC_INTEGRATED_ENDPOINT),
    ("Root Complex Event Collector", PcieType.RC_EVENT_COLLECTOR),
    ("Legacy Endpoint", PcieType.LEGACY_ENDPOINT),
    ("Endpoint", PcieType.ENDPOINT),
    ("Root Port", PcieType.ROOT_PORT),
    ("Upstream Port", PcieType.SWITCH_UPSTREAM),
    ("Downstream Port", PcieType.SWITCH_DOWNSTREAM),
    ("PCI-Express to PCI/PCI-X Bridge", PcieType.PCIE_TO_PCI_BRIDGE),
    ("PCI/PCI-X to PCI-Express Bridge", PcieType.PCI_TO_PCIE_BRIDGE),
)

#: Capabilities the model has a place for, by lspci's name for them, and the
#: register lines read from each.
_CAP_KINDS = {
    "Express": "express",
    "Access Control Services": "acs",
    "Alternative Routing-ID Interpretation": "ari",
    "Address Translation Service": "ats",
    "Page Request Interface": "pri",
    "Process Address Space ID": "pasid",
    "Single Root I/O Virtualization": "sriov",
    "Advanced Error Reporting": "aer",
    "Root Complex Event Collector Endpoint Association": "rcec",
    "Device Serial Number": "dsn",
}
_CAP_REGS = {
    "express": ("DevCap2", "LnkCap", "LnkSta", "SltCap"),
    "acs": ("ACSCap", "ACSCtl"),
    "ari": ("ARICap",),
    "ats": ("ATSCap", "ATSCtl"),
    "pri": ("PRICtl", "Page Request Capacity"),
    "pasid": ("PASIDCap", "PASIDCtl"),
    "sriov": ("IOVCtl", "Initial VFs", "VF offset", "Region [0-5]"),
    "rcec": ("RCiEPBitmap", "AssociatedBusNumbers"),
}
_REG_RES = {
    kind: re.compile(r"\n([ \t]*)(" + "|".join(keys) + r"):[ \t]*([^\n]*)")
    for kind, keys in _CAP_REGS.items()
}
_EXT_CAP_FIELDS = ("acs", "ats", "pri", "pasid", "sriov", "ari", "aer", "rcec", "dsn")

#: Types for which DevCap2 "ARI Forwarding Supported" is reserved (reads 0). Not the
#: bridges: QEMU's PCIe-to-PCI bridge sets it, and lspci does not print it for them.
_NO_ARI_FWD = frozenset({PcieType.ENDPOINT, PcieType.LEGACY_ENDPOINT, PcieType.RC_INTEGRATED_ENDPOINT,
                         PcieType.RC_EVENT_COLLECTOR, PcieType.SWITCH_UPSTREAM})
_SIZE_MULT = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SPEEDS = {"2.5": "2.5 GT/s", "5": "5.0 GT/s", "8": "8.0 GT/s", "16": "16.0 GT/s", "32": "32.0 GT/s", "64": "64.0 GT/s"}
_WINDOW_KINDS = {"I/O behind bridge": WindowKind.IO, "Memory behind bridge": WindowKind.MEM,
                 "Prefetchable memory behind bridge": WindowKind.PREF}


# =====================================================================================
# Sniffing
# =====================================================================================

def looks_like_lspci(text: str) -> bool:
    """Cheap check for auto-detection: lspci text or hex dump lines in the first lines."""
    hits = 0
    for n, line in enumerate(text.splitlines()):
        if n > 400:
            break
        if line.startswith(">"):
            line = _QUOTE_RE.sub("", line, count=1)
        m = _HEADER_RE.match(line)
        if m and m.group(5) and (": " in m.group(5) or _IDS_N_RE.match(m.group(5).split(" ")[0])):
            return True
        if lspci_hex.is_hex_line(line):
            hits += 1
            if hits >= 2:
                return True
    return False


# =====================================================================================
# Loading
# =====================================================================================

def load_lspci(path: str | Path) -> Topology:
    """Read an lspci output file (any of the forms in the module doc)."""
    p = str(path)
    try:
        raw = Path(p).read_bytes()
    except OSError as e:
        raise SourceError(f"cannot read: {e.strerror or e}", path=p) from None
    return load_lspci_text(raw.decode("utf-8", "replace"), path=p)


def load_lspci_text(text: str, path: str = "<string>") -> Topology:
    """Parse lspci output given as a string; ``path`` names it in messages."""
    return _Parser(text, path).run()


# =====================================================================================
# Per-device text facts
# =====================================================================================

@dataclass
class _BarText:
    index: int | None
    kind: BarKind
    start: int | None
    size: int | None
    unassigned: bool
    virtual: bool
    disabled: bool


@dataclass
class _Cap:
    kind: str | None
    offset: int
    version: int | None
    title: str
    regs: dict[str, str] = field(default_factory=dict)


@dataclass
class _Block:
    addr: Address
    line: int
    header: str
    #: Body texts (each starts with the newline that ends the device line), where each
    #: starts in the text, and the (position, line) anchor of its device line.
    parts: list[tuple[int, str, tuple[int, int]]] = field(default_factory=list)
    ended: bool = True


@dataclass
class _Dev:
    """What one device block's text says (before hex, tree and VF links)."""

    addr: Address
    line: int
    f: dict[str, object] = field(default_factory=dict)
    bars: list[_BarText] = field(default_factory=list)
    rom: object = None
    windows: dict[WindowKind, object] = field(default_factory=dict)
    bus: tuple[int, int, int] | None = None
    caps: list[_Cap] = field(default_factory=list)
    cap_state: str = "unknown"  # unknown | denied | shown
    status_cap: bool | None = None
    verbose: bool = False
    complete: bool = True
    cardbus: bool = False
    unknown_header: int | None = None
    driver: str | None = None
    kernel_lines: bool = False
    group: str | None = None
    numa: int | None = None
    phys_slot: str | None = None
    guessed_bar_index: bool = False
    ext_shown: bool = False
    hex_fields: dict[str, object] | None = None
    class_base: int | None = None
    progif: int | None = None


_Key = tuple[int, int, int, int]
_Item = tuple[_Key, Address, dict[str, object]]


class _Parser:
    def __init__(self, text: str, path: str) -> None:
        self.raw = text
        self.path = path
        self.text = ""
        self.warnings: list[str] = []
        self._line_warnings = 0
        self._has_hex = False
        self._db: names.PciIds | None | bool = False  # pci.ids, looked up once when needed
        #: Positions in the cleaned text where a removed stderr message had merged two lines.
        self._joins: list[int] = []
        #: (position, cleaned line number) of the device line being read: counting lines
        #: from there keeps warnings cheap in big files.
        self._anchor: tuple[int, int] = (0, 0)

    # ---- warnings and line numbers -------------------------------------------------------
    def _more_line_warnings(self) -> bool:
        self._line_warnings += 1
        return self._line_warnings <= _MAX_LINE_WARNINGS

    def warn_at(self, pos: int, msg: str, anchor: tuple[int, int] | None = None) -> None:
        """Warn about the line holding cleaned-text position ``pos``."""
        if self._more_line_warnings():
            if anchor is None and self._anchor[0] <= pos:
                anchor = self._anchor
            self.warnings.append(f"line {self.line_of(pos, anchor)}: {msg}")

    def _warn_dev(self, d: "_Dev", pos: int | None, msg: str) -> None:
        """Warn at ``pos``, or at the device's line when the position is not known."""
        if pos is not None:
            self.warn_at(pos, msg)
        elif self._more_line_warnings():
            self.warnings.append(f"line {d.line}: {msg}")

    def warn_each(self, msg: str) -> None:
        """A warning about one device or line: counted, and only the first ones kept."""
        if self._more_line_warnings():
            self.warnings.append(msg)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)

    def line_of(self, pos: int, anchor: tuple[int, int] | None = None) -> int:
        """Line number in the input of cleaned-text position ``pos``.

        ``anchor`` is a known (position, cleaned line number) before ``pos``.
        """
        base_pos, base_line = anchor if anchor is not None else (0, 0)
        cleaned = base_line + self.text.count("\n", base_pos, pos)
        return cleaned + bisect_right(self._joins, pos)

    # ---- pipeline ----------------------------------------------------------------
    def run(self) -> Topology:
        self._clean()
        blocks = self._split()
        if not blocks:
            raise SourceError(
                "no lspci device lines found (expected lines like '00:1f.3 SMBus: ...' or '00: 86 80 ...' hex dumps)",
                path=self.path, line=1, field="device",
            )
        devs = [self._parse_block(b) for b in blocks]
        file_has_kernel = file_has_groups = file_has_ext = file_has_numa = file_has_caps = False
        for d in devs:
            file_has_kernel = file_has_kernel or d.kernel_lines
            file_has_groups = file_has_groups or d.group is not None
            file_has_numa = file_has_numa or d.numa is not None
            if d.cap_state == "shown":
                file_has_caps = True
                file_has_ext = file_has_ext or d.ext_shown
        if file_has_caps:
            for d in devs:
                # lspci prints every capability it finds: a complete block that says
                # "Cap+" but lists none (and no "<access denied>") has an empty list.
                if d.cap_state == "unknown" and d.status_cap and d.complete and d.verbose:
                    d.cap_state = "shown"
        if any(d.guessed_bar_index for d in devs):
            self.warn("BAR lines without 'Region N:' (lspci -v): BAR indices inferred from their order")
        # (domain, bus, device, function) keys: plain tuples hash and sort fast.
        items: list[_Item] = []
        for d in devs:
            f = self._function_fields(d, file_has_kernel, file_has_groups, file_has_ext)
            if file_has_numa and d.numa is None and d.verbose:
                f["numa_node"] = -1  # lspci prints "NUMA node" unless the kernel says -1 (no node)
            a = d.addr
            items.append(((a.domain, a.bus, a.device, a.function), a, f))
        items.sort(key=lambda it: it[0])
        index = {key: f for key, _, f in items}
        self._link_vfs(items, index, file_has_caps)
        self._multifunction(items)
        hbs = self._tree(items, index)
        if self._line_warnings > _MAX_LINE_WARNINGS:
            self.warn(f"... and {self._line_warnings - _MAX_LINE_WARNINGS} more warnings like these")
        for _, _, f in items:
            f.setdefault("caps", _NO_CAPS)  # one shared "nothing known" (frozen) instead of one each
        functions = [Function(address=a, **f) for _, a, f in items]  # type: ignore[arg-type]
        source = SourceInfo(
            kind="lspci",
            location=self.path,
            iommu_present=True if file_has_groups else None,
            warnings=tuple(self.warnings),
        )
        return Topology.build(functions, hbs, source)

    # ---- text clean-up --------------------------------------------------------------------
    def _clean(self) -> None:
        """Quoting, CRs and interleaved stderr removed; line numbers stay traceable."""
        text = self.raw
        if "\r" in text:
            text = _CR_RE.sub("", text)
            if "\r" in text:
                # Bare CRs (old Mac line endings, or CRs pasted inside lines): line breaks,
                # one character for one so line numbers stay right.
                text = text.replace("\r", "\n")
                self.warnings.append("bare CR characters read as line breaks")
        if text.startswith(">") or "\n>" in text:
            text = _QUOTE_RE.sub("", text)
        if "pcilib: " in text or "lspci: " in text or "setpci: " in text:
            pieces: list[str] = []
            last = 0
            out_len = 0
            line = 1
            line_pos = 0
            for m in _STDERR_SPAN_RE.finditer(text):
                line += text.count("\n", line_pos, m.start())
                line_pos = m.start()
                if self._more_line_warnings():
                    self.warnings.append(f"line {line}: stderr message removed: {m.group(0).strip()[:160]}")
                pieces.append(text[last:m.start()])
                out_len += m.start() - last
                if m.group(0).endswith("\n"):
                    self._joins.append(out_len)
                last = m.end()
            pieces.append(text[last:])
            text = "".join(pieces)
        self.text = text

    # ---- blocks ------------------------------------------------------------------------------
    def _split(self) -> list[_Block]:
        text = "\n" + self.text  # positions below are shifted by one; line_of() gets pos - 1
        self.text = text
        self._joins = [j + 1 for j in self._joins]
        starts = [m.start() for m in _HEADER_NL_RE.finditer(text)]
        self._has_hex = _HEX_START_RE.search(text) is not None
        blocks: dict[Address, _Block] = {}
        order: list[_Block] = []
        line = 1  # cleaned line number of position starts[i] + 1
        prev = 0
        if starts:
            self._preamble(0, starts[0])
        else:
            self._preamble(0, len(text))
        for i, s in enumerate(starts):
            line += text.count("\n", prev, s)
            prev = s
            end_hdr = text.find("\n", s + 1)
            if end_hdr < 0:
                end_hdr = len(text)
            nxt = starts[i + 1] if i + 1 < len(starts) else len(text)
            header = text[s + 1:end_hdr]
            anchor = (s + 1, line)
            m = _HEADER_RE.match(header)
            addr = None
            if m is None:
                self.warn_at(s + 1, f"unreadable device line {header.strip()[:60]!r}; device skipped", anchor)
                continue
            try:
                addr = Address(int(m.group(1) or "0", 16), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4)))
            except AddressError as e:
                self.warn_at(s + 1, f"bad device address: {e}; device skipped", anchor)
                continue
            lineno = line + bisect_right(self._joins, s + 1) if self._joins else line
            body = text[end_hdr:nxt]
            b = blocks.get(addr)
            if b is not None:
                self.warn_at(s + 1, f"{addr} appears again (first on line {b.line}); the two blocks are merged", anchor)
                if not b.header and m.group(5):
                    b.header = m.group(5).strip()
            else:
                b = _Block(addr, lineno, (m.group(5) or "").strip())
                blocks[addr] = b
                order.append(b)
            b.parts.append((end_hdr, body, anchor))
            if nxt == len(text):
                # The last block: lspci ends each verbose block with a blank line.
                tail = body[len(body.rstrip()):]
                b.ended = tail.count("\n") >= 2
        return order

    def _preamble(self, start: int, end: int) -> None:
        """Text before the first device: shell prompts and -t trees are fine, the rest is noise."""
        if end <= start:
            return
        noise = 0
        pos = start
        for ln in self.text[start:end].split("\n"):
            if ln.strip() and not _TREE_OR_PROMPT_RE.match(ln):
                noise += 1
                if noise <= 5:
                    self.warn_at(pos, "not lspci output; skipped")
            pos += len(ln) + 1
        if noise > 5:
            self.warn(f"{noise - 5} more lines before the first device are not lspci output; skipped")

    # ---- one device block ---------------------------------------------------------------------
    def _parse_block(self, b: _Block) -> _Dev:
        d = _Dev(b.addr, b.line)
        self._parse_header(d, b.header)
        hex_lines: list[tuple[int, str]] = []
        for start, body, anchor in b.parts:
            if body.isspace():
                continue
            self._anchor = anchor
            hex_at = _HEX_START_RE.search(body) if self._has_hex else None
            text_part = body[: hex_at.start()] if hex_at else body
            self._parse_text(d, start, text_part)
            if hex_at:
                pos = hex_at.start()
                for ln in body[pos + 1:].split("\n"):
                    pos += 1
                    if ln.strip():
                        hex_lines.append((self.line_of(start + pos, anchor), ln))
                    pos += len(ln)
        d.complete = b.ended or d.kernel_lines or bool(hex_lines)
        if hex_lines:
            dump = lspci_hex.assemble(hex_lines, str(b.addr))
            for w in dump.warnings:
                self.warn_each(w)
            if dump.data:
                facts = lspci_hex.decode_dump(dump.data)
                for w in facts.warnings:
                    self.warn_each(f"{b.addr}: {w}")
                d.hex_fields = lspci_hex.config_fields(facts, dump.data)
        return d

    def _parse_header(self, d: _Dev, rest: str) -> None:
        f = d.f
        if not rest:
            return
        m = _HEADER_NN_RE.match(rest)
        if m is not None:
            # The common "lspci -nn" form, in one go.
            cls_name, cls, name, vid, did, rev, progif = m.groups()
            f["class_name"] = cls_name
            d.class_base = int(cls, 16)
            v = int(vid, 16)
            f["vendor_id"], f["device_id"] = v, int(did, 16)
            f["revision"] = int(rev, 16) if rev else 0
            if progif:
                d.progif = int(progif, 16)
            self._names(f, name, v)
            return
        cls_part, sep, dev_part = rest.partition(": ")
        if not sep:
            if rest.endswith(":"):
                cls_part, dev_part = rest[:-1], ""
            else:
                self.warn_each(f"line {d.line}: device line has no 'class: device' part")
                dev_part, cls_part = rest, ""
        # Class
        cls_part = cls_part.strip()
        m = _CLASS_NN_RE.match(cls_part)
        if m:
            f["class_name"] = m.group(1)
            d.class_base = int(m.group(2), 16)
        else:
            m = _CLASS_NUM_RE.match(cls_part)
            if m:
                d.class_base = int(m.group(1), 16)
            elif cls_part:
                f["class_name"] = cls_part
        # prog-if, revision (right to left)
        m = _PROGIF_RE.search(dev_part)
        if m:
            d.progif = int(m.group(1), 16)
            dev_part = dev_part[: m.start()]
        m = _REV_RE.search(dev_part)
        if m:
            f["revision"] = int(m.group(1), 16)
            dev_part = dev_part[: m.start()]
        elif dev_part.strip():
            f["revision"] = 0  # lspci prints "(rev xx)" only for a nonzero revision
        # Vendor and device
        dev_part = dev_part.strip()
        m = _IDS_NN_RE.match(dev_part)
        if m:
            vid = int(m.group(2), 16)
            f["vendor_id"], f["device_id"] = vid, int(m.group(3), 16)
            self._names(f, m.group(1), vid)
            return
        m = _IDS_N_RE.match(dev_part)
        if m:
            f["vendor_id"], f["device_id"] = int(m.group(1), 16), int(m.group(2), 16)
            return
        m = _DEV_ONLY_RE.match(dev_part)
        if m:
            f["device_id"] = int(m.group(2), 16)
            if m.group(1):
                f["vendor_name"] = m.group(1)
            return
        if dev_part:
            f["device_name"] = dev_part

    def _names(self, f: dict[str, object], text: str, vendor_id: int) -> None:
        """Split lspci's "Vendor Device" name where that can be done without guessing."""
        text = text.strip()
        if not text or text == "Device":
            return
        if text.endswith(" Device"):
            f["vendor_name"] = text[: -len(" Device")]
            return
        if self._db is False:
            self._db = names.database()
        db = self._db
        vname = db.vendors.get(vendor_id) if db else None
        if vname and text.startswith(vname + " "):
            f["vendor_name"] = vname
            f["device_name"] = text[len(vname) + 1:]
        else:
            f["device_name"] = text

    def _parse_text(self, d: _Dev, start: int, body: str) -> None:
        """One body text (no hex): top-level lines, the capability list, kernel lines."""
        caps_at = body.find("Capabilities:")
        top_end = len(body) if caps_at < 0 else body.rfind("\n", 0, caps_at)
        if "<access denied" in body:
            denied = _DENIED_RE.search(body)
            if denied is not None:
                top_end = min(top_end, denied.start())
                if d.cap_state != "shown":
                    d.cap_state = "denied"
        self._parse_top(d, start, body[:top_end] if top_end >= 0 else "")
        if caps_at >= 0 and top_end >= 0:
            region = body[top_end:]
            ms = list(_CAPLINE_RE.finditer(region))
            last = len(ms) - 1
            for i, m in enumerate(ms):
                self._cap(d, start + top_end + m.start(), m, region, ms[i + 1].start() if i < last else len(region))
        k = body.find("Kernel ", top_end if caps_at >= 0 and top_end >= 0 else 0)
        if k >= 0:
            for m in _KERNEL_RE.finditer(body, max(0, body.rfind("\n", 0, k))):
                d.kernel_lines = True
                if m.group(1) == "driver in use":
                    d.driver = m.group(2).strip() or None

    def _parse_top(self, d: _Dev, start: int, top: str) -> None:
        """Lines before the capability list: only the ones the model needs are looked at."""
        if not top:
            return
        next_bar = 0
        for m in _TOP_RE.finditer(top):
            key = m.group(1)
            if key is None:
                # A BAR, ROM, CardBus window or "!!!" line (group 3), or an unindented
                # line that is not lspci's (group 4).
                s = m.group(3)
                if s is None:
                    self.warn_at(start + m.start() + 1, f"{d.addr}: unexpected unindented line skipped: {m.group(4).strip()[:60]!r}")
                    continue
                c = s[0]
                if c == "E" or s.startswith("[virtual] E"):
                    self._rom(d, start + m.start() + 1, s)
                elif c == "!":
                    um = _UNKNOWN_HT_RE.match(s)
                    if um:
                        d.unknown_header = int(um.group(1), 16)
                    elif s.startswith("!!! Unknown header type"):
                        d.unknown_header = -1
                elif s.startswith("Memory window") or s.startswith("I/O window") or s.startswith("16-bit"):
                    d.cardbus = True
                else:
                    bar = self._region(d, start + m.start() + 1, s.rstrip())
                    if bar is not None:
                        if bar.index is None:
                            d.guessed_bar_index = True
                            bar.index = next_bar
                        next_bar = bar.index + (2 if bar.kind.is_64bit else 1)
                        d.bars.append(bar)
                        d.verbose = True
                continue
            rest = m.group(2).strip()
            if key == "Subsystem":
                self._subsystem(d, rest)
            elif key == "Control":
                d.verbose = True
            elif key == "Status":
                d.verbose = True
                if rest.startswith("Cap"):
                    d.status_cap = rest[3:4] == "+"
            elif key == "IOMMU group":
                d.group = rest or None
            elif key == "NUMA node":
                d.numa = _int(rest, 10)
            elif key == "Physical Slot":
                d.phys_slot = rest or None
            elif key == "Flags":
                d.verbose = True
                fm = _FLAGS_GROUP_RE.search(rest)
                if fm:
                    d.group = fm.group(1)
                fm = _FLAGS_NUMA_RE.search(rest)
                if fm:
                    d.numa = int(fm.group(1))
            elif key == "Bus":
                d.verbose = True
                bm = _BUS_RE.search(rest)
                if bm:
                    d.bus = (int(bm.group(1), 16), int(bm.group(2), 16), int(bm.group(3), 16))
                else:
                    self.warn_at(start + m.start() + 1, f"{d.addr}: unreadable bus numbers: {rest[:80]!r}")
            else:
                self._window(d, start + m.start() + 1, _WINDOW_KINDS[key], rest)

    def _cap(self, d: _Dev, pos: int, m: re.Match[str], region: str, seg_end: int) -> None:
        off, version, title, known = m.group(1, 2, 3, 4)
        if off is None:
            rest = m.group(5).strip()
            if rest.startswith("<access denied"):
                if d.cap_state != "shown":
                    d.cap_state = "denied"
            else:
                self.warn_at(pos + 1, f"{d.addr}: unreadable capability line skipped: {rest[:80]!r}")
            return
        d.cap_state = "shown"
        if len(off) == 3 and off[0] != "0":
            d.ext_shown = True  # offsets 0x100 and up are extended capabilities
        if known is None:
            return
        kind = _CAP_KINDS[known]
        cap = _Cap(kind, int(off, 16), int(version) if version else None, title.strip())
        d.caps.append(cap)
        reg_re = _REG_RES.get(kind)
        if reg_re is None:
            return
        regs = cap.regs
        for rm in reg_re.finditer(region, m.end(), seg_end):
            key = rm.group(2)
            if key in regs:
                continue
            value = rm.group(3).strip()
            # Continuation lines: deeper indented, or not "Key:" lines.
            indent = len(rm.group(1).expandtabs(8))
            at = rm.end()
            while at < seg_end:
                nl = region.find("\n", at + 1, seg_end)
                if nl < 0:
                    nl = seg_end
                ln = region[at + 1:nl]
                stripped = ln.lstrip()
                if not stripped:
                    break
                if len(ln[: len(ln) - len(stripped)].expandtabs(8)) <= indent and _REG_KEY_RE.match(stripped):
                    break
                value += " " + stripped.rstrip()
                at = nl
            regs[key] = value

    # ---- body pieces ---------------------------------------------------------------------
    def _subsystem(self, d: _Dev, rest: str) -> None:
        m = _IDS_NN_RE.match(rest)
        if m:
            d.f["subsystem_vendor_id"], d.f["subsystem_device_id"] = int(m.group(2), 16), int(m.group(3), 16)
            name = m.group(1).strip()
            if name and name != "Device":
                d.f["subsystem_name"] = name
            return
        m = _IDS_N_RE.match(rest)
        if m:
            d.f["subsystem_vendor_id"], d.f["subsystem_device_id"] = int(m.group(1), 16), int(m.group(2), 16)
            return
        m = _DEV_ONLY_RE.match(rest)
        if m:
            d.f["subsystem_device_id"] = int(m.group(2), 16)
        if rest:
            d.f["subsystem_name"] = rest

    def _region(self, d: _Dev, pos: int | None, s: str) -> _BarText | None:
        m = _REGION_RE.match(s)
        if not m:
            self._warn_dev(d, pos, f"{d.addr}: unreadable BAR line skipped: {s[:80]!r}")
            return None
        index = int(m.group(1)) if m.group(1) is not None else None
        if index is not None and index > 5:
            self._warn_dev(d, pos, f"{d.addr}: BAR index {index} out of range; skipped")
            return None
        io = m.group(3) == "I/O ports"
        attrs = m.group(5) or ""
        tail = m.group(6) or ""
        is64 = "64-bit" in attrs
        pref = "prefetchable" in attrs and "non-prefetchable" not in attrs
        kind = BarKind.of(io, is64, pref)
        addr_s = m.group(4)
        start = _int(addr_s, 16)
        if start is None and not addr_s.startswith("<"):
            self._warn_dev(d, pos, f"{d.addr}: unreadable BAR address {addr_s!r}; skipped")
            return None
        unassigned = start is None or start == 0
        return _BarText(
            index, kind, None if unassigned else start, _size(tail), unassigned,
            virtual=bool(m.group(2)) or "[virtual]" in tail,
            disabled="[disabled]" in tail,
        )

    def _rom(self, d: _Dev, pos: int, s: str) -> None:
        m = _ROM_RE.match(s)
        if not m:
            self.warn_at(pos, f"{d.addr}: unreadable expansion ROM line skipped")
            return
        start = _int(m.group(2), 16)
        tail = m.group(3)
        d.rom = Bar(
            lspci_hex.ROM_INDEX, BarKind.PREF32, start=start or None, size=_size(tail),
            unassigned=not start, disabled=True if "[disabled" in tail else None,
        )

    def _window(self, d: _Dev, pos: int, kind: WindowKind, rest: str) -> None:
        d.verbose = True
        if rest.startswith("None") or "[disabled]" in rest:
            d.windows[kind] = ABSENT
            return
        m = _RANGE_RE.match(rest)
        if not m:
            self.warn_at(pos, f"{d.addr}: unreadable bridge window: {rest[:80]!r}")
            d.windows[kind] = None
            return
        base, limit = int(m.group(1), 16), int(m.group(2), 16)
        if base > limit:
            d.windows[kind] = ABSENT
            return
        is64: bool | None = None
        if kind is WindowKind.MEM:
            is64 = False
        elif kind is WindowKind.PREF:
            # Newer lspci labels windows it read from sysfs "[32-bit]" whatever they are;
            # only "[64-bit]", 16-digit addresses or an address above 4 GiB are sure.
            if "[64-bit]" in rest or len(m.group(1)) > 8 or limit > 0xFFFFFFFF:
                is64 = True
        d.windows[kind] = Window(kind, base, limit, is64)

    # ---- from text (and hex) to Function fields -------------------------------------------------
    def _function_fields(self, d: _Dev, file_has_kernel: bool, file_has_groups: bool, file_has_ext: bool) -> dict[str, object]:
        f: dict[str, object] = dict(d.f)
        class_base, progif = d.class_base, d.progif
        if class_base is not None and (progif is not None or d.verbose):
            f["class_code"] = (class_base << 8) | (progif or 0)

        # Header type: a "Bus:" line means a bridge header; verbose output without it, type 0.
        if d.unknown_header is not None:
            f["header_type"] = d.unknown_header if d.unknown_header >= 0 else None
        elif d.bus is not None:
            f["header_type"] = 2 if d.cardbus or (class_base == 0x0607) else 1
        elif d.verbose:
            f["header_type"] = 0

        # BARs and ROM
        ht = f.get("header_type")
        if d.bars or (d.verbose and ht in (0, 1)):
            bars: dict[int, Bar] = {}
            for bt in d.bars:
                if bt.index is not None and bt.index not in bars:
                    bars[bt.index] = Bar(bt.index, bt.kind, bt.start, bt.size, unassigned=bt.unassigned,
                                         disabled=True if bt.disabled else None)
            f["bars"] = tuple(bars[i] for i in sorted(bars))
        if d.rom is not None:
            f["rom"] = d.rom
        elif d.verbose and ht in (0, 1) and d.complete:
            f["rom"] = ABSENT

        # Bridge
        if d.bus is not None:
            prim, sec, sub = d.bus
            wins: dict[WindowKind, object] = {}
            for k in WindowKind:
                if k in d.windows:
                    wins[k] = d.windows[k]
                elif f.get("header_type") == 1 and d.complete:
                    wins[k] = ABSENT  # lspci prints all three windows except an unsupported one
                else:
                    wins[k] = None
            f["bridge"] = BridgeInfo(prim, sec, sub, wins[WindowKind.IO], wins[WindowKind.MEM], wins[WindowKind.PREF])  # type: ignore[arg-type]
        elif ht == 0:
            f["bridge"] = ABSENT

        # Capabilities, PCIe type, slot, link
        self._caps(d, f, file_has_ext)

        # Kernel facts
        if d.driver is not None:
            f["driver"] = d.driver
        elif d.kernel_lines or file_has_kernel:
            f["driver"] = ABSENT
        if d.group is not None:
            f["iommu_group"] = d.group
        elif file_has_groups:
            f["iommu_group"] = ABSENT
        if d.numa is not None:
            f["numa_node"] = d.numa

        if d.hex_fields is not None:
            self._merge_hex(d, f)

        # Slot name (text only)
        if d.phys_slot is not None:
            slot = f.get("slot")
            f["slot"] = replace(slot, physical_slot=d.phys_slot) if isinstance(slot, SlotInfo) else SlotInfo(physical_slot=d.phys_slot)

        # A bridge left unconfigured (secondary bus 0) forwards nothing, whatever its
        # window registers hold (the kernel lists no windows for it).
        br = f.get("bridge")
        if isinstance(br, BridgeInfo) and br.secondary == 0:
            f["bridge"] = replace(br, io_window=ABSENT, mem_window=ABSENT, pref_window=ABSENT)
        return f

    def _caps(self, d: _Dev, f: dict[str, object], file_has_ext: bool) -> None:
        if d.status_cap is False and d.cap_state != "shown":
            f["pcie_type"] = PcieType.CONVENTIONAL
            f["caps"] = _all_absent()
            f["slot"] = ABSENT
            f["vf_bars"] = ()
            return
        if d.cap_state != "shown":
            return  # unknown, or <access denied>
        found: dict[str, object] = {}
        express: _Cap | None = None
        ext_shown = d.ext_shown
        vf_bars: list[Bar] = []
        for cap in d.caps:
            kind = cap.kind
            if kind is None or kind in found:
                continue
            if kind == "express":
                if express is None:
                    express = cap
                continue
            found[kind] = self._ext_cap(d, cap)
            if kind == "sriov":
                vf_bars = self._vf_bars(d, cap)
        complete = d.complete
        if express is None:
            if complete:
                f["pcie_type"] = PcieType.CONVENTIONAL
                kw: dict[str, object] = dict(_ALL_ABSENT_KW)
            else:
                kw = {}
        else:
            kw = dict(_EXT_ABSENT_KW) if complete and (ext_shown or file_has_ext) else {}
            kw["eetlp_prefix"], kw["ari_forwarding"] = self._express(d, f, express)
        kw.update(found)
        caps = Capabilities(**kw)  # type: ignore[arg-type]
        f["caps"] = caps
        if caps.sriov is ABSENT:
            f["vf_bars"] = ()
        elif caps.sriov is not None:
            f["vf_bars"] = tuple(vf_bars)
        if "slot" not in f and f.get("pcie_type") is not None and complete:
            f["slot"] = ABSENT

    def _express(self, d: _Dev, f: dict[str, object], cap: _Cap) -> tuple[bool | None, bool | None]:
        """PCIe type, slot and link from the Express capability; returns (EETLPPrefix, ARIFwd)."""
        m = _EXPRESS_RE.match(cap.title)
        label = m.group(2) if m else cap.title
        ptype = None
        for prefix, t in _PCIE_TYPES:
            if label.startswith(prefix):
                ptype = t
                break
        if ptype is None:
            self.warn_each(f"{d.addr}: unknown PCIe port type {label!r}")
        f["pcie_type"] = ptype
        regs = cap.regs
        slot_impl = "(Slot+)" in label
        if ptype in (PcieType.ROOT_PORT, PcieType.SWITCH_DOWNSTREAM, PcieType.PCI_TO_PCIE_BRIDGE) and slot_impl:
            sltcap = regs.get("SltCap")
            if sltcap is not None:
                fl = _flags(sltcap)
                m2 = _SLOTNUM_RE.search(sltcap)
                number = None
                if m2:
                    digits = m2.group(2)
                    old_hex = bool(m2.group(1)) or not digits.isdigit()
                    number = int(digits, 16 if old_hex else 10)
                surprise = fl.get("Surprise", fl.get("Surpise"))  # old pciutils misspelt it
                f["slot"] = SlotInfo(number=number, hotplug=fl.get("HotPlug"), surprise=surprise)
            else:
                f["slot"] = SlotInfo()
        # Link
        lnkcap, lnksta = regs.get("LnkCap"), regs.get("LnkSta")
        if lnkcap is not None or lnksta is not None:
            f["link"] = LinkInfo(
                current_speed=_speed(lnksta), current_width=_width(lnksta),
                max_speed=_speed(lnkcap), max_width=_width(lnkcap),
            )
        devcap2 = regs.get("DevCap2")
        if devcap2 is None:
            return None, None
        fl = _flags(devcap2)
        if "ARIFwd" in fl:
            arifwd: bool | None = fl["ARIFwd"]
        elif ptype in _NO_ARI_FWD:
            arifwd = False  # reserved for these; lspci shows ARIFwd only on root and downstream ports
        else:
            arifwd = None
        return fl.get("EETLPPrefix"), arifwd

    def _ext_cap(self, d: _Dev, cap: _Cap) -> object:
        regs = cap.regs
        k = cap.kind
        if k == "acs":
            c, t = regs.get("ACSCap"), regs.get("ACSCtl")
            cv, tv = _acs_bits(c), _acs_bits(t)
            if cv is None or tv is None:
                return None
            return AcsCap(cv, tv)
        if k == "ari":
            m = _NEXTFN_RE.search(regs.get("ARICap", ""))
            return AriCap(int(m.group(1)) if m else None)
        if k == "ats":
            capr, ctl = regs.get("ATSCap", ""), regs.get("ATSCtl")
            m = _ATS_DEPTH_RE.search(capr)
            depth = (int(m.group(1), 16) or 32) if m else None
            stu = _ATS_STU_RE.search(ctl or "")
            return AtsCap(depth, _flags(ctl).get("Enable") if ctl is not None else None, int(stu.group(1), 16) if stu else None)
        if k == "pri":
            ctl = regs.get("PRICtl")
            m = _PRI_RE.match(regs.get("Page Request Capacity", ""))
            return PriCap(_flags(ctl).get("Enable") if ctl is not None else None,
                          int(m.group(1), 16) if m else None, int(m.group(2), 16) if m else None)
        if k == "pasid":
            capr, ctl = regs.get("PASIDCap"), regs.get("PASIDCtl")
            fl = _flags(capr) if capr is not None else {}
            m = _PASID_WIDTH_RE.search(capr or "")
            return PasidCap(fl.get("Exec"), fl.get("Priv"), int(m.group(1), 16) if m else None,
                            _flags(ctl).get("Enable") if ctl is not None else None)
        if k == "sriov":
            ctl = regs.get("IOVCtl")
            fl = _flags(ctl) if ctl is not None else {}
            m = _VFS_RE.match(regs.get("Initial VFs", ""))
            m2 = _VFOFF_RE.match(regs.get("VF offset", ""))
            return SriovCap(
                initial_vfs=int(m.group(1)) if m else None,
                total_vfs=int(m.group(2)) if m else None,
                num_vfs=int(m.group(3)) if m else None,
                vf_offset=int(m2.group(1)) if m2 else None,
                vf_stride=int(m2.group(2)) if m2 else None,
                vf_device=int(m2.group(3), 16) if m2 else None,
                ari_hierarchy=fl.get("ARIHierarchy"),
                enabled=fl.get("Enable"),
            )
        if k == "aer":
            return AerCap(cap.version)
        if k == "rcec":
            bm = regs.get("RCiEPBitmap")
            if bm is None:
                return None
            m = _RCIEP_RE.match(bm.strip())
            if not m:
                self.warn_each(f"{d.addr}: unreadable RCiEPBitmap {bm[:60]!r}")
                return None
            if m.group(1):
                bitmap = int(m.group(1), 16)
            else:
                bitmap = _device_list(m.group(2) or "")
                if bitmap is None:
                    self.warn_each(f"{d.addr}: unreadable RCiEPBitmap {bm[:60]!r}")
                    return None
            next_bus = last_bus = None
            busn = regs.get("AssociatedBusNumbers")
            if busn is not None:
                m = _BUSNUM_RE.match(busn.strip())
                if m and m.group(1):
                    next_bus, last_bus = int(m.group(1), 16), int(m.group(2), 16)
                elif m:
                    next_bus, last_bus = 0xFF, 0x00  # what lspci prints as [none]
            return RcecCap(bitmap, next_bus, last_bus)
        if k == "dsn":
            m = _DSN_RE.match(cap.title)
            return m.group(1).lower() if m else None  # "..." (anonymised) is present but unknown
        return None

    def _vf_bars(self, d: _Dev, cap: _Cap) -> list[Bar]:
        out: list[Bar] = []
        for key, val in cap.regs.items():
            if not key.startswith("Region "):
                continue
            bt = self._region(d, None, f"{key}: {val}")
            if bt is not None and bt.index is not None:
                out.append(Bar(bt.index, bt.kind, bt.start, None, unassigned=bt.unassigned))
        return sorted(out, key=lambda b: b.index)

    def _merge_hex(self, d: _Dev, f: dict[str, object]) -> None:
        """Config bytes win; the text adds sizes, names, kernel facts and is cross-checked."""
        h = d.hex_fields or {}
        mismatches: list[str] = []

        def check(name: str, text_v: object, hex_v: object) -> None:
            if not _agree(text_v, hex_v):
                mismatches.append(f"{name} (text {_show(text_v)}, hex {_show(hex_v)})")

        for name in ("vendor_id", "device_id", "subsystem_vendor_id", "subsystem_device_id", "class_code",
                     "revision", "header_type", "pcie_type"):
            check(name, f.get(name), h.get(name))
        tb, hb = f.get("bridge"), h.get("bridge")
        if isinstance(tb, BridgeInfo) and isinstance(hb, BridgeInfo):
            check("bus numbers", (tb.primary, tb.secondary, tb.subordinate), (hb.primary, hb.secondary, hb.subordinate))
        tc, hc = f.get("caps"), h.get("caps")
        if isinstance(tc, Capabilities) and isinstance(hc, Capabilities):
            for name in ("acs", "ari", "rcec", "dsn", "eetlp_prefix", "ari_forwarding"):
                check(name, getattr(tc, name), getattr(hc, name))
            ts, hs = tc.sriov, hc.sriov
            if isinstance(ts, SriovCap) and isinstance(hs, SriovCap):
                for name in ("initial_vfs", "total_vfs", "num_vfs", "vf_offset", "vf_stride", "vf_device"):
                    check(f"SR-IOV {name}", getattr(ts, name), getattr(hs, name))
        if mismatches:
            self.warn_each(f"{d.addr}: lspci text and hex dump disagree on {'; '.join(mismatches)}; using the hex dump")

        for name, hv in h.items():
            if name in ("bars", "vf_bars", "caps", "slot", "rom", "bridge"):
                continue
            if hv is not None:
                f[name] = hv
        # Capabilities: field by field, hex first.
        if isinstance(hc, Capabilities):
            if isinstance(tc, Capabilities):
                f["caps"] = Capabilities(**{
                    k: (getattr(hc, k) if getattr(hc, k) is not None else getattr(tc, k))
                    for k in Capabilities.__dataclass_fields__
                })
            else:
                f["caps"] = hc
        # Bridge: config registers, but windows the kernel reported (text) are kept
        # when the dump cannot say.
        if hb is not None:
            if isinstance(hb, BridgeInfo) and isinstance(tb, BridgeInfo):
                f["bridge"] = BridgeInfo(
                    hb.primary, hb.secondary, hb.subordinate,
                    hb.io_window if hb.io_window is not None else tb.io_window,
                    hb.mem_window if hb.mem_window is not None else tb.mem_window,
                    hb.pref_window if hb.pref_window is not None else tb.pref_window,
                )
            else:
                f["bridge"] = hb
        # Slot: number/hotplug from config.
        hs_ = h.get("slot")
        if hs_ is not None:
            f["slot"] = hs_
        # BARs: config gives index, kind and base; the text gives sizes, and the
        # address when the OS reports one the register does not hold ([virtual], EA).
        f["bars"] = _merge_bars(h.get("bars"), f.get("bars"))  # type: ignore[arg-type]
        if f["bars"] is None:
            del f["bars"]
        hrom = h.get("rom")
        trom = f.get("rom")
        if isinstance(hrom, Bar):
            f["rom"] = replace(hrom, size=trom.size) if isinstance(trom, Bar) else hrom
        vf = _merge_bars(h.get("vf_bars"), f.get("vf_bars"))  # type: ignore[arg-type]
        if vf is not None:
            f["vf_bars"] = vf
        if f.get("pcie_type") is not None and "slot" not in f:
            f["slot"] = ABSENT

    # ---- whole-machine derivations ----------------------------------------------------------
    def _link_vfs(self, items: list[_Item], index: dict[_Key, dict[str, object]], caps_seen: bool) -> None:
        """VFs: the PF's SR-IOV Device ID at a routing ID PF devfn + offset + stride * i."""
        vf_of: dict[_Key, Address] = {}
        for key, pf_addr, pf in items:
            caps = pf.get("caps")
            sr = caps.sriov if isinstance(caps, Capabilities) else None
            if not isinstance(sr, SriovCap) or sr.vf_device is None or sr.vf_offset is None:
                continue
            count = sr.num_vfs if sr.num_vfs is not None else sr.total_vfs
            if not count:
                continue
            stride = sr.vf_stride or 0
            dom, pbus, dev, fn = key
            vfs: list[Address] = []
            for i in range(min(count, 0x10000)):
                rid = (dev << 3 | fn) + sr.vf_offset + stride * i
                bus = pbus + (rid >> 8)
                if bus > 0xFF:
                    break
                vkey = (dom, bus, (rid >> 3) & 0x1F, rid & 7)
                vf = index.get(vkey)
                if vf is None or vkey in vf_of or vkey == key:
                    continue
                if vf.get("device_id") != sr.vf_device:
                    continue
                if vf.get("vendor_id") is not None and pf.get("vendor_id") is not None and vf["vendor_id"] != pf["vendor_id"]:
                    continue
                vfs.append(Address(*vkey))
                vf_of[vkey] = pf_addr
                if stride == 0:
                    break
            if vfs:
                pf["virtfns"] = tuple(vfs)
                self._vf_bar_sizes(pf, [index[(a.domain, a.bus, a.device, a.function)] for a in vfs], sr)
        if caps_seen:
            for _, _, f in items:
                f["is_virtfn"] = False
        for vkey, pf_addr in vf_of.items():
            index[vkey]["physfn"] = pf_addr
            index[vkey]["is_virtfn"] = True

    @staticmethod
    def _vf_bar_sizes(pf: dict[str, object], vfs: list[dict[str, object]], sr: SriovCap) -> None:
        """One VF BAR's size is what a VF shows; the IOV resource is that times TotalVFs."""
        vf_bars = pf.get("vf_bars")
        if not vf_bars:
            return
        sizes: dict[int, int] = {}
        for vf in vfs:
            for b in vf.get("bars") or ():  # type: ignore[union-attr]
                if b.size is not None:
                    sizes.setdefault(b.index, b.size)
        out = []
        for b in vf_bars:  # type: ignore[union-attr]
            size = b.size if b.size is not None else sizes.get(b.index)
            total = size * sr.total_vfs if size is not None and sr.total_vfs else b.total_size
            out.append(replace(b, size=size, total_size=total))
        pf["vf_bars"] = tuple(out)

    @staticmethod
    def _multifunction(items: list[_Item]) -> None:
        slots: dict[tuple[int, int, int], int] = {}
        for key, _, k in items:
            if not k.get("is_virtfn"):
                slot = key[:3]
                slots[slot] = slots.get(slot, 0) + 1
        for key, _, k in items:
            if k.get("multifunction") is not None:
                continue
            if k.get("is_virtfn"):
                k["multifunction"] = False  # VFs are never multifunction
            elif key[3] == 0 and slots.get(key[:3], 0) > 1:
                # The kernel scans functions 1-7 only when function 0 has the
                # multifunction bit; other functions' own bit is often 0, so unknown.
                k["multifunction"] = True

    def _tree(self, items: list[_Item], index: dict[_Key, dict[str, object]]) -> list[HostBridge]:
        # Innermost (narrowest) bridge per (domain, bus): paint widest ranges first.
        ranges: list[tuple[int, Address, int, int]] = []
        for _, a, k in items:
            br = k.get("bridge")
            if not isinstance(br, BridgeInfo) or br.secondary is None or br.subordinate is None:
                continue
            sec, sub = br.secondary, br.subordinate
            if sec == 0:
                continue  # unconfigured
            if sec <= a.bus or sub < sec:
                self.warn_each(f"{a}: bus range {sec:02x}-{sub:02x} cannot be below bus {a.bus:02x}; not used for the tree")
                continue
            ranges.append((sub - sec, a, sec, sub))
        ranges.sort(key=lambda r: (-r[0], r[1].domain, r[1].bus, r[1].device, r[1].function))
        owner: dict[tuple[int, int], Address] = {}
        claimed: dict[tuple[int, int], tuple[int, Address]] = {}
        for width, a, sec, sub in ranges:
            for bus in range(sec, sub + 1):
                prev = claimed.get((a.domain, bus))
                if prev is not None and prev[0] == width:
                    continue  # equal ranges: the lower address keeps it
                owner[(a.domain, bus)] = a
                claimed[(a.domain, bus)] = (width, a)
        roots: dict[tuple[int, int], None] = {}
        for key, _, k in items:
            p = owner.get(key[:2])
            k["parent"] = p
            if p is None:
                roots.setdefault(key[:2], None)
        # VMD: Intel endpoints with a VMD device ID own the domains 0x10000 and up, in order.
        vmd_eps = [a for key, a, k in items if k.get("vendor_id") == _INTEL and k.get("device_id") in VMD_DEVICE_IDS
                   and key[0] < _VMD_FIRST_DOMAIN]
        vmd_domains = sorted({dom for dom, _ in roots if dom >= _VMD_FIRST_DOMAIN})
        vmd_owner: dict[int, Address] = {}
        if vmd_domains:
            if len(vmd_eps) == len(vmd_domains):
                vmd_owner = dict(zip(vmd_domains, vmd_eps))
            elif len(vmd_eps) == 1 and len(vmd_domains) > 1:
                self.warn(f"{len(vmd_domains)} VMD domains but one VMD endpoint ({vmd_eps[0]}); owners unknown")
            elif not vmd_eps:
                self.warn(f"domain {vmd_domains[0]:04x} looks like a VMD domain but no VMD endpoint is listed")
            else:
                self.warn(f"{len(vmd_domains)} VMD domains but {len(vmd_eps)} VMD endpoints; owners unknown")
        for dom, ep in vmd_owner.items():
            index[(ep.domain, ep.bus, ep.device, ep.function)]["vmd_domain"] = dom
        return [HostBridge(dom, bus, None, None, vmd_owner.get(dom)) for dom, bus in sorted(roots)]


# =====================================================================================
# Helpers
# =====================================================================================


def _int(text: str | None, base: int) -> int | None:
    if not text:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def _size(text: str) -> int | None:
    m = _SIZE_RE.search(text)
    if not m:
        return None
    return int(m.group(1)) * _SIZE_MULT[m.group(2)]


def _flags(text: str | None) -> dict[str, bool]:
    if not text:
        return {}
    return {m.group(1): m.group(2) == "+" for m in _FLAG_RE.finditer(text)}


def _acs_bits(text: str | None) -> int | None:
    if text is None:
        return None
    m = _ACS_FAST_RE.match(text)
    if m:
        return sum(bit for (_, bit), flag in zip(_ACS_NAMES, m.groups()) if flag == "+")
    fl = _flags(text)
    value = 0
    for name, bit in _ACS_NAMES:
        if name not in fl:
            return None
        if fl[name]:
            value |= bit
    return value


def _speed(text: str | None) -> str | None:
    if not text:
        return None
    m = _SPEED_RE.search(text)
    if not m or m.group(1) is None:
        return None
    v = m.group(1)
    return _SPEEDS.get(v, f"{v} GT/s")


def _width(text: str | None) -> int | None:
    if not text:
        return None
    m = _WIDTH_RE.search(text)
    return int(m.group(1)) if m else None


def _device_list(text: str) -> int | None:
    """ "1, 6, 8-10" -> bitmap of device numbers."""
    bitmap = 0
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            return None
        if not 0 <= a <= b <= 31:
            return None
        for dev in range(a, b + 1):
            bitmap |= 1 << dev
    return bitmap


_NO_CAPS = Capabilities()
_EXT_ABSENT_KW: dict[str, object] = {k: ABSENT for k in _EXT_CAP_FIELDS}
#: No capability list, or one without an Express capability (so no extended space).
_ALL_ABSENT_KW: dict[str, object] = {**_EXT_ABSENT_KW, "eetlp_prefix": False, "ari_forwarding": False}


def _all_absent() -> Capabilities:
    return Capabilities(**_ALL_ABSENT_KW)  # type: ignore[arg-type]


def _agree(a: object, b: object) -> bool:
    """Equal where both are known: None (here or in any field of a fact) matches anything."""
    if a is None or b is None:
        return True
    if type(a) is type(b) and hasattr(a, "__dataclass_fields__"):
        return all(_agree(getattr(a, n), getattr(b, n)) for n in a.__dataclass_fields__)  # type: ignore[attr-defined]
    return a == b


def _merge_bars(hex_bars: tuple[Bar, ...] | None, text_bars: tuple[Bar, ...] | None) -> tuple[Bar, ...] | None:
    if hex_bars is None:
        return text_bars
    by_text = {b.index: b for b in text_bars or ()}
    # The upper half of a 64-bit BAR is no BAR of its own, whatever the text shows.
    upper = {b.index + 1 for b in hex_bars if b.kind.is_64bit}
    out: dict[int, Bar] = {}
    for hb in hex_bars:
        tb = by_text.get(hb.index)
        if tb is None:
            out[hb.index] = hb
            continue
        start, unassigned = hb.start, hb.unassigned
        if hb.start is None and tb.start is not None:
            start, unassigned = tb.start, False
        out[hb.index] = replace(hb, start=start, unassigned=unassigned,
                                size=tb.size if tb.size is not None else hb.size, disabled=tb.disabled)
    for tb in text_bars or ():
        if tb.index not in upper:
            out.setdefault(tb.index, tb)
    return tuple(out[i] for i in sorted(out))


def _show(v: object) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:#x}"
    if isinstance(v, PcieType):
        return v.value
    return repr(v)
