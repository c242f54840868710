"""SR-IOV fit: would ``echo N > sriov_numvfs`` work, and where do the VFs land.

Follows ``sriov_numvfs_store`` and ``sriov_enable`` (drivers/pci/iov.c): -ERANGE
above TotalVFs, "not enough MMIO resources for SR-IOV", "can't enable %d VFs (bus
%02x out of range of %pR)", and where each VF and its BARs land.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...model import ABSENT, Address, SriovCap, Topology, present
from ..resources import fmt_size
from .specs import BarOutcome
from .simulator import bus_name


@dataclass(frozen=True, slots=True)
class VfBarPlacement:
    index: int
    kind: str
    size: int | None
    start: int | None
    end: int | None


@dataclass(frozen=True, slots=True)
class VfPlan:
    vf: int
    address: Address | None
    bus_ok: bool
    bars: tuple[VfBarPlacement, ...]


@dataclass(frozen=True, slots=True)
class SriovFitResult:
    """Would ``echo N > sriov_numvfs`` on this PF work (drivers/pci/iov.c)?"""

    fits: bool
    pf: Address
    num_vfs: int
    total_vfs: int | None
    #: The error the write would fail with ("ERANGE", "ENOMEM", "ENOENT", "EBUSY", "EIO"), else None.
    errno: str | None
    #: The kernel's own log lines for it.
    messages: tuple[str, ...]
    #: Per VF BAR: the IOV resource and whether it is assigned (the ``bars`` of the JSON).
    bars: tuple[BarOutcome, ...]
    vfs: tuple[VfPlan, ...]
    remedies: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    certain: bool = True
    #: Bus range the VFs must fit in (the PF's bus: its upstream bridge's [secondary-subordinate]).
    bus_range: tuple[int, int] | None = None
    currently_enabled: int | None = None
    #: What the write to sriov_numvfs returns, in words, when it fails.
    error: str | None = None


def fit_sriov(topology: Topology, pf: Address | str, num_vfs: int) -> SriovFitResult:
    """Predict ``echo num_vfs > /sys/bus/pci/devices/PF/sriov_numvfs`` (Linux 6.1 iov.c)."""
    if isinstance(pf, str):
        pf = Address.parse(pf)
    if not isinstance(num_vfs, int) or num_vfs < 0 or num_vfs > 0xFFFF:
        raise ValueError(f"num_vfs={num_vfs!r}: expected 0 to 65535")
    fn = topology.get(pf)
    if fn is None:
        raise KeyError(f"no function {pf} in this topology")
    cap = fn.caps.sriov
    if cap is ABSENT:
        raise ValueError(f"{pf} has no SR-IOV capability")
    if cap is None:
        raise ValueError(f"{pf}: this source does not say whether it has SR-IOV")
    assert isinstance(cap, SriovCap)
    notes: list[str] = []
    msgs: list[str] = []
    remedies: list[str] = []
    certain = True
    total = cap.driver_total_vfs if cap.driver_total_vfs is not None else cap.total_vfs
    current = cap.num_vfs
    drv = fn.driver if isinstance(fn.driver, str) else None
    prefix = f"{drv or 'pci'} {pf}"
    errno: str | None = None

    # the bus range VFs must stay in: dev->bus->busn_res
    if fn.parent is not None:
        up = topology.get(fn.parent)
        br = up.bridge if up is not None else None
        rng = (br.secondary, br.subordinate) if present(br) and br.secondary is not None and br.subordinate is not None else None  # type: ignore[union-attr]
    else:
        hb = topology.host_bridge(pf.domain, pf.bus)
        rng = (pf.bus, hb.bus_range[1]) if hb is not None and hb.bus_range is not None else None

    # VF BARs / IOV resources
    iov = [vb for vb in (fn.vf_bars or ()) if vb.total_size or vb.size]
    bar_out: list[BarOutcome] = []
    for vb in iov:
        per = vb.size
        ok = vb.assigned
        total_size = vb.total_size
        start = vb.start if ok else None
        end = (vb.start + total_size - 1) if ok and total_size else None  # type: ignore[operator]
        reason = (f"VF BAR {vb.index}: IOV resource {fmt_size(total_size)} ({fmt_size(per)} per VF) assigned"
                  if ok else f"VF BAR {vb.index}: IOV resource not assigned at boot (no room in the upstream window)")
        bar_out.append(BarOutcome(vb.index, vb.kind.value, per or 0, ok, start, end, reason))

    error: str | None = None
    if total is not None and num_vfs > total:
        # sriov_numvfs_store() returns before anything else is checked or logged
        error = (f"echo {num_vfs} > sriov_numvfs fails with -ERANGE (Numerical result out of range): "
                 f"{num_vfs} > sriov_totalvfs = {total}")
        return SriovFitResult(False, pf, num_vfs, total, "ERANGE", (), tuple(bar_out), (),
                              (f"ask for at most {total} VFs (sriov_totalvfs)",), tuple(notes), True, rng, current,
                              error)
    if total is None:
        certain = False
        notes.append("TotalVFs unknown to this source")
    if current is not None and num_vfs == current:
        notes.append(f"{current} VFs are already enabled: writing the same number is a no-op")
    if num_vfs == 0:
        notes.append("0 disables SR-IOV")
    if errno is None and num_vfs and current != num_vfs:
        if fn.driver is ABSENT:
            errno = "ENOENT"
            error = f"echo {num_vfs} > sriov_numvfs fails with -ENOENT: no PF driver bound"
            msgs.append(f"{prefix}: no driver bound to device; cannot configure SR-IOV")
            remedies.append(f"bind a PF driver with sriov_configure to {pf} (its own driver, or pci-pf-stub / vfio-pci)")
        elif drv is None:
            notes.append("whether a PF driver is bound is unknown: sriov_numvfs needs one with .sriov_configure")
    if current and num_vfs and current != num_vfs:
        msgs.append(f"{prefix}: {current} VFs already enabled. Disable before enabling {num_vfs} VFs")
        notes.append(f"-EBUSY unless 0 is written first: {current} VFs are enabled now; the rest of this answer is for "
                     "writing 0 and then the new number")
        remedies.append("echo 0 > sriov_numvfs first, then the new number")

    # sriov_enable() checks, in order
    if num_vfs and errno in (None,):
        if cap.initial_vfs is not None and cap.total_vfs is not None and num_vfs > cap.initial_vfs:
            notes.append(f"InitialVFs is {cap.initial_vfs}: without VF Migration support the kernel refuses more "
                         "than InitialVFs (-EINVAL); whether the PF has it is not known here")
        unassigned = [b for b in bar_out if not b.assigned]
        if unassigned:
            errno = "ENOMEM"
            error = f"echo {num_vfs} > sriov_numvfs fails with -ENOMEM"
            msgs.append(f"{prefix}: not enough MMIO resources for SR-IOV")
            remedies.append("make room for the IOV BARs at boot: enable SR-IOV / large BAR support in the firmware, or "
                            "a bigger window on the upstream port; pci=realloc is already automatic when an IOV BAR "
                            "is unassigned (CONFIG_PCI_REALLOC_ENABLE_AUTO) unless the firmware asks to preserve "
                            "its setup")
    vfs: list[VfPlan] = []
    off, stride = cap.vf_offset, cap.vf_stride
    if num_vfs and (off is None or stride is None):
        certain = False
        notes.append("VF offset/stride unknown: VF bus numbers cannot be checked")
    elif num_vfs:
        if not off or (num_vfs > 1 and not stride):
            if errno is None:
                errno = "EIO"
                error = "SR-IOV was not set up at boot (-EIO): First VF Offset 0, or VF Stride 0 with more than one VF"
            notes.append("First VF Offset 0, or VF Stride 0 with more than one VF: SR-IOV is not set up (-EIO)")
        for i in range(num_vfs):
            rid = pf.devfn + off + stride * i  # type: ignore[operator]
            bus = pf.bus + (rid >> 8)
            ok = bus <= 0xFF and (rng is None or bus <= rng[1])
            addr = Address.from_rid(pf.domain, bus, rid & 0xFF) if bus <= 0xFF else None
            places = []
            for vb in iov:
                if vb.assigned and vb.size:
                    s = vb.start + i * vb.size  # type: ignore[operator]
                    places.append(VfBarPlacement(vb.index, vb.kind.value, vb.size, s, s + vb.size - 1))
                else:
                    places.append(VfBarPlacement(vb.index, vb.kind.value, vb.size, None, None))
            vfs.append(VfPlan(i, addr, ok, tuple(places)))
            if addr is not None and addr in topology.functions and addr not in fn.virtfns:
                notes.append(f"VF {i} would be {addr}, where another function already is")
        last_bus = pf.bus + ((pf.devfn + off + stride * (num_vfs - 1)) >> 8)  # type: ignore[operator]
        if rng is not None and last_bus > rng[1] and errno is None:
            errno = "ENOMEM"
            error = f"echo {num_vfs} > sriov_numvfs fails with -ENOMEM"
            msgs.append(f"{prefix}: can't enable {num_vfs} VFs (bus {last_bus:02x} out of range of "
                        f"{bus_name(rng[0], rng[1])})")
            remedies.append("more bus numbers below the upstream bridge (firmware bus reservation, e.g. QEMU "
                            "bus-reserve=N; or pci=assign-busses so the kernel reserves VF buses), or ARI so VFs "
                            "pack on the PF's bus")
        elif rng is None:
            certain = False
            notes.append("the PF's bus range is unknown: VF bus numbers cannot be checked")
        if cap.ari_hierarchy:
            notes.append("ARI Capable Hierarchy is set: offset and stride are the ARI values")
    if current and current == num_vfs:
        vfs_present = tuple(fn.virtfns)
        if vfs_present:
            notes.append("VFs now: " + ", ".join(str(a) for a in vfs_present))
    fits = errno is None and certain
    return SriovFitResult(fits, pf, num_vfs, total, errno, tuple(msgs), tuple(bar_out), tuple(vfs), tuple(remedies),
                          tuple(notes), certain, rng, current, error)
