"""Deterministic synthetic machines of any size, for scale tests and benchmarks.

``generate(functions, seed)`` builds a machine with exactly ``functions`` PCI functions
and the shapes real servers have:

* several PCI domains, each split into one to four host bridges (root buses with their
  own bus range, 32-bit and 64-bit windows; the first also has the I/O windows);
* on each root bus a host bridge function, root ports (some with ACS, some without,
  some in hot-plug slots, several per device number like chipset root ports), and on
  the first root bus chipset functions, root complex integrated endpoints with an
  RCEC that names them, and Intel VMD endpoints (8086:28c0) owning PCI domains
  ``10000`` and up with NVMe drives behind their own root ports;
* below the root ports: NVMe drives, multifunction NICs, GPUs with their audio
  function, PCIe switches (upstream and downstream ports, one switch model with ACS
  on its downstream ports, one without, empty hot-plug downstream ports), SR-IOV NICs
  with many VFs (ARI routing IDs from First VF Offset and VF Stride, VFs on buses
  past the PF's, inside the root port's bus range), PCIe-to-PCI bridges with
  conventional devices, and empty hot-plug root ports with reserved buses and windows;
* bus numbers assigned depth first as the kernel does (VF buses reserved right after
  the PF's bus), never more than 256 per domain; memory BARs, IOV resources and
  bridge windows sized bottom-up and assigned top-down so every resource lies in a
  window of its upstream bridge (or host bridge, or VMD BAR) and siblings never overlap.

The result is exactly what ``load_sysfs`` reads back from ``sysfs_writer``'s tree of
it (no fact a sysfs tree cannot carry). IOMMU groups are left unknown unless the
caller passes ``label_groups`` (a layer-3 function such as
``lambda t: explorer.kernel.groups.predict_groups(t).group_of``: this layer may not
import the kernel layer); its labels are renumbered ``0, 1, ...`` in address order.
Same ``functions`` and ``seed``, same machine, on every Python and platform.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Mapping

from ..model import (
    ABSENT,
    AcsCap,
    Address,
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

__all__ = ["KERNEL_RELEASE", "MEM32_BASE", "MEM32_LIMIT", "generate"]

KERNEL_RELEASE = "6.1.0-synthetic"
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
#: Where host bridges' 32-bit windows go (below the ECAM/APIC area) and 64-bit ones start.
MEM32_BASE, MEM32_LIMIT = 0x4000_0000, 0xF000_0000
MEM64_BASE = 0x40_0000_0000
IO_FIRST, IO_LIMIT = 0x1000, 0x10000
#: Share of the 32-bit space handed out while building (the rest absorbs alignment).
_MEM32_PACE = 0.75 * (MEM32_LIMIT - MEM32_BASE)
#: Spent at any point regardless of pace, so small machines get their GPUs and VMDs.
_MEM32_FLOOR = 0.2 * (MEM32_LIMIT - MEM32_BASE)

ACS_FULL = AcsCap(cap=0x5F, ctrl=0x1D)  # SV TB RR CR UF DT capable; SV RR CR UF enabled
ACS_MF = AcsCap(cap=0x0C, ctrl=0x0C)  # a multifunction endpoint: RR CR
GEN = {1: "2.5 GT/s", 2: "5.0 GT/s", 3: "8.0 GT/s", 4: "16.0 GT/s", 5: "32.0 GT/s"}

Callback = Callable[[Topology], Mapping[Address, str]]


# ---- device models ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Model:
    name: str
    vendor: int
    device: int
    class_code: int
    pcie_type: PcieType
    bars: tuple[tuple[int, BarKind, int], ...] = ()
    subsystem: tuple[int, int] = (0, 0)
    revision: int = 0
    driver: str | None = None
    acs: AcsCap | None = None
    aer: bool = True
    ats: bool = False
    pri_pasid: bool = False
    dsn: bool = False
    eetlp: bool = False
    gen: int = 3
    width: int = 4
    reset: tuple[str, ...] = ()
    rom: int | None = None
    #: SR-IOV: (VF device id, TotalVFs, VF BARs (index, kind, per-VF size), VF driver)
    sriov: tuple[int, int, tuple[tuple[int, BarKind, int], ...], str | None] | None = None
    ari: bool = False


_E, _RP, _USP, _DSP = PcieType.ENDPOINT, PcieType.ROOT_PORT, PcieType.SWITCH_UPSTREAM, PcieType.SWITCH_DOWNSTREAM
_CONV, _RCIEP = PcieType.CONVENTIONAL, PcieType.RC_INTEGRATED_ENDPOINT
M32, M64, P64, IO = BarKind.MEM32, BarKind.MEM64, BarKind.PREF64, BarKind.IO

HOST_BRIDGE = _Model("host bridge", 0x8086, 0x09A2, 0x060000, _CONV, subsystem=(0x8086, 0x0000), revision=4)
LPC = _Model("LPC", 0x8086, 0xA1C1, 0x060100, _CONV, subsystem=(0x1028, 0x0767), revision=9, driver="lpc_ich")
SATA = _Model("SATA", 0x8086, 0xA182, 0x010601, _CONV, bars=((4, IO, 32), (5, M32, 2 * KiB)),
              subsystem=(0x1028, 0x0767), revision=9, driver="ahci")
SMBUS = _Model("SMBus", 0x8086, 0xA1A3, 0x0C0500, _CONV, bars=((0, M64, 256), (4, IO, 32)),
               subsystem=(0x1028, 0x0767), revision=9, driver="i801_smbus")
RCEC = _Model("RCEC", 0x8086, 0x0B23, 0x080700, PcieType.RC_EVENT_COLLECTOR, driver="pcieport")
DSA = _Model("DSA", 0x8086, 0x0B25, 0x088000, _RCIEP, bars=((0, P64, 64 * KiB), (2, P64, 128 * KiB)),
             driver="idxd", ats=True, pri_pasid=True, eetlp=True, reset=("flr",))
IAX = _Model("IAX", 0x8086, 0x0CFE, 0x088000, _RCIEP, bars=((0, P64, 64 * KiB), (2, P64, 128 * KiB)),
             driver="idxd", ats=True, pri_pasid=True, eetlp=True, reset=("flr",))
VMD = _Model("VMD", 0x8086, 0x28C0, 0x010400, _RCIEP, bars=((0, M64, 32 * MiB), (2, M32, 32 * MiB), (4, M64, MiB)),
             subsystem=(0x8086, 0x0000), revision=4, driver="vmd", aer=False)
RP_ACS = _Model("root port", 0x8086, 0x347A, 0x060400, _RP, subsystem=(0x8086, 0x0000), revision=4,
                driver="pcieport", acs=ACS_FULL, gen=4, width=16, eetlp=True)
RP_NOACS = _Model("root port (no ACS)", 0x1022, 0x1453, 0x060400, _RP, driver="pcieport", gen=3, width=8)
VMD_RP = _Model("VMD root port", 0x8086, 0x2030, 0x060400, _RP, subsystem=(0x8086, 0x0000), revision=4,
                driver="pcieport", acs=ACS_FULL, gen=3, width=4)
PEX_USP = _Model("PEX88096 upstream", 0x1000, 0xC010, 0x060400, _USP, bars=((0, M32, 256 * KiB),),
                 subsystem=(0x1000, 0xA064), revision=0xB0, driver="pcieport", gen=4, width=16)
PEX_DSP = _Model("PEX88096 downstream", 0x1000, 0xC010, 0x060400, _DSP, subsystem=(0x1000, 0xA064),
                 revision=0xB0, driver="pcieport", acs=ACS_FULL, gen=4, width=4)
ASM_USP = _Model("ASM2824 upstream", 0x1B21, 0x2824, 0x060400, _USP, driver="pcieport", gen=3, width=4)
ASM_DSP = _Model("ASM2824 downstream", 0x1B21, 0x2824, 0x060400, _DSP, driver="pcieport", gen=3, width=1)
NVME = _Model("NVMe", 0x144D, 0xA80A, 0x010802, _E, bars=((0, M64, 16 * KiB),), subsystem=(0x144D, 0xA812),
              driver="nvme", dsn=True, gen=4, width=4, reset=("flr", "bus"))
NVME_VMD = _Model("NVMe (VMD)", 0x8086, 0x0A54, 0x010802, _E, bars=((0, M64, 16 * KiB),),
                  subsystem=(0x8086, 0x4802), driver="nvme", dsn=True, gen=3, width=4, reset=("flr", "bus"))
BCM = _Model("BCM5719", 0x14E4, 0x1657, 0x020000, _E, bars=((0, P64, 64 * KiB), (2, P64, 64 * KiB), (4, P64, 64 * KiB)),
             subsystem=(0x1028, 0x1F5B), revision=1, driver="tg3", gen=2, width=4, reset=("bus",))
X710 = _Model("X710", 0x8086, 0x1572, 0x020000, _E, bars=((0, P64, 8 * MiB), (3, P64, 32 * KiB)),
              subsystem=(0x8086, 0x0007), revision=2, driver="i40e", acs=ACS_MF, ats=True, dsn=True, eetlp=False,
              gen=3, width=8, reset=("flr", "bus"), ari=True,
              sriov=(0x154C, 64, ((0, P64, 64 * KiB), (3, P64, 16 * KiB)), "iavf"))
E810 = _Model("E810", 0x8086, 0x159B, 0x020000, _E, bars=((0, P64, 32 * MiB), (3, P64, 64 * KiB)),
              subsystem=(0x8086, 0x0003), revision=2, driver="ice", acs=ACS_MF, ats=True, dsn=True, eetlp=True,
              gen=4, width=16, reset=("flr", "bus"), ari=True,
              sriov=(0x1889, 128, ((0, P64, 128 * KiB), (3, P64, 16 * KiB)), "iavf"))
CX6 = _Model("ConnectX-6 Dx", 0x15B3, 0x101D, 0x020000, _E, bars=((0, P64, 32 * MiB),), subsystem=(0x15B3, 0x0016),
             driver="mlx5_core", ats=True, dsn=True, eetlp=False, gen=4, width=16, reset=("flr", "bus"), ari=True,
             sriov=(0x101E, 127, ((0, P64, MiB),), "mlx5_core"))
GPU = _Model("GPU", 0x10DE, 0x2204, 0x030000, _E, bars=((0, M32, 16 * MiB), (1, P64, 256 * MiB), (3, P64, 32 * MiB), (5, IO, 128)),
             subsystem=(0x10DE, 0x1454), revision=0xA1, driver="nouveau", ats=True, pri_pasid=True, eetlp=True,
             gen=4, width=16, reset=("flr", "bus"), rom=512 * KiB)
GPU_AUDIO = _Model("GPU audio", 0x10DE, 0x1AEF, 0x040300, _E, bars=((0, M32, 16 * KiB),), subsystem=(0x10DE, 0x1454),
                   revision=0xA1, driver="snd_hda_intel", gen=4, width=16, reset=("flr", "bus"))
AST_BRIDGE = _Model("AST1150", 0x1A03, 0x1150, 0x060400, PcieType.PCIE_TO_PCI_BRIDGE, revision=4, gen=2, width=1)
AST_VGA = _Model("AST2500", 0x1A03, 0x2000, 0x030000, _CONV, bars=((0, M32, 16 * MiB), (1, M32, 128 * KiB), (2, IO, 128)),
                 subsystem=(0x1028, 0x0767), revision=0x41, driver="ast")
P2P_BRIDGE = _Model("PCIe-to-PCI bridge", 0x8086, 0x244E, 0x060401, PcieType.PCIE_TO_PCI_BRIDGE, revision=0xD0,
                    gen=1, width=1)
E1000 = _Model("82540EM", 0x8086, 0x100E, 0x020000, _CONV, bars=((0, M32, 128 * KiB), (1, IO, 64)),
               subsystem=(0x8086, 0x001E), revision=3, driver="e1000", reset=("bus",))
RTL8139 = _Model("RTL8139", 0x10EC, 0x8139, 0x020000, _CONV, bars=((0, IO, 256), (1, M32, 256)),
                 subsystem=(0x10EC, 0x8139), revision=0x20, driver="8139too")


# ---- the builder's tree ---------------------------------------------------------------------------
@dataclass(eq=False)
class _N:
    """One function while the machine is being built."""

    m: _Model
    dev: int = 0
    fn: int = 0
    children: list["_N"] = field(default_factory=list)
    #: (slot number, hot-plug, surprise) for a port with a slot
    slot: tuple[int, bool, bool] | None = None
    hp_buses: int = 0
    hp_mem: int = 0
    hp_pref: int = 0
    bars: tuple[tuple[int, BarKind, int], ...] = ()
    num_vfs: int = 0
    vf_offset: int = 0
    vf_driver: str | None = None
    vmd: "_RC | None" = None
    dsn: str | None = None
    #: RCEC: the device numbers of the RCiEPs it collects errors for
    rcec_bitmap: int | None = None
    # filled in by numbering and resource assignment
    addr: Address | None = None
    sec: int = 0
    sub: int = 0
    vfs: list[Address] = field(default_factory=list)
    starts: dict[tuple[str, int], int] = field(default_factory=dict)
    win: dict[str, tuple[int, int]] = field(default_factory=dict)
    layout: dict[str, tuple[list[tuple[int, int, "_N", str, int]], int, int]] = field(default_factory=dict)

    @property
    def bridge(self) -> bool:
        return self.m.class_code >> 8 == 0x0604

    @property
    def devfn(self) -> int:
        return (self.dev << 3) | self.fn


@dataclass(eq=False)
class _RC:
    """A root bus: a host bridge of a domain, or a VMD domain's root bus."""

    domain: int
    root_bus: int
    bus_end: int
    numa: int
    io: bool = False
    owner: _N | None = None
    nodes: list[_N] = field(default_factory=list)
    buses_used: int = 0
    rp_dev: int = 1
    rp_fn: int = 0
    rp_per_dev: int = 1
    top_dev: int = 31
    hb_windows: tuple[Window, ...] | None = None

    @property
    def buses_free(self) -> int:
        return self.bus_end - self.root_bus - self.buses_used

    def take_rp_slot(self) -> tuple[int, int] | None:
        if self.rp_dev >= self.top_dev:
            return None
        pos = (self.rp_dev, self.rp_fn)
        self.rp_fn += 1
        if self.rp_fn >= self.rp_per_dev:
            self.rp_dev, self.rp_fn = self.rp_dev + 1, 0
        return pos

    def take_dev(self) -> int | None:
        limit = self.rp_dev + (1 if self.rp_fn else 0)
        if self.top_dev < limit or self.top_dev < 1:
            return None
        d = self.top_dev
        self.top_dev -= 1
        return d


