"""Where Linux 6.1 and 6.12 differ on the hot-add paths, as data.

Read side by side: Debian's linux-source-6.1 (6.1.192) and linux-source-6.12 (6.12.117),
drivers/pci/setup-bus.c, setup-res.c, probe.c, drivers/pci/hotplug/acpiphp_glue.c and
pciehp_pci.c. Everything not named here is the same code in both. Each difference is a
flag the simulator and the hotplug paths consult; a release we do not model takes the
nearest modelled one (:func:`rules_for_release`), and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KernelRules:
    """One modelled kernel: the behaviours that differ between the releases we model."""

    name: str
    read_from: str
    #: acpiphp_glue.c check_hotplug_bridge(): a hot-added PCIe switch upstream port is marked
    #: is_hotplug_bridge (6.1), so its windows are sized with the hotplug reserves; 6.12
    #: exempts upstream ports ("only Root Ports and Downstream Ports are capable of
    #: accommodating hotplug devices"): an empty one gets no windows at all.
    acpiphp_marks_upstream_port: bool
    #: setup-bus.c pbus_size_mem(): when the window does not fit the upstream bridge's
    #: assigned window (pbus_upstream_space_available), retry with relaxed alignment
    #: ("requires relaxed alignment rules"); 6.12 only.
    relaxed_alignment_retry: bool


RULES: dict[str, KernelRules] = {
    "6.1": KernelRules("6.1", "linux-source-6.1 (6.1.192)", acpiphp_marks_upstream_port=True,
                       relaxed_alignment_retry=False),
    "6.12": KernelRules("6.12", "linux-source-6.12 (6.12.117)", acpiphp_marks_upstream_port=False,
                        relaxed_alignment_retry=True),
}
KERNELS = tuple(RULES)


def _version(text: str) -> tuple[int, int] | None:
    m = re.match(r"\s*(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def rules_for_release(release: str) -> tuple[str, bool] | None:
    """(rule set name, exact) for a kernel release string; None when it is not a version.

    ``exact`` is True for 6.1.x and 6.12.x; any other release takes the nearest modelled
    one by (major, minor) distance, ties to the newer.
    """
    v = _version(release)
    if v is None:
        return None
    for name in RULES:
        if _version(name) == v:
            return name, True

    def dist(name: str) -> tuple[int, int]:
        m = _version(name)
        assert m is not None
        return (abs((v[0] * 100 + v[1]) - (m[0] * 100 + m[1])), -(m[0] * 100 + m[1]))

    return min(RULES, key=dist), False


def get_rules(name: str) -> KernelRules:
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"kernel {name!r}: the modelled kernels are {', '.join(KERNELS)}") from None
