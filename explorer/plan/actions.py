"""The changes a plan can hold: immutable action types, and the command words for each.

Each action is a frozen dataclass. ``words()`` gives the exact command line form that
``parse_action`` reads back (``plan add`` uses the same words), ``to_dict()`` and
``action_from_dict`` the plan-file form (docs/plan-format.md).
"""

from __future__ import annotations

import re
import uuid as _uuid
from dataclasses import dataclass
from typing import Any, Iterable, Union

from ..model import Address, AddressError, BarKind, Function, PcieType, present, units

#: Drivers whose ``driver_managed_dma`` is set (drivers/pci/pci-driver.c pci_dma_configure):
#: binding them never takes DMA ownership, so they never break a group's viability
#: (kernel-rules §4.1; vfio-pci.c, pci-stub.c, pcie/portdrv.c and the vfio-pci variants).
DMA_MANAGED_DRIVERS = frozenset(
    {
        "vfio-pci",
        "pci-stub",
        "pcieport",
        "mlx5_vfio_pci",
        "hisi_acc_vfio_pci",
        "pds_vfio_pci",
        "virtio_vfio_pci",
        "qat_vfio_pci",
        "nvgrace_gpu_vfio_pci",
    }
)
#: Drivers a device may be bound to for a VM to use it (VFIO's PCI drivers).
VFIO_DRIVERS = frozenset(d for d in DMA_MANAGED_DRIVERS if "vfio" in d)

# Names are checked whole (``\Z``, and callers use fullmatch): ``$`` would also match
# before a trailing newline, letting ``win11\n`` through.
_DRIVER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}\Z")
_VM_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}\Z")
_MDEV_TYPE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,127}\Z")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
#: Kernel parameter names: what parse_args (kernel/params.c) matches against module and core
#: parameters (letters, digits, ``_``, ``-``, and ``.`` between a module and its parameter).
_PARAM_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")
#: Kernel parameter values. lib/cmdline.c next_arg() ends a value at whitespace unless it is
#: in double quotes; anything else is passed on. The value also lands in a boot loader's
#: shell-sourced file (GRUB_CMDLINE_LINUX="...") and in commands people paste, so only
#: characters with no meaning to a shell are accepted: no whitespace, quotes, ``$``,
#: backquotes, backslashes, ``; & | < > ( ) { } [ ] * ? ! ~``, control characters.
_PARAM_VALUE_RE = re.compile(r"[A-Za-z0-9_.,:=/@+%#^-]*\Z")
#: The longest command line x86 accepts (COMMAND_LINE_SIZE).
MAX_PARAM_LEN = 2048

#: Largest SR-IOV VF count the capability can hold (16-bit field).
MAX_VFS = 0xFFFF
MAX_MDEV_COUNT = 256
MAX_BUSES = 255


