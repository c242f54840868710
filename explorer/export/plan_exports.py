"""Renderers for validated plans: shell, undo, libvirt, proxmox, driverctl, mdevctl, qemu, cmdline, json.

``export(plan, topology, target, item=None) -> str`` validates first and raises
``PlanHasErrors`` while any error remains (there is no force). ``export_files`` gives
every document a target makes (libvirt: one per VM; mdevctl: one per mdev) as
``{file name: text}``.

Every string that came from a source or a plan is data: ``shlex.quote`` for the shell,
XML escaping for XML, ``json.dumps`` for JSON.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Callable
from xml.sax.saxutils import escape, quoteattr

from ..model import ABSENT, Address, Topology
from ..model.safe_text import one_line
from ..plan import Plan, check, has_errors
from ..plan.actions import Assign, AssignMdev, Bind, HotAdd, HotRemove, KernelParam, Mdev, MdevRemove, Sriov, Trust, Unbind
from ..plan.apply import Simulation, merged_cmdline, simulate
from ..plan.rules import ERROR, Finding
from ..plan.validate import findings_json, topology_index
from .envelope import envelope

TARGETS = ("shell", "undo", "libvirt", "proxmox", "driverctl", "mdevctl", "qemu", "cmdline", "json")
TOOL = "pci-explorer"


class ExportError(ValueError):
    """An export that cannot be made; str() is one line."""


class PlanHasErrors(ExportError):
    """The plan still has errors: exports refuse it."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = [f for f in findings if f.severity == ERROR]
        codes = ", ".join(dict.fromkeys(f.code for f in self.findings))
        first = self.findings[0].message if self.findings else ""
        super().__init__(f"the plan has {len(self.findings)} error(s) ({codes}); nothing exported. First: {first}")


@dataclass
class _Ctx:
    plan: Plan
    topology: Topology
    sim: Simulation
    findings: list[Finding]
    _setters: dict[Address, list[int]] | None = None


def _prepare(plan: Plan, topology: Topology) -> _Ctx:
    findings = check(plan, topology)
    if has_errors(findings):
        raise PlanHasErrors(findings)
    sim = simulate(topology, plan, topology_index(topology))
    return _Ctx(plan, topology, sim, findings)


def _q(value: object) -> str:
    return shlex.quote(str(value))


def _comment(text: str) -> str:
    """A one-line shell comment: no newlines can escape it, no control character reaches a terminal."""
    return "# " + one_line(" ".join(str(text).split()))


# ---- what the plan does, in order ----------------------------------------------------------------


def _bind_targets(ctx: _Ctx, index: int) -> list[Address]:
    """Devices whose driver action ``index`` set (group binds expanded), in address order."""
    return sorted(a for a, i in _driver_setters(ctx).items() if index in i)


def _driver_setters(ctx: _Ctx) -> dict[Address, list[int]]:
    if ctx._setters is not None:
        return ctx._setters
    out: dict[Address, list[int]] = {}
    # Re-simulate action by action to know every action that touched a driver (not just the last).
    from ..plan.apply import Simulation as _S, apply_action

    sim = _S(ctx.sim.index, ctx.plan)
    for i, action in enumerate(ctx.plan.actions):
        before = dict(sim.driver_action)
        apply_action(sim, action, i)
        for a, j in sim.driver_action.items():
            if j == i and before.get(a) != i:
                out.setdefault(a, []).append(i)
    ctx._setters = out
    return out


def _final_driver(ctx: _Ctx, addr: Address) -> object:
    fn = ctx.sim.get(addr)
    return fn.driver if fn is not None else None


def _recorded_driver(ctx: _Ctx, addr: Address) -> str:
    """The driver at plan time: a name, '' for none, '?' when unknown or the device is new."""
    rec = ctx.plan.recorded(addr)
    if rec is None or rec.driver is None:
        return "?"
    return "" if rec.driver is ABSENT else str(rec.driver)


def _preflight_devices(ctx: _Ctx) -> list[Address]:
    """Every existing device whose identity or driver the steps depend on."""
    sim = ctx.sim
    out: set[Address] = set()
    for a in _driver_setters(ctx):
        out.add(a)
    for a in sim.assignments:
        out.add(a)
        label = sim.group_of(a)
        if label is not None:
            out.update(sim.index.groups.get(label, ()))
    for a in sim.sriov:
        out.add(a)
    for m in sim.mdevs:
        out.add(m.parent)
    for a in _existing_mdev_parents(ctx):
        out.add(a)
    for _, dev, sub in sim.hot_removed:
        out.update(sub)
    return sorted(a for a in out if a in ctx.topology.functions and ctx.plan.recorded(a) is not None)


def _existing_mdev(ctx: _Ctx, uuid: str):  # noqa: ANN202 - MdevInstance | None
    info = ctx.topology.mdev
    return info.instance(uuid) if info is not None else None


def _existing_mdev_parents(ctx: _Ctx) -> set[Address]:
    out = set()
    for u in [u for u, _ in ctx.sim.mdev_removed] + [u for u, _vm, _i in ctx.sim.mdev_assigned]:
        i = _existing_mdev(ctx, u)
        if i is not None:
            try:
                out.add(Address.parse(i.parent))
            except ValueError:
                continue
    return out


