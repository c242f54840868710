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

from ..model import Address, Topology, present
from .errors import SourceError

__all__ = ["check_topology"]


def _fail(t: Topology, message: str) -> SourceError:
    return SourceError(f"inconsistent topology: {message}", path=t.source.location)


def check_topology(t: Topology) -> Topology:
    """Return ``t`` when consistent; raise SourceError (one line) naming the devices otherwise."""
    fns = t.functions
    for addr, fn in fns.items():
        parent = fn.parent
        if parent is not None:
            if parent == addr:
                raise _fail(t, f"{addr} is its own parent")
            up = fns.get(parent)
            if up is None:
                raise _fail(t, f"{addr}: its parent {parent} is not in the source")
            if parent.domain != addr.domain:
                raise _fail(t, f"{addr}: its parent {parent} is in another PCI domain")
            br = up.bridge
            if br is not None and not present(br):
                raise _fail(t, f"{addr}: its parent {parent} is not a bridge")
            if present(br):
                sec, sub = br.secondary, br.subordinate  # type: ignore[union-attr]
                if sec is not None and sub is not None and 0 < sec <= sub and not sec <= addr.bus <= sub:
                    raise _fail(t, f"{addr} is on bus {addr.bus:02x}, outside its parent bridge {parent}'s "
                                   f"bus range {sec:02x}-{sub:02x}")
        pf = fn.physfn
        if pf is not None:
            if pf == addr:
                raise _fail(t, f"{addr} is its own physfn (PF)")
            pfn = fns.get(pf)
            if pfn is None:
                raise _fail(t, f"{addr}: its physfn (PF) {pf} is not in the source")
            if pfn.physfn is not None:
                raise _fail(t, f"{addr}: its physfn {pf} is itself a VF (of {pfn.physfn}); a VF cannot have VFs"
                               + (" (a physfn cycle)" if pfn.physfn == addr else ""))
        for vf in fn.virtfns:
            v = fns.get(vf)
            if v is None:
                raise _fail(t, f"{addr}: its VF {vf} is not in the source")
            if v.physfn != addr:
                raise _fail(t, f"{addr} lists {vf} as its VF, but {vf}'s physfn is {v.physfn or 'none'}")
    _check_cycles(t)
    return t


def _check_cycles(t: Topology) -> None:
    fns = t.functions
    done: set[Address] = set()
    for start in fns:
        if start in done:
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
