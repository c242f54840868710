"""Layer 4: plans. Actions on a topology, applying them, and validating them against the kernel's rules.

The functions the CLI and the UI call:

* ``new_plan(topology, source_spec)`` — an empty plan fingerprinting every device;
* ``add_action(plan, words)`` / ``remove_action(plan, index)`` — a new plan with one more
  (or one fewer) action; ``words`` are the ``plan add`` words, e.g.
  ``["assign", "0000:01:00.0", "--vm", "win11", "--group"]``;
* ``render_plan(plan)`` — the plan as text;
* ``check(plan, topology)`` / ``check_json(plan, topology)`` — the findings;
* ``load_plan(path)`` / ``save_plan(plan, path, overwrite=False)`` — the YAML file;
* ``apply_plan(topology, plan)`` — the topology afterwards.

Exports live in ``explorer.export.plan_exports``. Errors: ``PlanFileError`` (a bad file)
and ``ActionError`` (bad action words) both have one-line ``str()``.
"""

from __future__ import annotations

import shlex

from ..model import Topology
from .actions import ACTION_KINDS, USAGE, Action, ActionError, parse_action
from .apply import Simulation, TopologyIndex, apply_plan, simulate
from .planfile import (
    DeviceFingerprint,
    Plan,
    PlanFileError,
    SourceRef,
    dump_plan,
    fingerprint_topology,
    load_plan,
    parse_plan,
    save_plan,
)
from .rules import ERROR, INFO, RULES, WARNING, Finding, rule_codes
from .validate import check, check_json, drift, findings_json, has_errors, render_findings, validate


def new_plan(topology: Topology, source_spec: str) -> Plan:
    """An empty plan for ``topology``, remembering every device's identity and current state."""
    src = topology.source
    ref = SourceRef(
        spec=source_spec,
        kind=src.kind,
        location=src.location,
        kernel_release=src.kernel_release,
        kernel_cmdline=src.kernel_cmdline,
    )
    return Plan(ref, fingerprint_topology(topology), ())


def add_action(plan: Plan, action_words: list[str]) -> Plan:
    """A new plan with one more action parsed from ``action_words`` (raises ActionError)."""
    action = parse_action(list(action_words))
    return plan.with_actions(plan.actions + (action,))


def add_parsed_action(plan: Plan, action: Action) -> Plan:
    return plan.with_actions(plan.actions + (action,))


def remove_action(plan: Plan, index: int) -> Plan:
    """A new plan without action ``index`` (0-based); raises ActionError when out of range."""
    if not 0 <= index < len(plan.actions):
        raise ActionError(f"no action {index + 1} (the plan has {len(plan.actions)})", "action")
    actions = plan.actions[:index] + plan.actions[index + 1:]
    lines = plan.action_lines[:index] + plan.action_lines[index + 1:]
    return Plan(plan.source, plan.devices, actions, plan.version, lines, plan.path)


def render_plan(plan: Plan) -> str:
    src = plan.source
    head = f"plan for {src.spec}"
    details = [x for x in (src.kind, src.location if src.location != src.spec else None,
                           f"kernel {src.kernel_release}" if src.kernel_release else None) if x]
    if details:
        head += f" ({', '.join(details)})"
    lines = [head, f"{len(plan.devices)} devices fingerprinted"]
    if not plan.actions:
        lines.append("no actions yet (add one: " + "; ".join(USAGE[k] for k in ACTION_KINDS) + ")")
    else:
        lines.append("actions:")
        width = len(str(len(plan.actions)))
        for i, a in enumerate(plan.actions):
            lines.append(f"  {i + 1:>{width}}. {shlex.join(a.words())}")
    return "\n".join(lines)


__all__ = [
    "ACTION_KINDS", "Action", "ActionError", "DeviceFingerprint", "ERROR", "Finding", "INFO", "Plan", "PlanFileError",
    "RULES", "Simulation", "SourceRef", "TopologyIndex", "USAGE", "WARNING", "add_action", "add_parsed_action",
    "apply_plan", "check", "check_json", "drift", "dump_plan", "findings_json", "has_errors", "load_plan", "new_plan",
    "parse_action", "parse_plan", "remove_action", "render_findings", "render_plan", "rule_codes", "save_plan", "simulate",
    "validate",
]