def _device_api(ctx: _Ctx, uuid: str, parent: object = None, mtype: str | None = None) -> str:
    """The mdev's VFIO device API (its type's ``device_api``): vfio-pci unless the source says otherwise."""
    info = ctx.topology.mdev
    if info is None:
        return "vfio-pci"
    i = info.instance(uuid)
    p = info.parent(i.parent if i else str(parent))
    mt = p.type(i.type if i and i.type else (mtype or "")) if p is not None else None
    api = mt.device_api if mt is not None and mt.device_api else "vfio-pci"
    return api if api in ("vfio-pci", "vfio-ccw", "vfio-ap") else "vfio-pci"


# ---- shell ------------------------------------------------------------------------------------------

_SHELL_PRELUDE = r'''set -eu

SYSFS_ROOT="${SYSFS_ROOT:-/sys}"
PCI="$SYSFS_ROOT/bus/pci"
DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        *) printf 'usage: %s [--dry-run]\n' "$0" >&2; exit 2 ;;
    esac
done

say() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# write FILE VALUE: the only function that changes the machine.
write() {
    if [ "$DRY_RUN" = 1 ]; then
        printf 'write %s <- %s\n' "$1" "$2"
    else
        printf '%s\n' "$2" > "$1"
    fi
}

attr() {
    if [ -r "$PCI/devices/$1/$2" ]; then cat "$PCI/devices/$1/$2"; fi
}

driver_of() {
    if [ -L "$PCI/devices/$1/driver" ]; then basename "$(readlink "$PCI/devices/$1/driver")"; fi
}

# same BDF ATTRIBUTE WANT: stop unless the attribute reads WANT ('?' = not known at plan time).
same() {
    if [ "$3" != "?" ]; then
        got=$(attr "$1" "$2")
        [ "$got" = "$3" ] || die "preflight: $1 $2 is '$got', the plan was made with '$3'"
    fi
}

# expect BDF VENDOR DEVICE SUBVENDOR SUBDEVICE CLASS DRIVER
expect() {
    [ -e "$PCI/devices/$1" ] || die "preflight: $1 is not on this machine"
    same "$1" vendor "$2"
    same "$1" device "$3"
    same "$1" subsystem_vendor "$4"
    same "$1" subsystem_device "$5"
    same "$1" class "$6"
    if [ "$7" != "?" ]; then
        got=$(driver_of "$1")
        [ "$got" = "$7" ] || die "preflight: $1 has driver '${got:-none}', the plan was made with '${7:-none}'"
    fi
}

need_driver() {
    if [ -d "$PCI/drivers/$1" ]; then return 0; fi
    if [ "$DRY_RUN" = 1 ]; then say "would load driver $1 (modprobe)"; return 0; fi
    [ "$SYSFS_ROOT" = /sys ] || die "driver $1 is not loaded under $SYSFS_ROOT"
    modprobe "$1" || die "cannot load driver $1"
}

wait_for() {
    if [ "$DRY_RUN" = 1 ]; then return 0; fi
    n=0
    while [ ! -e "$PCI/devices/$1" ]; do
        n=$((n + 1))
        [ "$n" -le 50 ] || die "$1 did not appear"
        sleep 0.1
    done
}

bind_to() {
    cur=$(driver_of "$1")
    if [ "$cur" = "$2" ]; then say "$1: already on $2"; return 0; fi
    write "$PCI/devices/$1/driver_override" "$2"
    if [ -n "$cur" ]; then write "$PCI/devices/$1/driver/unbind" "$1"; fi
    write "$PCI/drivers_probe" "$1"
}

unbind_dev() {
    cur=$(driver_of "$1")
    write "$PCI/devices/$1/driver_override" none
    if [ -n "$cur" ]; then write "$PCI/devices/$1/driver/unbind" "$1"; else say "$1: already unbound"; fi
}

set_numvfs() {
    cur=$(attr "$1" sriov_numvfs)
    if [ "$cur" = "$2" ]; then say "$1: already $2 VFs"; return 0; fi
    if [ -n "$cur" ] && [ "$cur" != 0 ] && [ "$2" != 0 ]; then write "$PCI/devices/$1/sriov_numvfs" 0; fi
    write "$PCI/devices/$1/sriov_numvfs" "$2"
}

check_vf() {
    if [ "$DRY_RUN" = 1 ]; then return 0; fi
    link="$PCI/devices/$1/virtfn$2"
    [ -L "$link" ] || die "$1 has no VF $2"
    got=$(basename "$(readlink "$link")")
    [ "$got" = "$3" ] || die "VF $2 of $1 is $got, the plan expects $3"
}

check_mdev_type() {
    t="$PCI/devices/$1/mdev_supported_types/$2"
    [ -d "$t" ] || die "preflight: $1 has no mdev type $2"
    avail=$(cat "$t/available_instances")
    [ "$avail" -ge "$3" ] || die "preflight: $1 type $2 has $avail available instances, the plan needs $3"
}

create_mdev() {
    if [ -e "$SYSFS_ROOT/bus/mdev/devices/$3" ]; then say "mdev $3: already there"; return 0; fi
    write "$PCI/devices/$1/mdev_supported_types/$2/create" "$3"
}

remove_mdev() {
    if [ -e "$SYSFS_ROOT/bus/mdev/devices/$1" ]; then write "$SYSFS_ROOT/bus/mdev/devices/$1/remove" 1; else say "mdev $1: already gone"; fi
}

# expect_mdev UUID PARENT TYPE: the mdev exists, on that parent, of that type.
expect_mdev() {
    m="$SYSFS_ROOT/bus/mdev/devices/$1"
    [ -e "$m" ] || die "preflight: mdev $1 is not on this machine"
    got=$(basename "$(dirname "$(readlink -f "$m")")")
    [ "$got" = "$2" ] || die "preflight: mdev $1 is on '$got', the plan was made with '$2'"
    if [ "$3" != "?" ]; then
        got=$(basename "$(readlink "$m/mdev_type")")
        [ "$got" = "$3" ] || die "preflight: mdev $1 is of type '$got', the plan was made with '$3'"
    fi
}

remove_dev() {
    if [ -e "$PCI/devices/$1" ]; then write "$PCI/devices/$1/remove" 1; else say "$1: already removed"; fi
}

restore_driver() {
    cur=$(driver_of "$1")
    write "$PCI/devices/$1/driver_override" "$3"
    if [ "$cur" = "$2" ]; then say "$1: already on ${2:-no driver}"; return 0; fi
    if [ -n "$cur" ]; then write "$PCI/devices/$1/driver/unbind" "$1"; fi
    if [ -n "$2" ]; then write "$PCI/drivers/$2/bind" "$1"; fi
}
'''


