"""Refuse, when the plan is composed, an mdev action the source shows cannot work.

``plan add ... mdev PARENT --type T`` is refused when the source lists PARENT's types and T
is not one of them (the kernel has no ``mdev_supported_types/T/create`` to write); and
``mdev-remove UUID`` / ``assign UUID`` when the source shows mdevs and UUID is neither
active nor created earlier in the plan. Everything else (available_instances, the parent's
driver) is left to ``check``, which sees the whole plan.
"""

from __future__ import annotations

from ..model import Topology
from .actions import Action, AssignMdev, Mdev, MdevRemove


def refusal(topology: Topology, action: Action, earlier: tuple[Action, ...] = ()) -> str | None:
    """Why ``action`` cannot be added to a plan for ``topology`` (None: it can)."""
    info = topology.mdev
    if info is None:
        return None
    if isinstance(action, Mdev):
        parent = info.parent(action.parent)
        if parent is None:
            if action.parent in topology.functions:
                return f"{action.parent} is not an mdev parent in {topology.source.location} (it has no mdev_supported_types)"
            return None
        if parent.types is not None and parent.type(action.mdev_type) is None:
            have = ", ".join(t.id for t in parent.types) or "none"
            return f"{action.parent} has no mdev type {action.mdev_type!r} (its types: {have})"
        return None
    if isinstance(action, (MdevRemove, AssignMdev)):
        planned = {u for a in earlier if isinstance(a, Mdev) for u in a.uuids}
        if info.instance(action.uuid) is None and action.uuid not in planned:
            return f"no mdev {action.uuid} in {topology.source.location} (active mdevs: {', '.join(i.uuid for i in info.instances) or 'none'})"
    return None


__all__ = ["refusal"]