class ActionError(ValueError):
    """A malformed action (bad words, bad field); str() is one line."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"[{self.field}]: {self.message}" if self.field else self.message


# ---- value checks shared by the word parser and the plan-file loader ---------------------


def parse_address(text: Any, field_name: str) -> Address:
    if not isinstance(text, str):
        raise ActionError(f"expected a PCI address [dddd:]bb:dd.f, got {text!r}", field_name)
    try:
        return Address.parse(text)
    except AddressError as e:
        raise ActionError(str(e), field_name) from None


def check_driver(name: Any, field_name: str = "driver") -> str:
    if not isinstance(name, str) or not _DRIVER_RE.fullmatch(name):
        raise ActionError(f"not a driver name: {name!r}", field_name)
    return name


def check_vm(name: Any, field_name: str = "vm") -> str:
    if isinstance(name, int) and not isinstance(name, bool):
        name = str(name)  # Proxmox VM ids
    if not isinstance(name, str) or not _VM_RE.fullmatch(name):
        raise ActionError(f"not a VM name (letters, digits, _ . + -): {name!r}", field_name)
    return name


def check_count(value: Any, field_name: str, *, low: int, high: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool):
        raise ActionError(f"expected a whole number, got {value!r}", field_name)
    if not low <= value <= high:
        raise ActionError(f"{value} is out of range ({low}-{high})", field_name)
    return value


def check_uuid(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
        raise ActionError(f"not a lowercase UUID (8-4-4-4-12 hex digits): {value!r}", field_name)
    return value


HOTPLUG_MODES = ("acpi", "native", "shpchp")
#: The driver's name is accepted for the path it takes (explorer.kernel.context.HOTPLUG_ALIASES).
_HOTPLUG_ALIASES = {"acpiphp": "acpi", "pciehp": "native"}


BRIDGE_KINDS = ("switch", "pci", "shpc")


def check_bridge_kind(value: Any, field_name: str = "bridge") -> str | None:
    """switch (a PCIe switch upstream port), pci (a PCIe-to-PCI bridge) or shpc; None: unknown."""
    if value is None:
        return None
    if value not in BRIDGE_KINDS:
        raise ActionError(f"expected switch, pci or shpc, got {value!r}", field_name)
    return value


def check_hotplug_mode(value: Any, field_name: str = "hotplug") -> str | None:
    """acpi (acpiphp), native (pciehp) or shpchp; None: the slot driver the source shows."""
    if value is None:
        return None
    value = _HOTPLUG_ALIASES.get(value, value) if isinstance(value, str) else value
    if value not in HOTPLUG_MODES:
        raise ActionError(f"expected acpi (acpiphp), native (pciehp) or shpchp, got {value!r}", field_name)
    return value


def parse_size(text: str, field_name: str) -> int:
    """``256``, ``4K``, ``1M``, ``2G``, ``1GiB``: bytes (explorer.model.units), positive."""
    try:
        value = units.parse_size(text.strip())
    except ValueError as e:
        raise ActionError(str(e), field_name) from None
    if value <= 0:
        raise ActionError(f"size must be positive: {text!r}", field_name)
    return value


format_size = units.format_size


# ---- the actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bind:
    """Bind a device (or every non-bridge member of its IOMMU group) to a named driver."""

    device: Address
    driver: str
    group: bool = False
    kind = "bind"

    def words(self) -> list[str]:
        return ["bind", str(self.device), "--driver", self.driver] + (["--group"] if self.group else [])

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"action": self.kind, "device": str(self.device), "driver": self.driver}
        if self.group:
            d["group"] = True
        return d


@dataclass(frozen=True, slots=True)
class Unbind:
    """Unbind a device from whatever driver it has (and clear any driver_override)."""

    device: Address
    kind = "unbind"

    def words(self) -> list[str]:
        return ["unbind", str(self.device)]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.kind, "device": str(self.device)}


@dataclass(frozen=True, slots=True)
class Assign:
    """Give a device (or every non-bridge member of its group) to a named VM, through vfio-pci."""

    device: Address
    vm: str
    group: bool = False
    kind = "assign"

    def words(self) -> list[str]:
        return ["assign", str(self.device), "--vm", self.vm] + (["--group"] if self.group else [])

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"action": self.kind, "device": str(self.device), "vm": self.vm}
        if self.group:
            d["group"] = True
        return d


@dataclass(frozen=True, slots=True)
class Sriov:
    """Set a PF's number of VFs (0 disables), optionally binding the VFs to a driver."""

    pf: Address
    vfs: int
    driver: str | None = None
    kind = "sriov"

    def words(self) -> list[str]:
        return ["sriov", str(self.pf), "--vfs", str(self.vfs)] + (["--driver", self.driver] if self.driver else [])

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"action": self.kind, "pf": str(self.pf), "vfs": self.vfs}
        if self.driver:
            d["driver"] = self.driver
        return d