def _sysfs_hex(value: int | None, width: int) -> str:
    return "?" if value is None else f"0x{value:0{width}x}"


def _expect_line(ctx: _Ctx, addr: Address) -> str:
    rec = ctx.plan.recorded(addr)
    vd = rec.vendor_device if rec else None
    vendor = device = "?"
    if vd:
        v, d = vd.split(":")
        vendor, device = f"0x{v}", f"0x{d}"
    sub_v = sub_d = "?"
    if rec and rec.subsystem:
        sv, sd = rec.subsystem.split(":")
        sub_v, sub_d = f"0x{sv}", f"0x{sd}"
    cls = f"0x{rec.class_code}" if rec and rec.class_code else "?"
    return "expect " + " ".join(_q(x) for x in (addr, vendor, device, sub_v, sub_d, cls, _recorded_driver(ctx, addr)))


def _header(ctx: _Ctx, what: str) -> list[str]:
    src = ctx.plan.source
    lines = [
        "#!/bin/bash",
        _comment(f"{TOOL}: {what}"),
        _comment(f"plan for {src.spec}" + (f" ({src.location})" if src.location and src.location != src.spec else "")),
        _comment("run as root: bash THIS-FILE [--dry-run]; SYSFS_ROOT (default /sys) selects the sysfs tree"),
    ]
    warn = [f for f in ctx.findings if f.severity == "warning"]
    for f in warn:
        lines.append(_comment(f"warning {f.code}: {f.message}"))
    return lines


def render_shell(ctx: _Ctx) -> str:
    sim = ctx.sim
    out = _header(ctx, "apply the plan (preflight first: nothing is touched unless every device matches)")
    out.append(_SHELL_PRELUDE)
    out.append("# ---- preflight: every device the plan touches is the one it was made for")
    for a in _preflight_devices(ctx):
        out.append(_expect_line(ctx, a))
    for pf, (_n, _drv, _i, _vfs) in sim.sriov.items():
        rec = ctx.plan.recorded(pf)
        if rec is not None and rec.num_vfs is not None:
            out.append(f"same {_q(pf)} sriov_numvfs {_q(rec.num_vfs)}")
    per_type: dict[tuple[Address, str], int] = {}
    for m in sim.mdevs:
        per_type[(m.parent, m.mdev_type)] = per_type.get((m.parent, m.mdev_type), 0) + 1
    for (parent, mtype), n in per_type.items():
        out.append(f"check_mdev_type {_q(parent)} {_q(mtype)} {n}")
    for u in dict.fromkeys([u for u, _ in sim.mdev_removed] + [u for u, _vm, _i in sim.mdev_assigned]):
        i = _existing_mdev(ctx, u)
        if i is not None:
            out.append(f"expect_mdev {_q(u)} {_q(i.parent)} {_q(i.type or '?')}")
    drivers: list[str] = []
    for action in ctx.plan.actions:
        d = getattr(action, "driver", None) if isinstance(action, (Bind, Sriov)) else ("vfio-pci" if isinstance(action, Assign) else None)
        if d and d not in drivers:
            drivers.append(d)
    for d in drivers:
        out.append(f"need_driver {_q(d)}")
    out.append("")
    out.append("# ---- steps, in plan order (each one is skipped when already done)")
    for i, action in enumerate(ctx.plan.actions):
        out.append(_comment(f"{i + 1}. {shlex.join(action.words())}"))
        if isinstance(action, (Bind, Assign)):
            drv = action.driver if isinstance(action, Bind) else None
            for a in _bind_targets(ctx, i):
                out.append(f"bind_to {_q(a)} {_q(drv or 'vfio-pci')}")
        elif isinstance(action, Unbind):
            for a in _bind_targets(ctx, i):
                out.append(f"unbind_dev {_q(a)}")
        elif isinstance(action, Sriov):
            out.append(f"set_numvfs {_q(action.pf)} {action.vfs}")
            if action.driver:
                for n, vf in enumerate(_vfs_of_action(ctx, i)):
                    out.append(f"wait_for {_q(vf)}")
                    out.append(f"check_vf {_q(action.pf)} {n} {_q(vf)}")
                    out.append(f"bind_to {_q(vf)} {_q(action.driver)}")
        elif isinstance(action, Mdev):
            for u in action.uuids:
                out.append(f"create_mdev {_q(action.parent)} {_q(action.mdev_type)} {_q(u)}")
        elif isinstance(action, MdevRemove):
            out.append(f"remove_mdev {_q(action.uuid)}")
        elif isinstance(action, AssignMdev):
            out.append(f"say {_q(f'mdev {action.uuid} goes to VM {action.vm}: see the libvirt or qemu export')}")
        elif isinstance(action, HotRemove):
            out.append(f"remove_dev {_q(action.device)}")
        elif isinstance(action, HotAdd):
            out.append(f"say {_q(f'planned hardware: plug the device into the slot below {action.port}; the kernel configures it')}")
        elif isinstance(action, Trust):
            out.append(f"say {_q(f'planned firmware: {action.port} declared ' + ('external-facing' if action.external else 'internal') + ' (ACPI _DSD ExternalFacingPort / DT external-facing)')}")
        elif isinstance(action, KernelParam):
            out.append(f"say {_q(f'kernel parameter {action.text}: add it to the boot loader (see the cmdline export); it takes effect at the next boot')}")
    out.append('say "done"')
    return "\n".join(out) + "\n"


