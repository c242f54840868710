"""Resolve a source's kernel context once: which slot driver, which kernel rules, which
command line, which IOMMU -- each fact read, given or assumed, never silently defaulted.

``resolve_context(topology, hotplug=, kernel=, kernel_params=)`` is the one place every
prediction (``fit``, ``check`` and the plan rules, ``plan add hot-add``, the app) gets the
context from. Flags override what the source says and the context records that they did.
``hotadd_cases(context, port)`` lists the possibilities a hot-add must be computed under
when a fact it depends on is unknown (the slot's driver, the kernel's rule set).
"""

from __future__ import annotations

from ..model import Address, SlotInfo, Topology
from ..model.context import (
    DRIVER_MODE,
    HOTPLUG_DRIVERS,
    MODE_DRIVER,
    Fact,
    KernelContext,
    assumed,
    given,
    read,
    unknown,
)
from .setup.versions import KERNELS, rules_for_release

#: Command-line parameters the context reports (the ones predictions here depend on).
CONTEXT_PARAMS = ("pci", "iommu", "intel_iommu", "amd_iommu", "iommu.passthrough", "iommu.strict",
                  "pcie_acs_override", "vfio-pci.ids")

#: Accepted spellings of a hotplug mode: the driver's name or the path's.
HOTPLUG_ALIASES = {"native": "native", "pciehp": "native", "acpi": "acpi", "acpiphp": "acpi",
                   "shpchp": "shpchp"}


def normalize_hotplug(value: str | None) -> str | None:
    """'native'/'pciehp' -> 'native', 'acpi'/'acpiphp' -> 'acpi', 'shpchp' -> 'shpchp'."""
    if value is None or value == "":
        return None
    v = HOTPLUG_ALIASES.get(str(value).strip().lower())
    if v is None:
        raise ValueError(f"hotplug mode {value!r}: expected native (pciehp), acpi (acpiphp) or shpchp")
    return v


def _where(topology: Topology, fact: str, fallback: str) -> str:
    for name, where in topology.source.provenance:
        if name == fact and where:
            return where
    return fallback


def _source_word(topology: Topology) -> str:
    k = topology.source.kind
    return {"yaml": "YAML", "lspci": "lspci text"}.get(k, k)


def _params(cmdline: Fact) -> tuple[tuple[str, Fact], ...]:
    if cmdline.value is None:
        return ()
    found: dict[str, list[str]] = {}
    for word in str(cmdline.value).split():
        name, sep, value = word.partition("=")
        if name in CONTEXT_PARAMS:
            found.setdefault(name, []).append(value if sep else "")
    return tuple((n, Fact(",".join(v), cmdline.how, cmdline.where)) for n, v in found.items())


def _slot_fact(topology: Topology, port: Address, slot: SlotInfo | None) -> Fact:
    drv = slot.hotplug_driver if slot is not None else None
    if drv is None:
        drv = dict(topology.source.slot_drivers).get(port)
    if drv is not None:
        where = _where(topology, f"slot_driver {port}", f"{_source_word(topology)} slot.hotplug-driver")
        return read(drv, where)
    kind = topology.source.kind
    if kind == "lspci":
        return unknown("lspci text does not show which driver owns a slot")
    if kind in ("sysfs", "snapshot"):
        return unknown("neither sys/bus/pci/slots/N/module nor a pciehp port service in "
                       "sys/bus/pci_express/devices says which driver owns this slot")
    return unknown(f"the {_source_word(topology)} source does not say (slot.hotplug-driver)")


def _base(topology: Topology) -> KernelContext:
    src = topology.source
    word = _source_word(topology)
    release = read(src.kernel_release, _where(topology, "kernel_release", f"{word} kernel-release")) \
        if src.kernel_release else unknown(f"the {word} source does not give the kernel release")
    cmdline = read(src.kernel_cmdline, _where(topology, "kernel_cmdline", f"{word} kernel-cmdline")) \
        if src.kernel_cmdline is not None else unknown(f"the {word} source does not give the kernel command line")
    if src.iommu_units is not None:
        where = _where(topology, "iommu_units", "sys/class/iommu")
        iommu = read(bool(src.iommu_units), where + (": " + ", ".join(src.iommu_units) if src.iommu_units else ": empty"))
    else:
        iommu = read(src.iommu_present, _where(topology, "group_types", f"{word} iommu-present")) \
            if src.iommu_present is not None else unknown(f"the {word} source does not say")
    vendor = _vendor(src.iommu_units)
    vendor_f = read(vendor, "sys/class/iommu unit names") if vendor else unknown()
    gwhere = _where(topology, "group_types", f"{word} group-types")
    groups = tuple((label, read(t, gwhere.replace("*", label))) for label, t in src.group_types)
    slots = []
    read_drivers = dict(src.slot_drivers)
    for fn in topology:
        s = fn.slot
        if not fn.is_bridge:
            continue
        if not isinstance(s, SlotInfo):
            if fn.address in read_drivers:  # e.g. a PCI bridge whose bus has hotplug slots
                slots.append((fn.address, _slot_fact(topology, fn.address, None)))
            continue
        if s.hotplug is False and s.hotplug_driver is None and fn.address not in read_drivers:
            continue
        slots.append((fn.address, _slot_fact(topology, fn.address, s)))
    return KernelContext(release, _rules_fact(release), cmdline, _params(cmdline), iommu, vendor_f, groups,
                         tuple(slots))