@dataclass(frozen=True, slots=True)
class Mdev:
    """Create ``count`` mediated devices of ``mdev_type`` on ``parent``, with fixed UUIDs."""

    parent: Address
    mdev_type: str
    uuids: tuple[str, ...]
    vm: str | None = None
    kind = "mdev"

    @property
    def count(self) -> int:
        return len(self.uuids)

    def words(self) -> list[str]:
        w = ["mdev", str(self.parent), "--type", self.mdev_type, "--count", str(self.count)]
        w += [x for u in self.uuids for x in ("--uuid", u)]
        return w + (["--vm", self.vm] if self.vm else [])

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"action": self.kind, "parent": str(self.parent), "type": self.mdev_type, "uuids": list(self.uuids)}
        if self.vm:
            d["vm"] = self.vm
        return d


@dataclass(frozen=True, slots=True)
class MdevRemove:
    """Remove an active mediated device (``echo 1 > /sys/bus/mdev/devices/UUID/remove``)."""

    uuid: str
    kind = "mdev-remove"

    def words(self) -> list[str]:
        return ["mdev-remove", self.uuid]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.kind, "uuid": self.uuid}


@dataclass(frozen=True, slots=True)
class AssignMdev:
    """Give an existing mediated device (by UUID) to a named VM."""

    uuid: str
    vm: str
    kind = "assign"

    def words(self) -> list[str]:
        return ["assign", self.uuid, "--vm", self.vm]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.kind, "mdev": self.uuid, "vm": self.vm}


@dataclass(frozen=True, slots=True)
class BarSpec:
    kind: BarKind
    size: int
    #: The BAR number, when the plan names one; else BARs are numbered in the order given.
    index: int | None = None
    #: The user says the device works without this BAR (written ``KIND:SIZE:optional``): a
    #: hot-add that cannot place it is a warning, not an error.
    optional: bool = False

    def __str__(self) -> str:
        return self.engine_spec() + (":optional" if self.optional else "")

    def engine_spec(self) -> str:
        """The spec as the hot-add engine reads it (without the optional mark)."""
        pre = f"{self.index}:" if self.index is not None else ""
        return f"{pre}{self.kind.value}:{format_size(self.size)}"


@dataclass(frozen=True, slots=True)
class HotAdd:
    """Planned hardware: a device with these BARs (and, for a bridge, bus numbers) at a port."""

    port: Address
    bars: tuple[BarSpec, ...]
    buses: int = 0
    #: "acpi" (acpiphp), "native" (pciehp) or "shpchp" to override the slot driver the
    #: source shows; None: the source's (each when it does not say).
    hotplug: str | None = None
    #: For a bridge: "switch" (a switch upstream port), "pci" (a PCIe-to-PCI bridge) or
    #: "shpc" (one with SHPC); None: each is checked (fit's --bridge).
    bridge: str | None = None
    kind = "hot-add"

    def words(self) -> list[str]:
        w = ["hot-add", str(self.port)]
        for b in self.bars:
            w += ["--bar", str(b)]
        w += ["--buses", str(self.buses)] if self.buses else []
        w += ["--bridge", self.bridge] if self.bridge else []
        return w + (["--hotplug", self.hotplug] if self.hotplug else [])

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"action": self.kind, "port": str(self.port), "bars": [str(b) for b in self.bars]}
        if self.buses:
            d["buses"] = self.buses
        if self.bridge:
            d["bridge"] = self.bridge
        if self.hotplug:
            d["hotplug"] = self.hotplug
        return d


@dataclass(frozen=True, slots=True)
class HotRemove:
    """Remove a device and everything below it (sysfs ``remove``)."""

    device: Address
    kind = "hot-remove"

    def words(self) -> list[str]:
        return ["hot-remove", str(self.device)]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.kind, "device": str(self.device)}


@dataclass(frozen=True, slots=True)
class Trust:
    """Planned firmware/hardware: declare a port external-facing (or internal)."""

    port: Address
    external: bool
    kind = "trust"

    def words(self) -> list[str]:
        return ["trust", str(self.port), "--external" if self.external else "--internal"]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.kind, "port": str(self.port), "external": self.external}