def _vfs_of_action(ctx: _Ctx, index: int) -> tuple[Address, ...]:
    from ..plan.apply import Simulation as _S, apply_action

    sim = _S(ctx.sim.index, ctx.plan)
    for i, action in enumerate(ctx.plan.actions[: index + 1]):
        apply_action(sim, action, i)
    action = ctx.plan.actions[index]
    return sim.sriov.get(action.pf, (0, None, -1, ()))[3]  # type: ignore[union-attr]


def render_undo(ctx: _Ctx) -> str:
    out = _header(ctx, "undo the plan: restore the drivers, VF counts and mdevs recorded when the plan was made")
    out.append(_SHELL_PRELUDE)
    out.append("# ---- steps, last action first (each one is skipped when already done)")
    rescan = False
    for i in range(len(ctx.plan.actions) - 1, -1, -1):
        action = ctx.plan.actions[i]
        out.append(_comment(f"undo {i + 1}. {shlex.join(action.words())}"))
        if isinstance(action, (Bind, Assign, Unbind)):
            for a in _bind_targets(ctx, i):
                rec = ctx.plan.recorded(a)
                if rec is None or rec.driver is None:
                    out.append(f"say {_q(f'{a}: its driver at plan time is unknown; left as it is')}")
                    continue
                orig = "" if rec.driver is ABSENT else str(rec.driver)
                override = "" if rec.override in (None, ABSENT) else str(rec.override)
                out.append(f"restore_driver {_q(a)} {_q(orig)} {_q(override)}")
        elif isinstance(action, Sriov):
            rec = ctx.plan.recorded(action.pf)
            if rec is None or rec.num_vfs is None:
                out.append(f"say {_q(f'{action.pf}: its VF count at plan time is unknown; left as it is')}")
            else:
                out.append(f"set_numvfs {_q(action.pf)} {rec.num_vfs}")
        elif isinstance(action, Mdev):
            for u in action.uuids:
                out.append(f"remove_mdev {_q(u)}")
        elif isinstance(action, MdevRemove):
            i = _existing_mdev(ctx, action.uuid)
            if i is None or i.type is None or _addr_or_none(i.parent) is None:
                out.append(f"say {_q(f'mdev {action.uuid}: its parent and type at plan time are unknown; not re-created')}")
            else:
                out.append(f"create_mdev {_q(i.parent)} {_q(i.type)} {_q(action.uuid)}")
        elif isinstance(action, AssignMdev):
            out.append(f"say {_q(f'mdev {action.uuid}: take it out of VM {action.vm} in the VM definition')}")
        elif isinstance(action, HotRemove):
            rescan = True
            out.append(f"say {_q(f'{action.device}: brought back by the rescan below')}")
        elif isinstance(action, (HotAdd, Trust, KernelParam)):
            out.append(f"say {_q('planned hardware, firmware or boot change: nothing to undo here')}")
    if rescan:
        out.append('write "$PCI/rescan" 1')
    out.append('say "done"')
    return "\n".join(out) + "\n"


# ---- libvirt ---------------------------------------------------------------------------------------


def _vm_devices(ctx: _Ctx) -> dict[str, list[Address]]:
    out: dict[str, list[Address]] = {}
    for a, lst in ctx.sim.assignments.items():
        if ctx.sim.exists(a):
            out.setdefault(lst[-1][0], []).append(a)
    for m in ctx.sim.mdevs:
        if m.vm:
            out.setdefault(m.vm, [])
    for _u, vm, _i in ctx.sim.mdev_assigned:
        out.setdefault(vm, [])
    return {vm: sorted(v) for vm, v in out.items()}


@dataclass(frozen=True)
class _VmMdev:
    uuid: str
    parent: str
    mdev_type: str | None
    device_api: str
    created: bool


def _addr_or_none(text: str) -> Address | None:
    try:
        return Address.parse(text)
    except ValueError:
        return None


