"""Hot-add fit and SR-IOV fit: what Linux does, predicted from a topology.

``fit_hotadd(topology, port, bars, buses=, hotplug=, kernel_params=)`` replays on a
copy of the machine what the kernel runs when a device appears below a hotplug
port (kernel-rules.md section 6a); ``fit_sriov(topology, pf, num_vfs)`` what
``echo N > sriov_numvfs`` does. The package, by the kernel's own layering:

* :mod:`.simulator` -- the resource simulator: kernel/resource.c, drivers/pci/bus.c,
  setup-res.c and setup-bus.c function by function (struct resource, pci_dev, pci_bus).
* :mod:`.machine` -- a Topology turned into the simulator's buses and claimed resources.
* :mod:`.specs` -- BAR specs, the ``pci=`` options that matter, the result types.
* :mod:`.hotadd` -- the hot-add: scan, bus numbers, then the hotplug driver's path:
  :mod:`.pciehp` (native) or :mod:`.acpiphp` (ACPI).
* :mod:`.remedies` -- what would make a failed hot-add fit, each simulated.
* :mod:`.fit` -- ``fit_hotadd``, the entry point.
* :mod:`.sriov` -- ``fit_sriov`` (drivers/pci/iov.c).

``pci=hp*size`` matter only for windows the kernel sizes at the hot-add (native, or
a new bridge under ACPI); a firmware-programmed window keeps its size (rule 6a.5).
Read from Debian's linux-source-6.1 (6.1.192).

Layer rule: imports :mod:`explorer.model` (and the sibling accounting module) only.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fit import fit_hotadd
    from .specs import (
        HOTPLUG_MODES,
        BarOutcome,
        BarSpec,
        FitResult,
        KernelParams,
        NewBridge,
        normalize_bars,
        parse_bar_spec,
        parse_kernel_params,
    )
    from .sriov import SriovFitResult, VfBarPlacement, VfPlan, fit_sriov

#: Where each public name lives. The package imports its modules when a name is first used
#: (PEP 562): a command that reads only ``setup.versions`` (every load does, for the kernel
#: context) does not pay for the simulator.
_HOME = {
    "fit_hotadd": "fit",
    "SriovFitResult": "sriov", "VfBarPlacement": "sriov", "VfPlan": "sriov", "fit_sriov": "sriov",
    **{name: "specs" for name in ("HOTPLUG_MODES", "BarOutcome", "BarSpec", "FitResult", "KernelParams",
                                   "NewBridge", "normalize_bars", "parse_bar_spec", "parse_kernel_params")},
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


__all__ = sorted(_HOME)