@dataclass(frozen=True, slots=True)
class KernelParam:
    """Set a kernel command-line parameter, ``NAME=VALUE`` (or a bare ``NAME``)."""

    name: str
    value: str | None
    kind = "kernel-param"

    @property
    def text(self) -> str:
        return self.name if self.value is None else f"{self.name}={self.value}"

    def words(self) -> list[str]:
        return ["kernel-param", self.text]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.kind, "param": self.text}


Action = Union[Bind, Unbind, Assign, Sriov, Mdev, HotAdd, HotRemove, Trust, KernelParam, MdevRemove, AssignMdev]
ACTION_KINDS = ("bind", "unbind", "assign", "sriov", "mdev", "mdev-remove", "hot-add", "hot-remove", "trust", "kernel-param")

USAGE = {
    "bind": "bind BDF --driver NAME [--group]",
    "unbind": "unbind BDF",
    "assign": "assign BDF --vm NAME [--group] | assign MDEV-UUID --vm NAME",
    "sriov": "sriov PF --vfs N [--driver NAME]",
    "mdev": "mdev PARENT --type TYPE [--count N] [--vm NAME]",
    "mdev-remove": "mdev-remove UUID",
    "hot-add": "hot-add PORT --bar KIND:SIZE[:optional] ... [--buses N] [--bridge switch|pci|shpc] [--hotplug acpi|native|shpchp]",
    "hot-remove": "hot-remove BDF",
    "trust": "trust PORT --external|--internal",
    "kernel-param": "kernel-param NAME=VALUE",
}


def action_targets(action: Action) -> tuple[Address, ...]:
    """The addresses an action names (not the ones it reaches through --group)."""
    if isinstance(action, (Bind, Unbind, Assign, HotRemove)):
        return (action.device,)
    if isinstance(action, Sriov):
        return (action.pf,)
    if isinstance(action, Mdev):
        return (action.parent,)
    if isinstance(action, (HotAdd, Trust)):
        return (action.port,)
    return ()


# ---- parsing ----------------------------------------------------------------------------------


def hot_add_like(port: Address, fn: Function, *, hotplug: str | None = None) -> HotAdd:
    """A hot-add at ``port`` of a device like ``fn`` (from a bundled machine or a YAML card):
    its BARs with a known size, and for a bridge the bus numbers its range spans."""
    bars = tuple(BarSpec(b.kind, b.size, b.index) for b in (fn.bars or ()) if b.size)
    br = fn.bridge
    rng = br.bus_range if present(br) else None  # type: ignore[union-attr]
    buses = rng[1] - rng[0] + 1 if rng else 0
    if not bars and not buses:
        raise ActionError(f"{fn.address} has no BAR with a known size and no bus range to hot-add", "bar")
    bridge = {PcieType.SWITCH_UPSTREAM: "switch", PcieType.PCIE_TO_PCI_BRIDGE: "pci"}.get(fn.pcie_type) if buses else None  # type: ignore[arg-type]
    return HotAdd(port, bars, buses, check_hotplug_mode(hotplug), bridge)


def parse_bar(text: str, field_name: str = "bar") -> BarSpec:
    """``KIND:SIZE`` or ``INDEX:KIND:SIZE``; the BAR rules are the hot-add engine's own
    (explorer.kernel.setup.parse_bar_spec), so a plan accepts exactly what ``fit`` does."""
    from ..kernel.setup import parse_bar_spec

    optional = False
    if text.lower().endswith(":optional"):
        text, optional = text[: -len(":optional")], True
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ActionError(f"expected KIND:SIZE or INDEX:KIND:SIZE (e.g. pref64:1G), got {text!r}", field_name)
    kind_s = parts[-2]
    try:
        kind = BarKind(kind_s.lower())
    except ValueError:
        raise ActionError(
            f"unknown BAR kind {kind_s!r} (expected one of {', '.join(k.value for k in BarKind)})", field_name
        ) from None
    try:
        spec = parse_bar_spec(text)
    except ValueError as e:
        raise ActionError(str(e), field_name) from None
    return BarSpec(kind, spec.size, spec.index, optional)