def _vm_mdevs(ctx: _Ctx, vm: str) -> list[_VmMdev]:
    """The mdevs a VM gets: created by the plan with --vm, and existing ones assigned to it."""
    out = [_VmMdev(m.uuid, str(m.parent), m.mdev_type, _device_api(ctx, m.uuid, m.parent, m.mdev_type), True)
           for m in ctx.sim.mdevs if m.vm == vm]
    for u, v, _i in ctx.sim.mdev_assigned:
        if v != vm or any(x.uuid == u for x in out):
            continue
        i = _existing_mdev(ctx, u)
        created = next((m for m in ctx.sim.mdevs if m.uuid == u), None)
        parent = i.parent if i else (str(created.parent) if created else "?")
        mtype = i.type if i else (created.mdev_type if created else None)
        out.append(_VmMdev(u, parent, mtype, _device_api(ctx, u, parent, mtype), created is not None))
    return out


def _xml_comment(text: str) -> str:
    safe = " ".join(text.split()).replace("--", "- -")
    if safe.endswith("-"):
        safe += " "
    return f"<!-- {safe} -->"


def _guest_slots(devs: list[Address], vm: str) -> dict[Address, tuple[int, bool]]:
    """Functions of one host device given together share one guest slot: address -> (guest slot,
    multifunction on this function). Devices given alone get no fixed guest address."""
    by_slot: dict[tuple[int, int, int], list[Address]] = {}
    for a in devs:
        by_slot.setdefault(a.slot, []).append(a)
    out: dict[Address, tuple[int, bool]] = {}
    guest_slot = 0x10
    for members in by_slot.values():
        if len(members) < 2:
            continue
        if guest_slot > 0x1F:
            raise ExportError(f"VM {vm!r}: too many multifunction devices for one guest bus")
        members.sort()
        for m in members:
            out[m] = (guest_slot, m == members[0])
        guest_slot += 1
    return out


def libvirt_documents(ctx: _Ctx) -> dict[str, str]:
    docs: dict[str, str] = {}
    for vm, devs in _vm_devices(ctx).items():
        slots = _guest_slots(devs, vm)
        lines = [
            _xml_comment(f"{TOOL}: host devices for VM {vm} from the plan for {ctx.plan.source.spec}. "
                         f"Attach each hostdev with virsh attach-device (with its config option to keep it), or merge the devices element with virsh edit."),
        ]
        if slots:
            lines.append(_xml_comment("the functions of one host device keep one guest slot (multifunction='on' on the first, "
                                      "same bus and slot for all), from slot 0x10 of guest bus 0 as the qemu export does; "
                                      "to move them, move them together"))
        lines += [
            "<domain type='kvm'>",
            f"  <name>{escape(vm)}</name>",
            "  <devices>",
        ]
        for a in devs:
            lines += [
                "    <hostdev mode='subsystem' type='pci' managed='yes'>",
                "      <source>",
                f"        <address domain={quoteattr(f'0x{a.domain:04x}')} bus={quoteattr(f'0x{a.bus:02x}')} "
                f"slot={quoteattr(f'0x{a.device:02x}')} function={quoteattr(f'0x{a.function:x}')}/>",
                "      </source>",
            ]
            if a in slots:
                gslot, multi = slots[a]
                lines.append(f"      <address type='pci' domain='0x0000' bus='0x00' slot='{gslot:#04x}' function='{a.function:#x}'"
                             + (" multifunction='on'" if multi else "") + "/>")
            lines.append("    </hostdev>")
        for m in _vm_mdevs(ctx, vm):
            lines += [
                f"    <hostdev mode='subsystem' type='mdev' model={quoteattr(m.device_api)} managed='no'>",
                "      <source>",
                f"        <address uuid={quoteattr(m.uuid)}/>",
                "      </source>",
                "    </hostdev>",
            ]
        lines += ["  </devices>", "</domain>"]
        docs[vm] = "\n".join(lines) + "\n"
    return docs


# ---- proxmox ---------------------------------------------------------------------------------------


def render_proxmox(ctx: _Ctx) -> str:
    sim = ctx.sim
    out = [f"# {TOOL}: Proxmox VE hostpci lines from the plan for {one_line(' '.join(ctx.plan.source.spec.split()))}",
           "# pcie=1 needs the VM's machine type to be q35; a mdev= entry makes Proxmox create the mdev itself when the VM starts"]
    for vm, devs in _vm_devices(ctx).items():
        out.append(_comment(f"VM {vm}: add to /etc/pve/qemu-server/{vm if vm.isdigit() else '<vmid>'}.conf"))
        n = 0
        vga_done = False
        done: set[Address] = set()
        entries: list[tuple[str, bool]] = []
        for a in devs:
            if a in done:
                continue
            fn = sim.get(a)
            siblings = [s for s in sim.base.slot_siblings(a) if sim.exists(s)] + [
                s for s in sim.added if s.slot == a.slot and s != a and s not in sim.base.slot_siblings(a)]
            whole = (not (fn is not None and fn.is_virtfn) and all(sim.vm_of(s) == vm for s in siblings))
            if whole and siblings:
                members = [a] + siblings
                done.update(members)
                name = f"{a.domain:04x}:{a.bus:02x}:{a.device:02x}"
            else:
                members = [a]
                done.add(a)
                name = str(a)
            is_vga = any((f := sim.get(m)) is not None and f.class_code is not None and (f.class_code >> 8) == 0x0300 for m in members)
            entries.append((name, is_vga))
        for m in _vm_mdevs(ctx, vm):
            if not m.created:
                out.append(_comment(f"mdev {m.uuid} exists already: Proxmox creates its own mdevs (hostpciN: PARENT,mdev=TYPE), "
                                    "so give this one with the qemu export's args: line instead"))
                continue
            entries.append((f"{m.parent},mdev={m.mdev_type}", False))
        for name, is_vga in entries:
            if n > 15:
                raise ExportError(f"VM {vm!r} would need more than 16 hostpci entries (Proxmox allows hostpci0-hostpci15)")
            opts = ",pcie=1"
            if is_vga and not vga_done:
                opts += ",x-vga=1"
                vga_done = True
            out.append(f"hostpci{n}: {name}{opts}")
            n += 1
    return "\n".join(out) + "\n"


