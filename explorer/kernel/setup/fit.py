"""``fit_hotadd``: the public entry of the hot-add prediction."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from ...model import Address, Topology
from .hotadd import simulate_hotadd
from .remedies import find_remedies
from .specs import HOTPLUG_MODES, BarLike, FitResult, normalize_bars, parse_kernel_params


def fit_hotadd(
    topology: Topology,
    port: Address | str,
    bars: Iterable[BarLike],
    *,
    buses: int = 0,
    hotplug: str = "native",
    kernel_params: str | None = None,
    shpc: bool = False,
    remedies: bool = True,
) -> FitResult:
    """Predict what Linux 6.1 does when a device with ``bars`` is hot-added below ``port``.

    ``bars``: BAR specs (``"pref64:1G"``, ``"2:pref64:1G"``, ``("pref64", 1 << 30)``,
    ``(2, "pref64", 1 << 30)`` or :class:`BarSpec`); unnumbered BARs take BAR numbers
    in the order listed. ``buses``: bus numbers the device needs below itself
    (0 for an endpoint; 1 for a bridge such as a switch upstream port or a
    PCIe-to-PCI bridge, with I/O, memory and 64-bit prefetchable windows).
    ``hotplug``: "native" (pciehp) or "acpi" (acpiphp). ``kernel_params``: the
    kernel command line (only its ``pci=`` options matter); None means the
    command line the source recorded. ``shpc``: the hot-added bridge has an
    SHPC capability (a PCI-X/PCI bridge with standard hotplug), which matters
    when it gets no bus number (rule 6a.9). ``remedies``: look for remedies
    when it does not fit (simulates the alternatives).
    """
    if isinstance(port, str):
        port = Address.parse(port)
    if hotplug not in HOTPLUG_MODES:
        raise ValueError(f"hotplug mode {hotplug!r}: expected 'native' (pciehp) or 'acpi' (acpiphp)")
    if not isinstance(buses, int) or buses < 0 or buses > 255:
        raise ValueError(f"buses={buses!r}: expected 0 (an endpoint) to 255")
    specs = normalize_bars(bars)
    fn = topology.get(port)
    if fn is None:
        raise KeyError(f"no function {port} in this topology")
    if not fn.is_bridge:
        raise ValueError(f"{port} is not a bridge: devices are hot-added below a hotplug port")
    cmdline = kernel_params if kernel_params is not None else topology.source.kernel_cmdline
    kp = parse_kernel_params(cmdline)
    result = simulate_hotadd(topology, port, specs, buses, hotplug, kp, shpc)
    if remedies and not result.fits:
        result = replace(result, remedies=tuple(find_remedies(topology, port, specs, buses, hotplug, kp, shpc, result)))
        from .reboot import with_reboot_remedies  # boot-parameter remedies: simulated reboots

        result = with_reboot_remedies(result, topology, None, specs, buses=buses, shpc=shpc,
                                      base_params=kernel_params)
    return result
