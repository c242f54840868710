"""``plan show --json``: a plan file as one JSON document (the envelope of docs/json.md)."""

from __future__ import annotations

from typing import Any

from ..model import ABSENT
from ..plan import Plan
from .envelope import envelope


def _state(v: object) -> Any:
    """Recorded driver/override: a name, False for none, None for unknown."""
    if v is ABSENT:
        return False
    return v


def plan_json(plan: Plan) -> dict[str, Any]:
    src = plan.source
    source = {
        "kind": src.kind,
        "location": src.location or src.spec or None,
        "spec": src.spec,
        "kernel_release": src.kernel_release,
        "kernel_cmdline": src.kernel_cmdline,
    }
    actions = []
    for i, a in enumerate(plan.actions):
        actions.append({"index": i + 1, "words": a.words(), "where": plan.where(i), **a.to_dict()})
    return envelope("plan", source, {
        "plan": plan.path,
        "plan_version": plan.version,
        "devices": [
            {
                "bdf": str(d.address),
                "vendor_device": d.vendor_device,
                "subsystem": d.subsystem,
                "class": d.class_code,
                "serial": d.serial,
                "driver": _state(d.driver),
                "override": _state(d.override),
                "num_vfs": d.num_vfs,
                "is_vf": d.is_vf,
            }
            for d in plan.devices
        ],
        "actions": actions,
    })


__all__ = ["plan_json"]