# ---- driverctl ---------------------------------------------------------------------------------------


def render_driverctl(ctx: _Ctx) -> str:
    out = ["#!/bin/sh", _comment(f"{TOOL}: persistent driver overrides (driverctl) from the plan for {ctx.plan.source.spec}"), "set -eu"]
    for a in sorted(_driver_setters(ctx)):
        if a not in ctx.topology.functions:
            out.append(_comment(f"{a} appears only after the plan runs (a VF or new device): set it after it exists"))
        drv = _final_driver(ctx, a)
        name = drv if isinstance(drv, str) else "none"
        line = f"driverctl set-override {_q(a)} {_q(name)}"
        out.append(line if a in ctx.topology.functions else "# " + line)
    return "\n".join(out) + "\n"


# ---- mdevctl -----------------------------------------------------------------------------------------


def mdevctl_documents(ctx: _Ctx) -> dict[str, tuple[Address, str, str]]:
    """uuid -> (parent, type, the JSON ``mdevctl define --jsonfile`` takes)."""
    out = {}
    for m in ctx.sim.mdevs:
        doc = {"mdev_type": m.mdev_type, "start": "auto", "attrs": []}
        out[m.uuid] = (m.parent, m.mdev_type, json.dumps(doc, indent=2) + "\n")
    return out


# ---- qemu ------------------------------------------------------------------------------------------------


def render_qemu(ctx: _Ctx) -> str:
    out = [f"# {TOOL}: QEMU arguments per VM from the plan for {one_line(' '.join(ctx.plan.source.spec.split()))}",
           "# functions of one device share a guest slot (multifunction=on on function 0); guest slots start at 0x10"]
    for vm, devs in _vm_devices(ctx).items():
        out.append(_comment(f"VM {vm}"))
        slots = _guest_slots(devs, vm)
        args: list[str] = []
        for m in sorted(devs, key=lambda a: (a.slot, a.function)):
            if m not in slots:
                args.append(f"-device vfio-pci,host={m}")
                continue
            guest_slot, multi = slots[m]
            extra = ",multifunction=on" if multi else ""
            args.append(f"-device vfio-pci,host={m},addr={guest_slot:#04x}.{m.function}{extra}")
        for m in _vm_mdevs(ctx, vm):
            args.append(f"-device {m.device_api},sysfsdev=/sys/bus/mdev/devices/{m.uuid}")
        for a in args:
            opt, val = a.split(" ", 1)
            out.append(f"{opt} {_q(val)} \\")
        if args:
            out[-1] = out[-1][:-2]
    return "\n".join(out) + "\n"


# ---- cmdline ------------------------------------------------------------------------------------------------