def parse_kernel_param(text: Any, field_name: str = "param") -> KernelParam:
    """``NAME=VALUE`` or ``NAME``, as the kernel's parser reads one argument (lib/cmdline.c
    next_arg, kernel/params.c parse_args), restricted to characters no shell acts on."""
    if not isinstance(text, str) or not text or any(c.isspace() for c in text) or '"' in text:
        raise ActionError(f"expected NAME=VALUE without spaces or quotes, got {text!r}", field_name)
    if len(text) > MAX_PARAM_LEN:
        raise ActionError(f"longer than a kernel command line can be ({len(text)} > {MAX_PARAM_LEN} characters)", field_name)
    name, sep, value = text.partition("=")
    if not _PARAM_NAME_RE.fullmatch(name):
        raise ActionError(f"not a kernel parameter name: {name!r}", field_name)
    if sep and not _PARAM_VALUE_RE.fullmatch(value):
        bad = sorted({c for c in value if not _PARAM_VALUE_RE.fullmatch(c)})
        raise ActionError(
            f"{name}: the value holds {''.join(bad)!r}, which a shell or boot loader would act on "
            "(letters, digits and _ . , : = / @ + % # ^ - only)",
            field_name,
        )
    return KernelParam(name, value if sep else None)


def new_uuids(count: int) -> tuple[str, ...]:
    return tuple(str(_uuid.uuid4()) for _ in range(count))


class _Words:
    def __init__(self, words: list[str]) -> None:
        self.kind = words[0]
        self.positional: list[str] = []
        self.options: dict[str, list[str]] = {}
        self.flags: set[str] = set()
        it = iter(words[1:])
        for w in it:
            if w.startswith("--"):
                name = w[2:]
                if "=" in name:
                    name, value = name.split("=", 1)
                    self.options.setdefault(name, []).append(value)
                elif name in _FLAG_OPTIONS:
                    if name in self.flags:
                        raise ActionError(f"--{name} given twice", name)
                    self.flags.add(name)
                else:
                    try:
                        self.options.setdefault(name, []).append(next(it))
                    except StopIteration:
                        raise ActionError(f"--{name} needs a value", name) from None
            else:
                self.positional.append(w)

    def usage(self) -> str:
        return f"usage: {USAGE[self.kind]}"

    def one_positional(self, name: str) -> str:
        if len(self.positional) != 1:
            raise ActionError(f"expected one {name} ({self.usage()})", name.lower())
        return self.positional[0]

    def opt(self, name: str, required: bool = False) -> str | None:
        vals = self.options.get(name)
        if not vals:
            if required:
                raise ActionError(f"--{name} is required ({self.usage()})", name)
            return None
        if len(vals) > 1:
            raise ActionError(f"--{name} given more than once", name)
        return vals[0]

    def allow(self, options: Iterable[str], flags: Iterable[str] = ()) -> None:
        allowed_o, allowed_f = set(options), set(flags)
        for name in self.options:
            if name not in allowed_o:
                raise ActionError(f"{self.kind} takes no --{name} ({self.usage()})", name)
        for name in self.flags:
            if name not in allowed_f:
                raise ActionError(f"{self.kind} takes no --{name} ({self.usage()})", name)


_FLAG_OPTIONS = {"group", "external", "internal"}


