"""Is a loaded topology a tree the kernel could have built? Checked for every source.

The model's consumers walk ``parent`` and ``physfn`` links (IOMMU groups walk up to the
root, the display tree nests VFs under their PF). A source that says otherwise — a
``parent:`` cycle in YAML, two VFs that are each other's PF, a device naming a parent that
is not there, or a device on a bus its bridge does not forward — would make them loop or
silently drop devices. :func:`check_topology` refuses such a topology with one line naming
the devices; linear in the number of functions.

What the kernel guarantees, and so what is checked:

* every ``parent`` is a function of the topology, a bridge, in the same PCI domain; no
  function is its own ancestor (``pci_scan_bridge`` builds a tree);
* a device below a bridge with known bus numbers sits on a bus in the bridge's
  ``[secondary, subordinate]`` range (``pci_scan_child_bus``; VFs too: ``virtfn_add_bus``
  refuses a bus past the subordinate one);
* every ``physfn`` is a function of the topology that is not itself a VF (a VF has no
  SR-IOV capability, drivers/pci/iov.c), and each listed ``virtfn`` exists and names that
  PF as its ``physfn``.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import chain
from operator import attrgetter

from ..model import ABSENT, Address, Topology, present
from ..model.safe_text import one_line
from .errors import SourceError

__all__ = ["check_topology", "scrub_text"]


def _fail(t: Topology, message: str) -> SourceError:
    return SourceError(f"inconsistent topology: {message}", path=t.source.location)


def check_topology(t: Topology) -> Topology:
    """Return ``t`` when consistent; raise SourceError (one line) naming the devices otherwise."""
    fns = t.functions
    for addr, fn in fns.items():
        parent = fn.parent
        if parent is not None:
            up = fns.get(parent)
            if up is fn:  # (the functions are keyed by address: parent == addr)
                raise _fail(t, f"{addr} is its own parent")
            if up is None:
                raise _fail(t, f"{addr}: its parent {parent} is not in the source")
            if parent.domain != addr.domain:
                raise _fail(t, f"{addr}: its parent {parent} is in another PCI domain")
            br = up.bridge
            if br is ABSENT:
                raise _fail(t, f"{addr}: its parent {parent} is not a bridge")
            if br is not None:
                sec, sub = br.secondary, br.subordinate  # type: ignore[union-attr]
                if sec is not None and sub is not None and 0 < sec <= sub and not sec <= addr.bus <= sub:
                    raise _fail(t, f"{addr} is on bus {addr.bus:02x}, outside its parent bridge {parent}'s "
                                   f"bus range {sec:02x}-{sub:02x}")
        pf = fn.physfn
        if pf is not None:
            pfn = fns.get(pf)
            if pfn is fn:  # pf == addr
                raise _fail(t, f"{addr} is its own physfn (PF)")
            if pfn is None:
                raise _fail(t, f"{addr}: its physfn (PF) {pf} is not in the source")
            if pfn.physfn is not None:
                raise _fail(t, f"{addr}: its physfn {pf} is itself a VF (of {pfn.physfn}); a VF cannot have VFs"
                               + (" (a physfn cycle)" if pfn.physfn == addr else ""))
        for vf in fn.virtfns:
            v = fns.get(vf)
            if v is None:
                raise _fail(t, f"{addr}: its VF {vf} is not in the source")
            if v.physfn is None or fns.get(v.physfn) is not fn:  # its physfn is not addr
                raise _fail(t, f"{addr} lists {vf} as its VF, but {vf}'s physfn is {v.physfn or 'none'}")
    _check_cycles(t)
    return t


def _check_cycles(t: Topology) -> None:
    fns = t.functions
    done: set[Address] = set()
    for start, fn in fns.items():
        if start in done:
            continue
        up = fn.parent
        if up is None or up in done:  # most functions: the parent's chain is known to end
            done.add(start)
            continue
        path: list[Address] = []
        on_path: set[Address] = set()
        cur: Address | None = start
        while cur is not None and cur not in done:
            if cur in on_path:
                loop = path[path.index(cur):] + [cur]
                raise _fail(t, "parent cycle: " + " -> ".join(str(a) for a in loop))
            on_path.add(cur)
            path.append(cur)
            fn = fns.get(cur)
            cur = fn.parent if fn is not None else None
        done.update(path)


# ---- text from sources ---------------------------------------------------------------------

_FN_TEXT = ("vendor_name", "device_name", "subsystem_name", "class_name", "driver", "driver_override", "iommu_group")
#: Text fields of a function's parts: (Function field, field of the part).
_PART_TEXT = (("slot", "physical_slot"), ("link", "current_speed"), ("link", "max_speed"))
_SOURCE_TEXT = ("location", "description", "kernel_release", "kernel_cmdline")


def _safe(v: object) -> object:
    if isinstance(v, str) and not v.isprintable():
        return one_line(v)
    return v


def _has_raw_text(t: Topology) -> bool:
    """Whether any function holds text scrub_text would escape: each distinct value checked
    once (a big machine's functions share their drivers, groups, slots and links)."""
    fns = t.functions.values()
    try:
        strings = set(chain.from_iterable(map(attrgetter(*_FN_TEXT), fns)))
        strings.update(chain.from_iterable(filter(None, map(attrgetter("reset_methods"), fns))))
    except TypeError:  # a value that is not hashable: let the full pass look
        return True
    if not all(v.isprintable() for v in strings if isinstance(v, str)):
        return True
    for name, field_name in _PART_TEXT:
        parts = list(map(attrgetter(name), fns))
        for part in dict(zip(map(id, parts), parts)).values():  # each object once, hashed by identity
            v = getattr(part, field_name, None) if present(part) else None
            if isinstance(v, str) and not v.isprintable():
                return True
    return False


def scrub_text(t: Topology) -> Topology:
    """``t`` with control characters in every name, driver, group label and source fact
    escaped visibly (explorer.model.safe_text): no input reaches a terminal raw, in the CLI
    or the app. Only functions holding such text are copied; a clean topology is returned
    as it is."""
    changed = {}
    for addr, fn in (t.functions.items() if _has_raw_text(t) else ()):
        kw = {}
        for name in _FN_TEXT:
            v = getattr(fn, name)
            if isinstance(v, str) and not v.isprintable():
                kw[name] = one_line(v)
        if fn.reset_methods and not all(m.isprintable() for m in fn.reset_methods):
            kw["reset_methods"] = tuple(one_line(m) for m in fn.reset_methods)
        for name, field_name in _PART_TEXT:
            part = getattr(fn, name)
            v = getattr(part, field_name, None) if present(part) else None
            if isinstance(v, str) and not v.isprintable():
                part = replace(kw.get(name, part), **{field_name: one_line(v)})  # type: ignore[arg-type]
                kw[name] = part
        if kw:
            changed[addr] = replace(fn, **kw)
    src = t.source
    skw = {name: _safe(getattr(src, name)) for name in _SOURCE_TEXT if getattr(src, name) is not _safe(getattr(src, name))}
    if any(not w.isprintable() for w in src.warnings):
        skw["warnings"] = tuple(one_line(w) for w in src.warnings)
    if any(not (a.isprintable() and b.isprintable()) for a, b in src.group_types):
        skw["group_types"] = tuple((one_line(a), one_line(b)) for a, b in src.group_types)
    if not changed and not skw:
        return t
    fns = [changed.get(a, f) for a, f in t.functions.items()]
    return Topology.build(fns, t.host_bridges, replace(src, **skw) if skw else src)