def render_cmdline(ctx: _Ctx) -> str:
    sim = ctx.sim
    topo = ctx.topology
    out = [f"# {TOOL}: kernel command line for the plan for {one_line(' '.join(ctx.plan.source.spec.split()))}"]
    ids: dict[str, list[str]] = {"vfio-pci": [], "pci-stub": []}
    bound: dict[str, set[Address]] = {"vfio-pci": set(), "pci-stub": set()}
    for a in sorted(_driver_setters(ctx)):
        fn = sim.get(a)
        if fn is None or not isinstance(fn.driver, str) or fn.driver not in ids:
            continue
        bound[fn.driver].add(a)
        vd = fn.vendor_device
        if vd and vd not in ids[fn.driver]:
            ids[fn.driver].append(vd)
    params: list[str] = []
    for drv in ("vfio-pci", "pci-stub"):
        if ids[drv]:
            params.append(f"{drv}.ids={','.join(ids[drv])}")
            others = [fn.address for fn in topo if fn.vendor_device in ids[drv] and fn.address not in bound[drv]
                      and sim.exists(fn.address)]
            if others:
                out.append(_comment(f"note: {drv}.ids also takes {', '.join(map(str, others))} (same vendor:device); "
                                    "use the driverctl or shell export for those devices instead if they must stay on the host"))
            natives = sorted({str(_recorded_driver(ctx, a)) for a in bound[drv]} - {"", "?", drv})
            if natives:
                out.append(_comment(f"{drv} must load before {', '.join(natives)}: e.g. /etc/modprobe.d/{drv}.conf with "
                                    + "; ".join(f"softdep {n} pre: {drv}" for n in natives)))
    base_words = (topo.source.kernel_cmdline or "").split()
    uses_vfio = bool(sim.assignments or bound["vfio-pci"])
    if uses_vfio:
        vendor, how = iommu_vendor(topo)
        have = {w.split("=", 1)[0] for w in base_words} | {p.name for p, _ in sim.kernel_params}
        if vendor == "intel" and "intel_iommu" not in have:
            params.append("intel_iommu=on")
            out.append(_comment(f"intel_iommu=on: the IOMMU is Intel VT-d ({how}); kernels built without "
                                "CONFIG_INTEL_IOMMU_DEFAULT_ON leave it off without it"))
        elif vendor == "amd":
            out.append(_comment(f"the IOMMU is AMD-Vi ({how}): it is on by default; amd_iommu=on is not an option "
                                "(drivers/iommu/amd/init.c parse_amd_iommu_options logs it as unknown), so none is added"))
        if vendor is not None and "iommu" not in have:
            params.append("iommu=pt")
            out.append(_comment("iommu=pt: host devices keep identity (passthrough) DMA; untrusted devices still get a translated domain"))
        if vendor is None:
            out.append(_comment("the IOMMU vendor is unknown for this source: make sure intel_iommu=on (Intel) is set, "
                                "or that AMD-Vi is enabled in the firmware (AMD)"))
    planned = [p for p, _ in sim.kernel_params]
    if planned:
        merged = merged_cmdline("", planned).split()
        params += merged
    if not params:
        out.append(_comment("the plan needs no kernel parameters"))
    else:
        # Every planned parameter passed parse_kernel_param (no shell metacharacters); the
        # computed ones are IDs and fixed words. Quoted anyway for each form it is pasted in.
        from ..plan.actions import ActionError, parse_kernel_param

        for p in params:
            try:
                parse_kernel_param(p)
            except ActionError as e:
                raise ExportError(f"kernel parameter {p!r}: {e.message}") from None
        out.append(_comment("add these to the kernel command line (e.g. GRUB_CMDLINE_LINUX, then update-grub):"))
        out.append(" ".join(params))
        out.append(_comment("GRUB, in /etc/default/grub: GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX " + _grub_quote(" ".join(params)) + "\""))
        out.append(_comment("kernelstub (Pop!_OS): kernelstub " + " ".join(f"-a {_q(p)}" for p in params)))
        out.append(_comment("grubby (Fedora, RHEL): grubby --update-kernel=ALL --args=" + _q(" ".join(params))))
        if topo.source.kernel_cmdline is None:
            out.append(_comment("the source does not show the machine's current command line (/proc/cmdline): add the parameters above to it"))
        else:
            out.append(_comment("the whole command line afterwards: " + merged_cmdline(topo.source.kernel_cmdline, [_as_param(p) for p in params])))
    return "\n".join(out) + "\n"


def _grub_quote(text: str) -> str:
    """``text`` for the inside of a double-quoted shell string (/etc/default/grub is sourced by sh)."""
    return "".join("\\" + c if c in '\\"$`' else c for c in text)


def iommu_vendor(topology: Topology) -> tuple[str | None, str]:
    """("intel" | "amd" | None, where that came from), from what the source gives today:
    an ``intel_iommu=`` / ``amd_iommu=`` word on its command line, else the vendor of the
    host bridge at 00:00.0 (x86: VT-d on Intel platforms, AMD-Vi on AMD and Hygon ones).
    One small function, so a source that records the IOMMU driver itself can answer here."""
    for w in (topology.source.kernel_cmdline or "").split():
        if w.startswith("intel_iommu="):
            return "intel", "the kernel command line has intel_iommu="
        if w.startswith("amd_iommu="):
            return "amd", "the kernel command line has amd_iommu="
    hb = topology.functions.get(Address(0, 0, 0, 0))
    if hb is not None and hb.class_code is not None and (hb.class_code >> 8) == 0x0600:
        if hb.vendor_id == 0x8086:
            return "intel", "the host bridge 00:00.0 is Intel's"
        if hb.vendor_id in (0x1022, 0x1D94):
            return "amd", "the host bridge 00:00.0 is AMD's" if hb.vendor_id == 0x1022 else "the host bridge 00:00.0 is Hygon's"
    return None, "the source does not say"


def _as_param(text: str) -> KernelParam:
    name, sep, value = text.partition("=")
    return KernelParam(name, value if sep else None)


# ---- json ------------------------------------------------------------------------------------------------------


def render_json(ctx: _Ctx) -> str:
    sim = ctx.sim
    devices = []
    touched = sorted(set(_driver_setters(ctx)) | set(sim.assignments) | set(sim.added))
    for a in touched:
        fn = sim.get(a)
        rec = ctx.plan.recorded(a)
        devices.append({
            "bdf": str(a),
            "new": a not in ctx.topology.functions,
            "driver_before": None if rec is None or rec.driver is None else (None if rec.driver is ABSENT else rec.driver),
            "driver_after": fn.driver if fn is not None and isinstance(fn.driver, str) else None,
            "vm": sim.vm_of(a),
            "iommu_group": sim.group_of(a),
        })
    doc = envelope("plan-export", ctx.topology, {
        "plan": ctx.plan.path,
        "plan_source": ctx.plan.source.spec,
        "actions": [a.to_dict() for a in ctx.plan.actions],
        "devices": devices,
        "vms": {vm: [str(a) for a in devs] for vm, devs in _vm_devices(ctx).items()},
        "mdevs": [{"uuid": m.uuid, "parent": str(m.parent), "type": m.mdev_type, "vm": m.vm} for m in sim.mdevs],
        "mdevs_removed": [u for u, _ in sim.mdev_removed],
        "mdevs_assigned": [{"uuid": u, "vm": vm} for u, vm, _i in sim.mdev_assigned],
        "removed": sorted(str(a) for a in sim.removed),
        "kernel_cmdline": (None if ctx.topology.source.kernel_cmdline is None
                           else merged_cmdline(ctx.topology.source.kernel_cmdline, [p for p, _ in sim.kernel_params])),
        "check": findings_json(ctx.findings),
    })
    return json.dumps(doc, indent=2) + "\n"


