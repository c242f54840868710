"""``fit_hotadd``: the public entry of the hot-add prediction.

The kernel context (slot driver, kernel rules, command line) comes from
:func:`explorer.kernel.context.resolve_context`, the one resolver every prediction uses.
A fact the source does not give is never defaulted: the hot-add is computed under each
possibility, and when they disagree the result says so (``certain`` False, ``possibilities``
side by side, ``fits`` the worst case).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from ...model import Address, Topology
from .hotadd import simulate_hotadd
from .remedies import find_remedies
from .specs import BarLike, FitResult, normalize_bars, parse_kernel_params
from .versions import RULES

#: The ways a hot-added bridge is described: a PCIe switch upstream port, a PCIe-to-PCI
#: bridge, or one with a Standard Hot-Plug Controller.
BRIDGE_KINDS = ("switch", "pci", "shpc")
_BRIDGE_WORDS = {True: "a switch upstream port", False: "a PCIe-to-PCI bridge"}


def _outcome_key(r: FitResult) -> tuple:
    nb = r.new_bridge
    return (r.fits, r.certain, tuple((o.index, o.assigned, o.start, o.end) for o in r.bars),
            None if nb is None else (nb.secondary, nb.subordinate, nb.bus_assigned, tuple(sorted(nb.windows.items()))),
            tuple(sorted((k, v) for k, v in r.port_windows_after.items())), r.kernel_oops)


def fit_hotadd(
    topology: Topology,
    port: Address | str,
    bars: Iterable[BarLike],
    *,
    buses: int = 0,
    hotplug: str | None = None,
    kernel: str | None = None,
    kernel_params: str | None = None,
    shpc: bool = False,
    bridge: str | None = None,
    remedies: bool = True,
    context: object = None,
) -> FitResult:
    """Predict what Linux does when a device with ``bars`` is hot-added below ``port``.

    ``bars``: BAR specs (``"pref64:1G"``, ``"2:pref64:1G"``, ``("pref64", 1 << 30)``,
    ``(2, "pref64", 1 << 30)`` or :class:`BarSpec`); unnumbered BARs take BAR numbers
    in the order listed. ``buses``: bus numbers the device needs below itself
    (0 for an endpoint; 1 for a bridge such as a switch upstream port or a
    PCIe-to-PCI bridge, with I/O, memory and 64-bit prefetchable windows).
    ``bridge``: what the new bridge is, "switch" (a PCIe switch upstream port), "pci"
    (a PCIe-to-PCI bridge) or "shpc" (one with an SHPC capability, rule 6a.9); None with
    ``buses``: both kinds are computed.
    ``hotplug``: "native"/"pciehp", "acpi"/"acpiphp" or "shpchp"; None: the slot's driver
    the source gives, else both. ``kernel``: "6.1" or "6.12"; None: from the source's
    release, else both. ``kernel_params``: the whole kernel command line (only its
    ``pci=`` options matter); None: the one the source recorded. ``context``: a resolved
    :class:`~explorer.model.context.KernelContext` (then the three flags are ignored).
    ``remedies``: look for remedies when it does not fit (simulates the alternatives).
    """
    from ..context import hotadd_cases, resolve_context

    if isinstance(port, str):
        port = Address.parse(port)
    if not isinstance(buses, int) or buses < 0 or buses > 255:
        raise ValueError(f"buses={buses!r}: expected 0 (an endpoint) to 255")
    if bridge is not None and bridge not in BRIDGE_KINDS:
        raise ValueError(f"bridge {bridge!r}: expected switch (a switch upstream port), pci (a PCIe-to-PCI bridge) "
                         "or shpc (a PCIe-to-PCI bridge with SHPC)")
    specs = normalize_bars(bars)
    fn = topology.get(port)
    if fn is None:
        raise KeyError(f"no function {port} in this topology")
    if not fn.is_bridge:
        raise ValueError(f"{port} is not a bridge: devices are hot-added below a hotplug port")
    if bridge is not None and not buses:
        buses = 1
    if context is None:
        context = resolve_context(topology, hotplug=hotplug, kernel=kernel, cmdline=kernel_params, port=port)
    ctx = context
    kp = parse_kernel_params(ctx.cmdline.value)  # type: ignore[attr-defined]
    shpc = shpc or bridge == "shpc"
    uppers: list[bool | None] = [None] if not buses else ([bridge == "switch"] if bridge is not None else [True, False])
    driver_known = ctx.slot_driver(port).value is not None  # type: ignore[attr-defined]
    rules_known = ctx.rules.known  # type: ignore[attr-defined]
    results: list[FitResult] = []
    for case in hotadd_cases(ctx, port):  # type: ignore[arg-type]
        for up in uppers:
            rules = RULES[case["kernel"]]
            r = simulate_hotadd(topology, port, specs, buses, case["hotplug"], kp, shpc, rules, bool(up))
            assuming: list[tuple[str, str]] = []
            if not driver_known:
                assuming.append(("hotplug", case["hotplug"]))
            if not rules_known:
                assuming.append(("kernel", case["kernel"]))
            if up is not None and bridge is None:
                assuming.append(("bridge", "switch" if up else "pci"))
            warn = r.warnings
            if not ctx.cmdline.known:  # type: ignore[attr-defined]
                warn = ("the kernel command line is unknown to this source: no pci= options assumed "
                        "(give --kernel-param pci=... if the machine boots with some)", *warn)
            results.append(replace(r, kernel=case["kernel"], assuming=tuple(assuming), context=ctx, warnings=warn))
    groups: dict[tuple, list[FitResult]] = {}
    for r in results:
        groups.setdefault(_outcome_key(r), []).append(r)
    merged = [_merge(g) for g in groups.values()]
    if remedies:
        merged = [_with_remedies(topology, port, specs, buses, kp, shpc, r) for r in merged]
    if len(merged) == 1:
        only = merged[0]
        if not only.assuming:
            return only
        facts = ", ".join(k for k, _ in only.assuming)
        return replace(only, assuming=(), warnings=(f"not known to this source ({facts}), but every possibility gives "
                                                     "this same result", *only.warnings))
    worst = next((r for r in merged if not r.fits), merged[0])
    note = ("the outcome depends on what the source does not say ("
            + ", ".join(sorted({k for r in merged for k, _ in r.assuming})) + "): each possibility is shown; "
            "give --hotplug / --kernel / --bridge to say which")
    return replace(worst, fits=all(r.fits for r in merged), certain=False, possibilities=tuple(merged),
                   warnings=(note, *worst.warnings))


def _merge(group: list[FitResult]) -> FitResult:
    """Results with one outcome: the first, assuming only the facts whose value mattered."""
    first = group[0]
    keys = [k for k, _ in first.assuming]
    kept = []
    for k in keys:
        vals = sorted({v for r in group for kk, v in r.assuming if kk == k})
        # the values of this fact that give this outcome ("a|b" when several do)
        kept.append((k, "|".join(vals)))
    kernels = sorted({r.kernel for r in group if r.kernel})
    return replace(first, assuming=tuple(kept), kernel=first.kernel if len(kernels) == 1 else "|".join(kernels))


def _with_remedies(topology: Topology, port: Address, specs, buses: int, kp, shpc: bool, r: FitResult) -> FitResult:
    if r.fits:
        return r
    rules = RULES[r.kernel] if r.kernel in RULES else RULES["6.1"]
    up = dict(r.assuming).get("bridge") == "switch"
    r = replace(r, remedies=tuple(find_remedies(topology, port, specs, buses, r.hotplug, kp, shpc, r, rules, up)))
    from .reboot import with_reboot_remedies  # boot-parameter remedies: simulated reboots

    return with_reboot_remedies(r, topology, None, specs, buses=buses, kernel=r.kernel if r.kernel in RULES else None,
                                shpc=shpc, base_params="pci=" + ",".join(kp.options) if kp.options else "")