def parse_action(words: list[str]) -> Action:
    """Parse one action from command words (see USAGE); raises ActionError (one line)."""
    if not words:
        raise ActionError("no action given (one of: " + ", ".join(ACTION_KINDS) + ")")
    kind = words[0]
    if kind not in USAGE:
        raise ActionError(f"unknown action {kind!r} (one of: {', '.join(ACTION_KINDS)})", "action")
    w = _Words(words)
    if kind == "bind":
        w.allow(["driver"], ["group"])
        return Bind(parse_address(w.one_positional("BDF"), "device"), check_driver(w.opt("driver", True)), "group" in w.flags)
    if kind == "unbind":
        w.allow([])
        return Unbind(parse_address(w.one_positional("BDF"), "device"))
    if kind == "assign":
        w.allow(["vm"], ["group"])
        if len(w.positional) == 1 and _UUID_RE.match(w.positional[0].lower()):
            if "group" in w.flags:
                raise ActionError("an mdev has its own group: assign MDEV-UUID takes no --group", "group")
            return AssignMdev(check_uuid(w.positional[0].lower(), "uuid"), check_vm(w.opt("vm", True)))  # type: ignore[arg-type]
        return Assign(parse_address(w.one_positional("BDF"), "device"), check_vm(w.opt("vm", True)), "group" in w.flags)
    if kind == "sriov":
        w.allow(["vfs", "driver"])
        drv = w.opt("driver")
        return Sriov(
            parse_address(w.one_positional("PF"), "pf"),
            check_count(w.opt("vfs", True), "vfs", low=0, high=MAX_VFS),
            check_driver(drv) if drv is not None else None,
        )
    if kind == "mdev":
        w.allow(["type", "count", "uuid", "vm"])
        parent = parse_address(w.one_positional("PARENT"), "parent")
        mtype = w.opt("type", True)
        if not _MDEV_TYPE_RE.fullmatch(mtype or ""):
            raise ActionError(f"not an mdev type name: {mtype!r}", "type")
        given = [check_uuid(u, "uuid") for u in w.options.get("uuid", [])]
        count_s = w.opt("count")
        count = check_count(count_s, "count", low=1, high=MAX_MDEV_COUNT) if count_s is not None else max(1, len(given))
        if given and len(given) != count:
            raise ActionError(f"{len(given)} --uuid given for --count {count}", "uuid")
        if len(set(given)) != len(given):
            raise ActionError("the same --uuid given twice", "uuid")
        vm = w.opt("vm")
        return Mdev(parent, mtype, tuple(given) or new_uuids(count), check_vm(vm) if vm is not None else None)  # type: ignore[arg-type]
    if kind == "mdev-remove":
        w.allow([])
        return MdevRemove(check_uuid(w.one_positional("UUID").lower(), "uuid"))
    if kind == "hot-add":
        w.allow(["bar", "buses", "hotplug", "bridge"])
        port = parse_address(w.one_positional("PORT"), "port")
        mode = check_hotplug_mode(w.opt("hotplug"))
        bridge = check_bridge_kind(w.opt("bridge"))
        bars = tuple(parse_bar(b) for b in w.options.get("bar", []))
        buses_s = w.opt("buses")
        buses = check_count(buses_s, "buses", low=0, high=MAX_BUSES) if buses_s is not None else 0
        if len(bars) > 6:
            raise ActionError("a device has at most 6 BARs", "bar")
        if bridge is not None and not buses:
            buses = 1
        if not bars and not buses:
            raise ActionError(f"give the device's BARs and/or bus numbers ({w.usage()})", "bar")
        return HotAdd(port, bars, buses, mode, bridge)
    if kind == "hot-remove":
        w.allow([])
        return HotRemove(parse_address(w.one_positional("BDF"), "device"))
    if kind == "trust":
        w.allow([], ["external", "internal"])
        if len(w.flags) != 1:
            raise ActionError(f"give exactly one of --external or --internal ({w.usage()})", "external")
        return Trust(parse_address(w.one_positional("PORT"), "port"), "external" in w.flags)
    # kernel-param
    w.allow([])
    return parse_kernel_param(w.one_positional("NAME=VALUE"), "param")


__all__ = [
    "Action", "ActionError", "ACTION_KINDS", "Assign", "AssignMdev", "BarSpec", "MdevRemove", "Bind", "DMA_MANAGED_DRIVERS", "HotAdd",
    "HotRemove", "KernelParam", "Mdev", "Sriov", "Trust", "USAGE", "Unbind", "VFIO_DRIVERS", "action_targets",
    "format_size", "hot_add_like", "parse_action", "parse_bar", "parse_kernel_param", "parse_size", "new_uuids",
]