# ---- entry points ------------------------------------------------------------------------------------------------


def export_files(plan: Plan, topology: Topology, target: str) -> dict[str, str]:
    """Every document ``target`` makes, as {suggested file name: text}. Raises PlanHasErrors."""
    if target not in TARGETS:
        raise ExportError(f"unknown export target {target!r} (one of: {', '.join(TARGETS)})")
    ctx = _prepare(plan, topology)
    if target == "libvirt":
        docs = libvirt_documents(ctx)
        out: dict[str, str] = {}
        owner: dict[str, str] = {}
        for vm, text in docs.items():
            name = f"{_safe_name(vm)}.xml"
            # Two VMs must never share a file (one would be dropped); compare as a
            # case-insensitive file system would.
            other = owner.get(name.casefold())
            if other is not None:
                raise ExportError(f"the VMs {other!r} and {vm!r} would both be written to {name}: rename one")
            owner[name.casefold()] = vm
            bad = _xml_invalid(text)
            if bad is not None:
                raise ExportError(
                    f"VM {vm!r}: the document would hold the character {bad!r}, which XML does not allow "
                    f"(it comes from the plan: source {ctx.plan.source.spec!r}?); nothing exported"
                )
            out[name] = text
        return out
    if target == "mdevctl":
        out = {}
        lines = ["#!/bin/sh", _comment(f"{TOOL}: define the plan's mdevs persistently with mdevctl"), "set -eu"]
        start = ["#!/bin/sh", _comment(f"{TOOL}: start the plan's mdevs now (after mdevctl-define.sh)"), "set -eu"]
        for uuid, (parent, _type, text) in mdevctl_documents(ctx).items():
            name = f"{parent}-{uuid}.json"
            out[name] = text
            lines.append(f"mdevctl define --uuid {_q(uuid)} --parent {_q(parent)} --jsonfile {_q(name)}")
            start.append(f"mdevctl start --uuid {_q(uuid)}")
        for u, _i in ctx.sim.mdev_removed:
            lines.append(f"mdevctl undefine --uuid {_q(u)} 2>/dev/null || true  # removed by the plan")
            start.append(f"mdevctl stop --uuid {_q(u)}")
        out["mdevctl-define.sh"] = "\n".join(lines) + "\n"
        out["mdevctl-start.sh"] = "\n".join(start) + "\n"
        return out
    renderer: dict[str, tuple[str, Callable[[_Ctx], str]]] = {
        "shell": ("apply.sh", render_shell),
        "undo": ("undo.sh", render_undo),
        "proxmox": ("proxmox-hostpci.conf", render_proxmox),
        "driverctl": ("driverctl.sh", render_driverctl),
        "qemu": ("qemu-args.txt", render_qemu),
        "cmdline": ("cmdline.txt", render_cmdline),
        "json": ("plan-export.json", render_json),
    }
    name, fn = renderer[target]
    return {name: fn(ctx)}


def _safe_name(text: str) -> str:
    return "".join(c if (c.isascii() and c.isalnum()) or c in "._+-" else "_" for c in text) or "vm"


def _xml_invalid(text: str) -> str | None:
    """The first character XML 1.0 does not allow (Char production), or None."""
    for c in text:
        o = ord(c)
        if o < 0x20 and c not in "\t\n\r" or 0xD800 <= o <= 0xDFFF or o in (0xFFFE, 0xFFFF):
            return c
    return None


def export(plan: Plan, topology: Topology, target: str, item: str | None = None) -> str:
    """One document for ``target``. Raises PlanHasErrors while the plan has errors.

    libvirt makes one document per VM and mdevctl one per mdev: ``item`` (a VM name or an
    mdev UUID) picks one; without it there must be exactly one.
    """
    files = export_files(plan, topology, target)
    if target == "libvirt":
        return _pick(files, item, "VM", lambda k: k[:-4])
    if target == "mdevctl":
        docs = {k: v for k, v in files.items() if k.endswith(".json")}
        return _pick(docs, item, "mdev", lambda k: k[-41:-5])
    return next(iter(files.values()))


def _pick(files: dict[str, str], item: str | None, what: str, label: Callable[[str], str]) -> str:
    if not files:
        raise ExportError(f"the plan has no {what} to export")
    if item is not None:
        for k in files:
            if label(k) == item or label(k) == _safe_name(item):
                return files[k]
        raise ExportError(f"no {what} {item!r} in the plan (it has: {', '.join(label(k) for k in files)})")
    if len(files) > 1:
        raise ExportError(f"the plan has {len(files)} {what}s ({', '.join(label(k) for k in files)}): pick one")
    return next(iter(files.values()))


__all__ = ["ExportError", "PlanHasErrors", "TARGETS", "export", "export_files", "libvirt_documents", "mdevctl_documents"]
