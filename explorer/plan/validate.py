"""The validation engine: drift first, then every rule of rules.py over the plan's overlay.

``validate(topology, plan) -> list[Finding]``. What depends only on the topology (the
``TopologyIndex``) and on the plan's fingerprint against the topology (the drift check)
is computed once and cached by identity, so validating again after one more action costs
time proportional to the plan, not to the machine (``Plan.with_actions`` keeps the
fingerprint object, which keeps the cache warm).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from ..model import Address, Topology
from .apply import TopologyIndex, simulate
from .planfile import DeviceFingerprint, Plan, fingerprint_function
from .rules import ERROR, INFO, WARNING, Context, Finding, run_rules

_LOCK = threading.Lock()
#: id(topology) -> (topology ref, index); a Topology holds a dict, so it cannot key a WeakKeyDictionary.
_INDEXES: dict[int, tuple["weakref.ref[Topology]", TopologyIndex]] = {}
_INDEX_MAX = 8
_DRIFT: dict[tuple[int, int], tuple[tuple[DeviceFingerprint, ...], "weakref.ref[Topology]", list[Finding]]] = {}
_DRIFT_MAX = 8

_SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}
DRIFT_KERNEL = "the plan's fingerprint (identity of every device) differs from the loaded source"
MAX_DRIFT_NAMED = 12


def topology_index(topology: Topology) -> TopologyIndex:
    """The per-topology lookups, built once per Topology object."""
    with _LOCK:
        hit = _INDEXES.get(id(topology))
        if hit is not None and hit[0]() is topology:
            return hit[1]
    idx = TopologyIndex(topology)
    with _LOCK:
        for k in [k for k, (ref, _) in _INDEXES.items() if ref() is None]:
            del _INDEXES[k]
        if len(_INDEXES) >= _INDEX_MAX:
            _INDEXES.pop(next(iter(_INDEXES)))
        _INDEXES[id(topology)] = (weakref.ref(topology), idx)
    return idx


def _identity_differs(rec: DeviceFingerprint, now: DeviceFingerprint) -> list[str]:
    diffs = []
    for name, a, b in (("vendor:device", rec.vendor_device, now.vendor_device), ("subsystem", rec.subsystem, now.subsystem),
                       ("class", rec.class_code, now.class_code), ("serial", rec.serial, now.serial)):
        if a is not None and b is not None and a != b:
            diffs.append(f"{name} {a} -> {b}")
    return diffs


def drift(plan: Plan, topology: Topology) -> list[Finding]:
    """DRIFT findings: devices missing, added or changed since the plan was made (VFs aside)."""
    key = (id(plan.devices), id(topology))
    with _LOCK:
        hit = _DRIFT.get(key)
        if hit is not None and hit[0] is plan.devices and hit[1]() is topology:
            return hit[2]
    findings = _compute_drift(plan, topology)
    with _LOCK:
        if len(_DRIFT) >= _DRIFT_MAX:
            _DRIFT.pop(next(iter(_DRIFT)))
        _DRIFT[key] = (plan.devices, weakref.ref(topology), findings)
    return findings


def _compute_drift(plan: Plan, topology: Topology) -> list[Finding]:
    if not plan.devices:
        return []
    problems: list[tuple[Address, str]] = []
    recorded = plan.device_map
    funcs = topology.functions
    for addr, rec in recorded.items():
        fn = funcs.get(addr)
        if fn is None:
            if not rec.is_vf:
                problems.append((addr, f"{addr} ({rec.vendor_device or 'unknown'}) is gone"))
            continue
        diffs = _identity_differs(rec, fingerprint_function(fn))
        if diffs:
            problems.append((addr, f"{addr}: {', '.join(diffs)}"))
    for addr, fn in funcs.items():
        if addr not in recorded and not fn.is_virtfn:
            problems.append((addr, f"{addr} ({fn.vendor_device or 'unknown'}) is new"))
    if not problems:
        return []
    problems.sort()
    named = "; ".join(text for _, text in problems[:MAX_DRIFT_NAMED])
    more = f"; and {len(problems) - MAX_DRIFT_NAMED} more" if len(problems) > MAX_DRIFT_NAMED else ""
    src = plan.source.spec
    return [
        Finding(
            "DRIFT", ERROR,
            f"the source does not match the machine this plan was made for ({src}): {named}{more}. "
            "Nothing else was checked; make the plan again against this source",
            tuple(a for a, _ in problems[:MAX_DRIFT_NAMED]), DRIFT_KERNEL, None, None,
        )
    ]


def validate(topology: Topology, plan: Plan) -> list[Finding]:
    """Every finding for ``plan`` on ``topology``: errors first, then warnings, then info.

    A DRIFT finding stops validation: it is then the only result.
    """
    d = drift(plan, topology)
    if d:
        return d
    sim = simulate(topology, plan, topology_index(topology))
    findings = run_rules(Context(sim))
    findings.sort(key=lambda f: (_SEVERITY_ORDER.get(f.severity, 9), f.action if f.action is not None else -1, f.code))
    return findings


def check(plan: Plan, topology: Topology) -> list[Finding]:
    """What ``pci-explorer check`` prints: same as validate(topology, plan)."""
    return validate(topology, plan)


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity == ERROR for f in findings)


def findings_json(findings: list[Finding], plan: Plan | None = None) -> dict[str, Any]:
    """The JSON form of a check: counts, ok, and each finding (docs/plan-format.md)."""
    counts = {s: sum(1 for f in findings if f.severity == s) for s in (ERROR, WARNING, INFO)}
    doc: dict[str, Any] = {
        "ok": counts[ERROR] == 0,
        "errors": counts[ERROR],
        "warnings": counts[WARNING],
        "infos": counts[INFO],
        "drift": any(f.code == "DRIFT" for f in findings),
        "findings": [f.to_json() for f in findings],
    }
    if plan is not None:
        doc = {"plan": plan.path, "source": plan.source.spec, **doc}
    return doc


def check_json(plan: Plan, topology: Topology) -> dict[str, Any]:
    from ..kernel.context import source_context

    return {**findings_json(check(plan, topology), plan), "context": source_context(topology).to_dict()}


def render_findings(findings: list[Finding]) -> str:
    if not findings:
        return "ok: no findings"
    lines = [str(f) for f in findings]
    counts = {s: sum(1 for f in findings if f.severity == s) for s in (ERROR, WARNING, INFO)}
    lines.append(f"{counts[ERROR]} error(s), {counts[WARNING]} warning(s), {counts[INFO]} info")
    return "\n".join(lines)


__all__ = ["check", "check_json", "drift", "findings_json", "has_errors", "render_findings", "topology_index", "validate"]