def _vendor(units: tuple[str, ...] | None) -> str | None:
    from ..model.context import iommu_vendor  # one reading of /sys/class/iommu unit names

    return iommu_vendor(units) if units else None


def _rules_fact(release: Fact) -> Fact:
    if release.value is None:
        return unknown("the kernel release is unknown: " + " and ".join(KERNELS) + " are both computed")
    got = rules_for_release(str(release.value))
    if got is None:
        return unknown(f"kernel release {release.value!r} is not a version: " + " and ".join(KERNELS) + " are both computed")
    name, exact = got
    if exact:
        return Fact(name, release.how, f"kernel release {release.value}")
    return assumed(name, f"kernel {release.value} is not modelled; the nearest modelled kernel is {name}")


def source_context(topology: Topology) -> KernelContext:
    """The context the source itself gives (no flags), computed once per topology."""
    return topology.memo("kernel_context", lambda: _base(topology))


def resolve_context(topology: Topology, *, hotplug: str | None = None, kernel: str | None = None,
                    kernel_params: str | list[str] | tuple[str, ...] | None = None,
                    cmdline: str | None = None, port: Address | None = None) -> KernelContext:
    """The source's context with flags applied; each override is recorded in ``overrides``.

    ``hotplug``: native/pciehp, acpi/acpiphp or shpchp, for ``port`` (or every hotplug port
    when ``port`` is None). ``kernel``: "6.1" or "6.12". ``kernel_params``: parameters added
    to the source's command line (a string or a list of words).
    """
    ctx = source_context(topology)
    overrides: list[str] = []
    release, rules = ctx.release, ctx.rules
    if kernel is not None:
        if kernel not in KERNELS:
            raise ValueError(f"--kernel {kernel}: the modelled kernels are {', '.join(KERNELS)}")
        if rules.value != kernel or rules.how != "read":
            overrides.append(f"--kernel {kernel} overrides the rules "
                             + (f"{rules.value} ({rules.how}: {rules.where})" if rules.known else "(unknown)"))
        rules = given(kernel, f"--kernel {kernel}")
    params = ctx.params
    if cmdline is not None:
        if cmdline != ctx.cmdline.value:
            overrides.append("the command line given replaces "
                             + (f"the one read from {ctx.cmdline.where}" if ctx.cmdline.known else "the unknown one"))
        cmdline = given(cmdline, "kernel command line given")  # type: ignore[assignment]
        params = _params(cmdline)  # type: ignore[arg-type]
    else:
        cmdline = ctx.cmdline  # type: ignore[assignment]
    if kernel_params:
        words = kernel_params.split() if isinstance(kernel_params, str) else [w for p in kernel_params for w in str(p).split()]
        merged = " ".join([str(cmdline.value or ""), *words]).strip()
        overrides.append("--kernel-param " + " ".join(words) + " added to the command line"
                         + ("" if cmdline.known else " (the source's own is unknown)"))
        cmdline = given(merged, "--kernel-param " + " ".join(words) + (f" added to {cmdline.where}" if cmdline.known else ""))
        params = _params(cmdline)
    slots = ctx.slot_drivers
    if hotplug is not None:
        mode = normalize_hotplug(hotplug)
        drv = MODE_DRIVER.get(mode, mode)  # type: ignore[arg-type]
        new = []
        targets = [a for a, _ in slots] if port is None else [port]
        done = set()
        for a, f in slots:
            if a in targets:
                if f.value != drv:
                    overrides.append(f"--hotplug {hotplug} overrides {a}'s slot driver "
                                     + (f"{f.value} ({f.how}: {f.where})" if f.known else "(unknown)"))
                f = given(drv, f"--hotplug {hotplug}")
                done.add(a)
            new.append((a, f))
        for a in targets:
            if a not in done:
                new.append((a, given(drv, f"--hotplug {hotplug}")))
        slots = tuple(new)
    if not overrides and slots is ctx.slot_drivers and rules is ctx.rules and cmdline is ctx.cmdline:
        return ctx
    return KernelContext(release, rules, cmdline, params, ctx.iommu, ctx.iommu_vendor, ctx.group_types, slots,
                         tuple(overrides))


def hotadd_cases(ctx: KernelContext, port: Address) -> list[dict[str, str]]:
    """The (hotplug mode, kernel rules) pairs a hot-add at ``port`` must be computed under:
    one when both facts are known, every combination of the unknown ones otherwise."""
    f = ctx.slot_driver(port)
    modes = [DRIVER_MODE[f.value]] if f.value in HOTPLUG_DRIVERS else ["acpi", "native"]
    kernels = [ctx.rules.value] if ctx.rules.known else list(KERNELS)
    return [{"hotplug": m, "kernel": k} for k in kernels for m in modes]