def _vf_bus_span(n: _N) -> int:
    """Buses past a PF's own that its VFs' routing IDs reach (for TotalVFs, as the kernel reserves)."""
    if n.m.sriov is None:
        return 0
    total = n.m.sriov[1]
    last = n.devfn + n.vf_offset + (total - 1)
    return last >> 8


def _bus_need(n: _N) -> int:
    """Bus numbers a bridge consumes: its secondary bus, VF buses there, its bridges', reserve."""
    if not n.bridge:
        return 0
    extra = max((_vf_bus_span(c) for c in n.children), default=0)
    return 1 + extra + sum(_bus_need(c) for c in n.children) + n.hp_buses


# ---- the generator ------------------------------------------------------------------------------
class _Gen:
    def __init__(self, functions: int, seed: int) -> None:
        self.total = functions
        self.left = functions
        self.rng = random.Random(f"pci-explorer synthetic {seed}")
        self.rcs: list[_RC] = []
        self.vmd_rcs: list[_RC] = []
        self.domain = -1
        self.domain_rcs: list[tuple[int, int]] = []
        self.slot_no = 0
        self.mem32_spent = 0
        self.io_left = (IO_LIMIT - IO_FIRST) // (4 * KiB) - 1  # 4K windows; the first page is the chipset's
        self.serial = 0

    # ---- budgets ---------------------------------------------------------------------------
    def mem32_ok(self, cost: int, fns: int) -> bool:
        if cost == 0:
            return True
        done = self.total - self.left + fns
        allowed = max(_MEM32_PACE * done / max(self.total, 1), _MEM32_FLOOR)
        return self.mem32_spent + cost <= min(allowed, _MEM32_PACE)

    def new_dsn(self) -> str:
        self.serial += 1
        v = (0x00A0C9 << 40) | (self.rng.getrandbits(24) << 16) | (self.serial & 0xFFFF)
        return "-".join(f"{(v >> (8 * i)) & 0xFF:02x}" for i in range(7, -1, -1))

    def node(self, m: _Model, **kw: object) -> _N:
        self.left -= 1
        n = _N(m, **kw)  # type: ignore[arg-type]
        n.bars = m.bars
        if m.dsn:
            n.dsn = self.new_dsn()
        return n

    # ---- root complexes --------------------------------------------------------------------
    def open_rc(self) -> _RC:
        if not self.domain_rcs:
            self.domain += 1
            count = 2 if self.domain == 0 else self.rng.choice((1, 1, 2, 4))
            span = 256 // count
            self.domain_rcs = [(k * span, (k + 1) * span - 1) for k in range(count)]
        start, end = self.domain_rcs.pop(0)
        rc = _RC(self.domain, start, end, numa=len(self.rcs) % 2, io=not self.rcs)
        rc.rp_per_dev = self.rng.choice((1, 1, 2, 4, 8))
        self.rcs.append(rc)
        self.mem32_spent += 2 * MiB
        rc.nodes.append(self.node(HOST_BRIDGE, dev=0, fn=0))
        return rc

    def build(self) -> None:
        first = True
        while self.left > 0:
            rc = self.open_rc()
            if first:
                self.showcase(rc)
                first = False
            self.fill(rc)

    def fill(self, rc: _RC) -> None:
        units = (
            (self.u_nvme, 20), (self.u_nic_mf, 12), (self.u_switch, 10), (self.u_sriov, 30), (self.u_p2p, 3),
            (self.u_gpu, 3), (self.u_empty_hp, 6), (self.u_vmd, 1), (self.u_rciep_group, 1),
        )
        funcs = [u for u, _ in units]
        weights = [w for _, w in units]
        stalls = 0
        while self.left > 0 and stalls < 24:
            unit = self.rng.choices(funcs, weights)[0]
            if unit(rc, self.left):
                stalls = 0
            else:
                stalls += 1
        # The last few functions: whatever fits here (else the next root bus takes them).
        while 0 < self.left <= 4 and (self.u_sriov(rc, self.left) or self.u_empty_rp(rc) or self.u_rciep(rc)):
            pass

    def showcase(self, rc: _RC) -> None:
        """The first root bus gets one of everything (as far as the count allows)."""
        self.u_chipset(rc)
        self.u_rciep_group(rc, self.left)
        self.u_vmd(rc, self.left, force=True)
        self.u_nvme(rc, self.left, acs=True, hotplug=True)
        self.u_nic_mf(rc, self.left, acs=False)
        self.u_switch(rc, self.left, model=(PEX_USP, PEX_DSP))
        self.u_sriov(rc, self.left, model=E810, vfs=(48, 128))  # PF1's VFs reach the next bus
        self.u_p2p(rc, self.left, ast=True)
        self.u_gpu(rc, self.left)
        self.u_switch(rc, self.left, model=(ASM_USP, ASM_DSP))
        self.u_empty_hp(rc, self.left)
        self.u_sriov(rc, self.left, model=X710)
        self.u_p2p(rc, self.left)

    # ---- pieces ----------------------------------------------------------------------------
    def root_port(self, rc: _RC, acs: bool | None = None, hotplug: bool | None = None) -> _N | None:
        pos = rc.take_rp_slot()
        if pos is None:
            return None
        if acs is None:
            acs = self.rng.random() < 0.8
        rp = self.node(RP_ACS if acs else RP_NOACS, dev=pos[0], fn=pos[1])
        slotted = hotplug if hotplug is not None else self.rng.random() < 0.6
        if slotted:
            self.slot_no += 1
            hp = hotplug if hotplug is not None else self.rng.random() < 0.7
            rp.slot = (self.slot_no, hp, hp and self.rng.random() < 0.5)
        rc.nodes.append(rp)
        return rp

    def place(self, rc: _RC, rp: _N, mem32: int) -> None:
        rc.buses_used += _bus_need(rp)
        self.mem32_spent += mem32

    def can(self, rc: _RC, fns: int, left: int, buses: int, mem32: int) -> bool:
        return fns <= left and buses <= rc.buses_free and rc.rp_dev < rc.top_dev and self.mem32_ok(mem32, fns)

    def u_chipset(self, rc: _RC) -> bool:
        dev = rc.take_dev()
        if dev is None:
            return False
        for fn, m in enumerate((LPC, SATA, SMBUS)):
            if self.left <= 0:
                break
            rc.nodes.append(self.node(m, dev=dev, fn=fn))
        return True

    def u_rciep_group(self, rc: _RC, left: int) -> bool:
        if left < 3 or rc.top_dev - rc.rp_dev < 3 or any(n.m is RCEC for n in rc.nodes):
            return False
        devs = []
        for m in (DSA, IAX):
            d = rc.take_dev()
            if d is None:
                return bool(devs)
            rc.nodes.append(self.node(m, dev=d, fn=0))
            devs.append(d)
        d = rc.take_dev()
        if d is not None and self.left > 0:
            rc.nodes.append(self.node(RCEC, dev=d, fn=0, rcec_bitmap=sum(1 << x for x in devs)))
        return True

    def u_rciep(self, rc: _RC) -> bool:
        d = rc.take_dev()
        if d is None or self.left <= 0:
            return False
        rc.nodes.append(self.node(DSA, dev=d, fn=0))
        return True

    def u_empty_rp(self, rc: _RC) -> bool:
        if not self.can(rc, 1, self.left, 1, 0):
            return False
        rp = self.root_port(rc, hotplug=False)
        if rp is None:
            return False
        self.place(rc, rp, 0)
        return True

    def u_nvme(self, rc: _RC, left: int, acs: bool | None = None, hotplug: bool | None = None) -> bool:
        if not self.can(rc, 2, left, 1, MiB):
            return False
        rp = self.root_port(rc, acs, hotplug)
        if rp is None:
            return False
        rp.children.append(self.node(NVME))
        self.place(rc, rp, MiB)
        return True

    def u_nic_mf(self, rc: _RC, left: int, acs: bool | None = None) -> bool:
        nf = min(self.rng.choice((2, 4)), left - 1)
        if nf < 1 or not self.can(rc, 1 + nf, left, 1, 0):
            return False
        rp = self.root_port(rc, acs, hotplug=False)
        if rp is None:
            return False
        for f in range(nf):
            rp.children.append(self.node(BCM, fn=f))
        self.place(rc, rp, 0)
        return True

    def u_switch(self, rc: _RC, left: int, model: tuple[_Model, _Model] | None = None) -> bool:
        usp_m, dsp_m = model or self.rng.choice(((PEX_USP, PEX_DSP), (ASM_USP, ASM_DSP)))
        k = min(self.rng.randint(3, 8), left - 2)
        if k < 1:
            return False
        # Plan the downstream ports: an endpoint each while functions last, one empty hot-plug port.
        plan: list[str] = []
        fns = 2 + k
        for i in range(k):
            if i == k - 1 and k >= 3:
                plan.append("empty")
                continue
            choice = self.rng.choice(("nvme", "nvme", "nic", "nic2"))
            need = {"nvme": 1, "nic": 1, "nic2": 2}[choice]
            if fns + need > left:
                plan.append("empty")
                continue
            plan.append(choice)
            fns += need
        mem32 = (MiB if usp_m.bars else 0) + MiB + sum(MiB if p == "nvme" else 2 * MiB if p == "empty" else 0 for p in plan)
        buses = 2 + k + plan.count("empty")
        if not self.can(rc, fns, left, buses, mem32):
            return False
        rp = self.root_port(rc)
        if rp is None:
            return False
        usp = self.node(usp_m)
        rp.children.append(usp)
        for i, p in enumerate(plan):
            dsp = self.node(dsp_m, dev=i)
            self.slot_no += 1
            dsp.slot = (self.slot_no, True, p == "empty")
            usp.children.append(dsp)
            if p == "nvme":
                dsp.children.append(self.node(NVME))
            elif p in ("nic", "nic2"):
                for f in range(1 if p == "nic" else 2):
                    dsp.children.append(self.node(BCM, fn=f))
            else:
                dsp.hp_buses, dsp.hp_mem, dsp.hp_pref = 1, 2 * MiB, 2 * MiB
        self.place(rc, rp, mem32)
        return True

    def u_sriov(self, rc: _RC, left: int, model: _Model | None = None, vfs: tuple[int, int] | None = None) -> bool:
        m = model or self.rng.choice((X710, E810, E810, CX6))
        assert m.sriov is not None
        total = m.sriov[1]
        if left < 2:
            return False
        pfs = min(2, left - 1)
        if vfs is not None:  # per PF
            want = [min(total, v) for v in vfs[:pfs]]
        else:  # what people enable: none, a few, a power of two, or all of them
            want = [min(total, self.rng.choice((0, 4, 8, 8, 16, 16, 32, 64, total))) for _ in range(pfs)]
        room = left - 1 - pfs
        got = []
        for w in want:
            take = min(w, room)
            got.append(take)
            room -= take
        fns = 1 + pfs + sum(got)
        probe = [_N(m, fn=p, vf_offset=pfs + p * total - p) for p in range(pfs)]
        buses = 1 + max(_vf_bus_span(p) for p in probe)
        if not self.can(rc, fns, left, buses, 0):
            return False
        rp = self.root_port(rc, acs=True, hotplug=self.rng.random() < 0.3)
        if rp is None:
            return False
        autoprobe = self.rng.random() < 0.5
        for p in range(pfs):
            pf = self.node(m, fn=p, vf_offset=pfs + p * total - p, num_vfs=got[p])
            pf.vf_driver = m.sriov[3] if autoprobe else None
            self.left -= got[p]
            rp.children.append(pf)
        self.place(rc, rp, 0)
        return True

    def u_p2p(self, rc: _RC, left: int, ast: bool = False) -> bool:
        io = rc.io and self.io_left > 0
        if ast:
            devs = [AST_VGA]
        else:
            devs = [self.rng.choice((E1000, RTL8139)) for _ in range(self.rng.randint(1, 3))]
        devs = devs[: max(0, left - 2)]
        if not devs:
            return False
        mem32 = 32 * MiB if ast else 2 * MiB
        if not self.can(rc, 2 + len(devs), left, 2, mem32):
            return False
        rp = self.root_port(rc, hotplug=False)
        if rp is None:
            return False
        br = self.node(AST_BRIDGE if ast else P2P_BRIDGE)
        rp.children.append(br)
        for i, m in enumerate(devs):
            d = self.node(m, dev=0 if ast else i + 1)
            if not io:
                d.bars = tuple(b for b in m.bars if b[1] is not IO)
            br.children.append(d)
        if io and any(b[1] is IO for d in br.children for b in d.bars):
            self.io_left -= 1  # one 4K window (the root port's, holding the bridge's)
        self.place(rc, rp, mem32)
        return True

    def u_gpu(self, rc: _RC, left: int) -> bool:
        if not self.can(rc, 2, left, 1, 32 * MiB):
            return False
        rp = self.root_port(rc, acs=True, hotplug=False)
        if rp is None:
            return False
        io = rc.io and self.io_left > 0
        g = self.node(GPU)
        if not io:
            g.bars = tuple(b for b in GPU.bars if b[1] is not IO)
        else:
            self.io_left -= 1
        rp.children.append(g)
        if self.left > 0 and left >= 3:
            rp.children.append(self.node(GPU_AUDIO, fn=1))
        self.place(rc, rp, 32 * MiB)
        return True

    def u_empty_hp(self, rc: _RC, left: int) -> bool:
        if not self.can(rc, 1, left, 2, 2 * MiB):
            return False
        rp = self.root_port(rc, acs=True, hotplug=True)
        if rp is None:
            return False
        rp.hp_buses, rp.hp_mem, rp.hp_pref = 1, 2 * MiB, 2 * MiB
        self.place(rc, rp, 2 * MiB)
        return True

    def u_vmd(self, rc: _RC, left: int, force: bool = False) -> bool:
        if left < 3 or (not force and len(self.vmd_rcs) >= 1 + self.total // 20000):
            return False
        if not self.mem32_ok(64 * MiB, 3):
            return False
        d = rc.take_dev()
        if d is None:
            return False
        vmd = self.node(VMD, dev=d, fn=0)
        rc.nodes.append(vmd)
        self.mem32_spent += 64 * MiB
        k = min(self.rng.randint(2, 6), (self.left) // 2)
        root = 0x80 if len(self.vmd_rcs) % 2 else 0x00
        dom = _RC(0x10000 + len(self.vmd_rcs), root, root + 31, numa=rc.numa, owner=vmd)
        vmd.vmd = dom
        self.vmd_rcs.append(dom)
        for i in range(k):
            rp = self.node(VMD_RP, dev=i, fn=0)
            self.slot_no += 1
            rp.slot = (self.slot_no, True, True)
            rp.children.append(self.node(NVME_VMD))
            dom.nodes.append(rp)
            dom.buses_used += 1
        return True


# ---- numbering, resources, functions ---------------------------------------------------------------
def _number(rc: _RC) -> None:
    nxt = rc.root_bus + 1

    def on_bus(bus: int, nodes: list[_N]) -> None:
        nonlocal nxt
        for n in nodes:
            n.addr = Address(rc.domain, bus, n.dev, n.fn)
        top = bus
        for n in nodes:
            if n.m.sriov is not None:
                base = (bus << 8) | n.devfn
                n.vfs = [Address.from_rid(rc.domain, (base + n.vf_offset + j) >> 8, (base + n.vf_offset + j) & 0xFF)
                         for j in range(n.num_vfs)]
                top = max(top, bus + _vf_bus_span(n))
        nxt = max(nxt, top + 1)
        for n in sorted((n for n in nodes if n.bridge), key=lambda n: n.devfn):
            n.sec = nxt
            nxt += 1
            on_bus(n.sec, n.children)
            nxt += n.hp_buses
            n.sub = nxt - 1

    on_bus(rc.root_bus, rc.nodes)
    if nxt - 1 > rc.bus_end:
        raise AssertionError(f"internal: buses of {rc.domain:04x}:{rc.root_bus:02x} overflow ({nxt - 1:#x})")


def _align(v: int, a: int) -> int:
    return (v + a - 1) // a * a


_GRAN = {"io": 4 * KiB, "mem": MiB, "pref": MiB, "m32": MiB, "m64": MiB}


def _items(n: _N, root: bool) -> list[tuple[str, int, int, str, int]]:
    """(window class, size, alignment, what, index) for everything ``n`` needs from its upstream."""
    out = []
    for idx, kind, size in n.bars:
        if kind is IO:
            cls = "io"
        elif kind.prefetchable and kind.is_64bit:
            cls = "m64" if root else "pref"
        elif root:
            cls = "m64" if kind.is_64bit else "m32"
        else:
            cls = "mem"
        out.append((cls, size, size, "bar", idx))
    if n.m.rom:
        out.append(("m32" if root else "mem", n.m.rom, n.m.rom, "rom", 6))
    if n.m.sriov is not None:
        total = n.m.sriov[1]
        for idx, kind, size in n.m.sriov[2]:
            out.append(("m64" if root else "pref", size * total, size, "iov", idx))
    if n.bridge:
        for cls, up in (("io", "io"), ("mem", "m32" if root else "mem"), ("pref", "m64" if root else "pref")):
            lay = n.layout.get(cls)
            if lay is not None:
                out.append((up, lay[1], lay[2], "win", {"io": 0, "mem": 1, "pref": 2}[cls]))
    return out


def _layout(entries: list[tuple[int, int, _N, str, int]], gran: int, reserve: int = 0) -> tuple[list, int, int] | None:
    """Place (size, align, node, what, index) entries sequentially, biggest alignment first."""
    if not entries and not reserve:
        return None
    entries = sorted(entries, key=lambda e: -e[1])
    placed = []
    off = 0
    align = gran
    for size, al, node, what, idx in entries:
        off = _align(off, al)
        placed.append((off, size, node, what, idx))
        off += size
        align = max(align, al)
    size = max(_align(max(off, 1), gran), reserve)
    return placed, size, align


def _size(n: _N) -> None:
    """Bottom-up: the windows every bridge below ``n`` (and ``n``) needs."""
    for c in n.children:
        _size(c)
    if not n.bridge:
        return
    by: dict[str, list] = {"io": [], "mem": [], "pref": []}
    for c in n.children:
        for cls, size, al, what, idx in _items(c, root=False):
            by[cls].append((size, al, c, what, idx))
    reserve = {"io": 0, "mem": n.hp_mem, "pref": n.hp_pref}
    for cls in ("io", "mem", "pref"):
        lay = _layout(by[cls], _GRAN[cls], reserve[cls])
        if lay is not None:
            n.layout[cls] = lay


def _assign(placed: list, base: int) -> None:
    """Top-down: give each placed entry its address and recurse into bridge windows."""
    for off, size, node, what, idx in placed:
        start = base + off
        if what == "win":
            cls = ("io", "mem", "pref")[idx]
            node.win[cls] = (start, start + node.layout[cls][1] - 1)
            _assign(node.layout[cls][0], start)
        else:
            node.starts[(what, idx)] = start


class _Cursor:
    def __init__(self) -> None:
        self.m32 = MEM32_BASE
        self.m64 = MEM64_BASE
        self.io = IO_FIRST


def _resources(rc: _RC, cur: _Cursor) -> None:
    for n in rc.nodes:
        _size(n)
    by: dict[str, list] = {"io": [], "m32": [], "m64": []}
    for n in rc.nodes:
        for cls, size, al, what, idx in _items(n, root=True):
            by[cls].append((size, al, n, what, idx))
    windows: list[Window] = []
    if rc.owner is not None:  # a VMD domain: everything inside the VMD's 32-bit BAR2
        lay = _layout(by["m32"], MiB)
        if by["io"] or by["m64"]:
            raise AssertionError("internal: a VMD domain with I/O or 64-bit resources")
        if lay is not None:
            base = rc.owner.starts[("bar", 2)]
            if lay[1] > 32 * MiB:
                raise AssertionError("internal: VMD domain does not fit BAR2")
            _assign(lay[0], base)
        rc.hb_windows = None
        return
    if rc.io:
        lay = _layout(by["io"], 4 * KiB)
        if lay is not None:
            base = _align(cur.io, lay[2])
            _assign(lay[0], base)
            cur.io = base + lay[1]
            if cur.io > IO_LIMIT:
                raise AssertionError("internal: I/O space exhausted")
        windows += [Window(WindowKind.IO, 0x0000, 0x0CF7), Window(WindowKind.IO, 0x0D00, 0xFFFF)]
    elif by["io"]:
        raise AssertionError("internal: I/O resources on a root bus without I/O windows")
    lay = _layout(by["m32"], MiB, MiB)
    assert lay is not None
    base = _align(cur.m32, lay[2])
    _assign(lay[0], base)
    windows.append(Window(WindowKind.MEM, base, base + lay[1] - 1))
    cur.m32 = base + lay[1]
    if cur.m32 > MEM32_LIMIT:
        raise AssertionError("internal: 32-bit MMIO space exhausted")
    lay = _layout(by["m64"], GiB, GiB)
    assert lay is not None
    base = _align(cur.m64, max(lay[2], GiB))
    _assign(lay[0], base)
    size = _align(lay[1], GiB)
    windows.append(Window(WindowKind.MEM, base, base + size - 1))
    cur.m64 = base + size
    rc.hb_windows = tuple(windows)


def _link(m: _Model, up: _Model | None, empty: bool = False) -> LinkInfo | None:
    if m.pcie_type in (_CONV, _RCIEP, PcieType.RC_EVENT_COLLECTOR):
        return None
    gen, width = m.gen, m.width
    if up is not None and up.pcie_type in (_RP, _DSP):
        gen, width = min(gen, up.gen), min(width, up.width)
    if empty:
        return LinkInfo(GEN[1], 0, GEN[m.gen], m.width)
    return LinkInfo(GEN[gen], width, GEN[m.gen], m.width)


def _caps(n: _N) -> Capabilities:
    m = n.m
    if m.pcie_type is _CONV:
        return Capabilities(acs=ABSENT, ats=ABSENT, pri=ABSENT, pasid=ABSENT, sriov=ABSENT, ari=ABSENT, aer=ABSENT,
                            rcec=ABSENT, dsn=ABSENT, eetlp_prefix=False, ari_forwarding=False)
    sr: object = ABSENT
    if m.sriov is not None:
        vf_dev, total, _, _ = m.sriov
        sr = SriovCap(initial_vfs=total, total_vfs=total, num_vfs=n.num_vfs, vf_offset=n.vf_offset, vf_stride=1,
                      vf_device=vf_dev, ari_hierarchy=True, enabled=n.num_vfs > 0, driver_total_vfs=total,
                      drivers_autoprobe=n.vf_driver is not None)
    ari: object = ABSENT
    if m.ari:
        ari = AriCap(next_function=(n.fn + 1) if n.fn == 0 and m.sriov is not None else 0)
    return Capabilities(
        acs=m.acs if m.acs is not None else ABSENT,
        ats=AtsCap(queue_depth=32, enabled=False, stu=0) if m.ats else ABSENT,
        pri=PriCap(enabled=False, capacity=0x200, allocation=0) if m.pri_pasid else ABSENT,
        pasid=PasidCap(exec_supported=False, priv_supported=True, max_width=20, enabled=False) if m.pri_pasid else ABSENT,
        sriov=sr,  # type: ignore[arg-type]
        ari=ari,  # type: ignore[arg-type]
        aer=AerCap(version=2) if m.aer else ABSENT,
        rcec=RcecCap(bitmap=n.rcec_bitmap) if n.rcec_bitmap is not None else ABSENT,
        dsn=n.dsn if n.dsn else ABSENT,
        eetlp_prefix=m.eetlp,
        ari_forwarding=m.pcie_type in (_RP, _DSP),
    )


class _Emit:
    """Turns the numbered, resourced tree into Functions."""

    def __init__(self) -> None:
        self.out: list[Function] = []
        self.slots: dict[tuple[int, int, int], str] = {}
        self.mf: dict[tuple[int, int, int], int] = {}

    def scan(self, rc: _RC) -> None:
        def walk(nodes: list[_N]) -> None:
            for n in nodes:
                a = n.addr
                assert a is not None
                self.mf[a.slot] = self.mf.get(a.slot, 0) + 1
                if n.slot is not None and n.bridge:
                    self.slots[(a.domain, n.sec, 0)] = str(n.slot[0])
                walk(n.children)

        walk(rc.nodes)

    def slot_of(self, a: Address, n: _N | None) -> object:
        phys = self.slots.get(a.slot)
        if n is not None and n.slot is not None:
            return SlotInfo(physical_slot=phys, number=n.slot[0], hotplug=n.slot[1], surprise=n.slot[2])
        if phys is not None:
            return SlotInfo(physical_slot=phys)
        return ABSENT

    def rc(self, rc: _RC) -> None:
        def walk(nodes: list[_N], parent: _N | None) -> None:
            for n in nodes:
                self.function(rc, n, parent)
                walk(n.children, n)

        walk(rc.nodes, None)

    def function(self, rc: _RC, n: _N, parent: _N | None) -> None:
        m, a = n.m, n.addr
        assert a is not None
        bars = tuple(Bar(idx, kind, n.starts[("bar", idx)], size) for idx, kind, size in n.bars)
        rom: object = ABSENT
        if m.rom:
            rom = Bar(6, BarKind.PREF32, n.starts[("rom", 6)], m.rom)
        vf_bars: tuple[Bar, ...] = ()
        if m.sriov is not None:
            total = m.sriov[1]
            vf_bars = tuple(Bar(idx, kind, n.starts[("iov", idx)], size, total_size=size * total)
                            for idx, kind, size in m.sriov[2])
        bridge: object = ABSENT
        if n.bridge:
            def win(cls: str, kind: WindowKind, is64: bool | None) -> object:
                w = n.win.get(cls)
                return Window(kind, w[0], w[1], is64) if w else ABSENT

            bridge = BridgeInfo(primary=a.bus, secondary=n.sec, subordinate=n.sub,
                                io_window=win("io", WindowKind.IO, None),  # type: ignore[arg-type]
                                mem_window=win("mem", WindowKind.MEM, False),  # type: ignore[arg-type]
                                pref_window=win("pref", WindowKind.PREF, True))  # type: ignore[arg-type]
        pcie = m.pcie_type is not _CONV
        empty_port = n.bridge and not n.children
        link = _link(m, parent.m if parent is not None else None, empty=empty_port and m.pcie_type in (_RP, _DSP))
        fn = Function(
            address=a,
            parent=parent.addr if parent is not None else None,
            vendor_id=m.vendor, device_id=m.device,
            subsystem_vendor_id=m.subsystem[0], subsystem_device_id=m.subsystem[1],
            class_code=m.class_code, revision=m.revision,
            header_type=1 if n.bridge else 0,
            multifunction=self.mf.get(a.slot, 1) > 1,
            pcie_type=m.pcie_type,
            config_size=4096 if pcie else 256,
            bars=bars, rom=rom, vf_bars=vf_bars,  # type: ignore[arg-type]
            bridge=bridge,  # type: ignore[arg-type]
            caps=_caps(n),
            slot=self.slot_of(a, n),  # type: ignore[arg-type]
            link=link,
            driver=m.driver if m.driver else ABSENT,
            driver_override=ABSENT,
            numa_node=rc.numa,
            virtfns=tuple(n.vfs),
            is_virtfn=False,
            boot_vga=m is AST_VGA,
            reset_methods=m.reset,
            removable=False,
            vmd_domain=n.vmd.domain if n.vmd is not None else None,
        )
        self.out.append(fn)
        if m.sriov is not None:
            self.vfs(rc, n, parent, fn)

    def vfs(self, rc: _RC, pf: _N, parent: _N | None, pf_fn: Function) -> None:
        m = pf.m
        assert m.sriov is not None
        vf_dev, total, vf_bar_spec, _ = m.sriov
        caps = Capabilities(acs=ABSENT, ats=AtsCap(queue_depth=32, enabled=False, stu=0) if m.ats else ABSENT,
                            pri=ABSENT, pasid=ABSENT, sriov=ABSENT, ari=AriCap(next_function=0) if m.ari else ABSENT,
                            aer=ABSENT, rcec=ABSENT, dsn=ABSENT, eetlp_prefix=m.eetlp, ari_forwarding=False)
        for j, va in enumerate(pf.vfs):
            bars = tuple(Bar(idx, kind, pf.starts[("iov", idx)] + j * size, size) for idx, kind, size in vf_bar_spec)
            self.out.append(Function(
                address=va, parent=pf_fn.parent,
                vendor_id=m.vendor, device_id=vf_dev,
                subsystem_vendor_id=m.subsystem[0], subsystem_device_id=m.subsystem[1],
                class_code=m.class_code, revision=m.revision, header_type=0, multifunction=False,
                pcie_type=PcieType.ENDPOINT, config_size=4096, bars=bars, rom=ABSENT, vf_bars=(),
                bridge=ABSENT, caps=caps, slot=self.slot_of(va, None),  # type: ignore[arg-type]
                link=pf_fn.link,
                driver=pf.vf_driver if pf.vf_driver else ABSENT, driver_override=ABSENT,
                numa_node=rc.numa, physfn=pf_fn.address, is_virtfn=True, boot_vga=False,
                reset_methods=("flr",), removable=False,
            ))


def generate(functions: int, seed: int = 0, *, label_groups: Callback | None = None) -> Topology:
    """A deterministic synthetic machine with exactly ``functions`` functions (see the module doc)."""
    if functions < 0:
        raise ValueError("functions must be >= 0")
    g = _Gen(functions, seed)
    g.build()
    cur = _Cursor()
    for rc in g.rcs + g.vmd_rcs:
        _number(rc)
    for rc in g.rcs:  # the VMD domains after their owners have their BARs
        _resources(rc, cur)
    for rc in g.vmd_rcs:
        _resources(rc, cur)
    emit = _Emit()
    for rc in g.rcs + g.vmd_rcs:
        emit.scan(rc)
    for rc in g.rcs + g.vmd_rcs:
        emit.rc(rc)
    hbs = [HostBridge(rc.domain, rc.root_bus, (rc.root_bus, rc.bus_end), rc.hb_windows,
                      rc.owner.addr if rc.owner is not None else None) for rc in g.rcs + g.vmd_rcs]
    source = SourceInfo(
        kind="synthetic",
        location=f"synthetic:{functions}:{seed}",
        description=f"synthetic machine: {functions} functions, seed {seed}",
        kernel_release=KERNEL_RELEASE,
        kernel_cmdline="intel_iommu=on",
    )
    topo = Topology.build(emit.out, hbs, source)
    if len(topo) != functions:
        raise AssertionError(f"internal: built {len(topo)} functions, wanted {functions}")
    if label_groups is not None:
        topo = _with_groups(topo, label_groups(topo))
    return topo


def _with_groups(topo: Topology, labels: Mapping[Address, str]) -> Topology:
    """Functions with groups from ``labels``, renumbered 0, 1, ... by each group's first member."""
    from dataclasses import replace

    renum: dict[str, str] = {}
    fns = []
    for a, fn in topo.functions.items():
        lab = labels.get(a)
        if lab is None:
            fns.append(replace(fn, iommu_group=ABSENT))
            continue
        if lab not in renum:
            renum[lab] = str(len(renum))
        fns.append(replace(fn, iommu_group=renum[lab]))
    types = tuple(sorted(((v, "DMA") for v in renum.values()), key=lambda kv: kv[0]))
    source = replace(topo.source, iommu_present=bool(renum), group_types=types)
    return Topology.build(fns, topo.host_bridges, source)
