"""Guided walkthroughs: steps are data (explorer/ui/walkthroughs/*.yaml), checked against app state.

A walkthrough names a bundled topology and a list of steps. Each step explains one rule
in plain words with the kernel source it comes from, may highlight devices, switch the
view or select a device when it starts, and may set a task that must be done before the
next step: select a device, open a view, add a plan action, see a finding, get the plan
free of errors, or export it. ``check(task, state)`` is a pure function, so every
task is tested both done right and done wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import Address, AddressError

WALKTHROUGH_DIR = Path(__file__).parent / "walkthroughs"
TASK_KINDS = ("select", "view", "action", "finding", "no-errors", "export")
VIEWS = ("topology", "groups", "trust", "resources")


class WalkthroughError(ValueError):
    """A bad walkthrough file: one line naming file, step and field."""


@dataclass(frozen=True)
class Task:
    kind: str
    prompt: str
    device: Address | None = None
    devices: tuple[Address, ...] = ()
    view: str | None = None
    action: str | None = None  # action kind: bind, assign, sriov, mdev, hot-add, hot-remove, ...
    group: bool | None = None
    code: str | None = None
    target: str | None = None  # export target
    #: How to do it right (used by the tests, and shown on request): {select: BDF},
    #: {view: NAME}, {plan: [[words], ...]} (plan actions), {export: TARGET}.
    solution: dict | None = None


@dataclass(frozen=True)
class Step:
    title: str
    body: str
    kernel: str = ""
    highlight: tuple[Address, ...] = ()
    view: str | None = None
    select: Address | None = None
    task: Task | None = None


@dataclass(frozen=True)
class Walkthrough:
    name: str
    title: str
    summary: str
    topology: str
    steps: tuple[Step, ...]
    path: str = ""


@dataclass
class State:
    """What the app shows and holds now, as the checks see it."""

    selected: Any = None
    view: str = "topology"
    actions: tuple[Any, ...] = ()
    findings: tuple[Any, ...] = ()
    exported: tuple[str, ...] = ()  # export targets written in this session
    validated: bool = True  # findings belong to the current plan
    #: What the user did since the current step began (None: not tracked, as in a plain
    #: check of a state). A step is done only by what the user does in it: a view the step
    #: itself opened, or a device already selected when it began, does not count.
    step_views: tuple[str, ...] | None = None
    step_selected: tuple[Any, ...] | None = None
    step_actions: tuple[Any, ...] | None = None
    step_exports: tuple[str, ...] | None = None


def _addr(value: Any, where: str) -> Address:
    try:
        return Address.parse(str(value))
    except AddressError as e:
        raise WalkthroughError(f"{where}: {e}") from None


def _task(d: Any, where: str) -> Task:
    if not isinstance(d, dict):
        raise WalkthroughError(f"{where}: task must be a mapping")
    kind = d.get("kind")
    if kind not in TASK_KINDS:
        raise WalkthroughError(f"{where}.kind: {kind!r} is not one of {', '.join(TASK_KINDS)}")
    prompt = d.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise WalkthroughError(f"{where}.prompt: a task needs a prompt telling the user what to do")
    known = {"kind", "prompt", "device", "devices", "view", "action", "group", "code", "target", "solution"}
    extra = set(d) - known
    if extra:
        raise WalkthroughError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    view = d.get("view")
    if kind == "view" and view not in VIEWS:
        raise WalkthroughError(f"{where}.view: {view!r} is not one of {', '.join(VIEWS)}")
    dev = _addr(d["device"], f"{where}.device") if "device" in d else None
    devs = tuple(_addr(x, f"{where}.devices") for x in d.get("devices", []) or [])
    if kind == "select" and dev is None and not devs:
        raise WalkthroughError(f"{where}: a select task needs device or devices")
    if kind == "action" and not d.get("action"):
        raise WalkthroughError(f"{where}.action: an action task names the action kind (bind, assign, ...)")
    if kind == "finding" and not d.get("code"):
        raise WalkthroughError(f"{where}.code: a finding task names the finding code")
    sol = d.get("solution")
    if sol is not None and not (isinstance(sol, dict) and set(sol) <= {"select", "view", "plan", "export"}):
        raise WalkthroughError(f"{where}.solution: a mapping with select, view, plan or export")
    return Task(kind, prompt.strip(), dev, devs, view, d.get("action"), d.get("group"), d.get("code"), d.get("target"), sol)


def load_walkthrough(path: str | Path) -> Walkthrough:
    import yaml  # here, not at the top: the app's first screen does not wait for it

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise WalkthroughError(f"{p}: {e}") from None
    if not isinstance(doc, dict):
        raise WalkthroughError(f"{p}: expected a mapping")
    for key in ("title", "topology", "steps"):
        if key not in doc:
            raise WalkthroughError(f"{p}: missing {key}")
    steps = []
    for i, s in enumerate(doc["steps"], 1):
        where = f"{p} step {i}"
        if not isinstance(s, dict) or "title" not in s or "body" not in s:
            raise WalkthroughError(f"{where}: a step needs a title and a body")
        if s.get("view") is not None and s["view"] not in VIEWS:
            raise WalkthroughError(f"{where}.view: {s['view']!r} is not one of {', '.join(VIEWS)}")
        steps.append(
            Step(
                title=str(s["title"]),
                body=str(s["body"]).strip(),
                kernel=str(s.get("kernel", "")),
                highlight=tuple(_addr(x, f"{where}.highlight") for x in s.get("highlight", []) or []),
                view=s.get("view"),
                select=_addr(s["select"], f"{where}.select") if s.get("select") else None,
                task=_task(s["task"], f"{where}.task") if s.get("task") else None,
            )
        )
    return Walkthrough(p.stem, str(doc["title"]), str(doc.get("summary", "")), str(doc["topology"]), tuple(steps), str(p))


def walkthrough_names() -> list[str]:
    return sorted(p.stem for p in WALKTHROUGH_DIR.glob("*.yaml"))


def get_walkthrough(name: str) -> Walkthrough:
    path = WALKTHROUGH_DIR / f"{name}.yaml"
    if not path.is_file():
        raise WalkthroughError(f"no walkthrough {name!r} (available: {', '.join(walkthrough_names()) or 'none'})")
    return load_walkthrough(path)


def _action_kind(action: Any) -> str:
    words = action.words()
    return words[0] if words else ""


def check(task: Task | None, state: State) -> tuple[bool, str]:
    """(done, hint). A step without a task is always done."""
    if task is None:
        return True, ""
    k = task.kind
    if k == "select":
        wanted = set(task.devices) | ({task.device} if task.device else set())
        if state.selected in wanted and (state.step_selected is None or state.selected in state.step_selected):
            return True, "done"
        return False, "select " + " or ".join(str(a) for a in sorted(wanted)) + " in the tree (/ searches)"
    if k == "view":
        key = {"topology": "1", "groups": "2", "trust": "3", "resources": "4"}.get(task.view or "", "")
        done = state.view == task.view and (state.step_views is None or task.view in state.step_views)
        return (done, "done" if done else f"open the {task.view} view (key {key})")
    if k == "action":
        for act in (state.actions if state.step_actions is None else state.step_actions):
            words = act.words()
            if _action_kind(act) != task.action:
                continue
            if task.device is not None and str(task.device) not in words:
                continue
            if task.group is not None and (("--group" in words) != task.group):
                continue
            return True, "done"
        what = task.action + (" of the whole group" if task.group else "")
        on = f" on {task.device}" if task.device else ""
        return False, f"add a {what} action{on} to the plan"
    if k == "finding":
        if state.step_actions is not None and not state.step_actions:
            return False, f"make a change that the kernel would refuse ({task.code})"
        if not state.validated:
            return False, "waiting for validation"
        if any(f.code == task.code for f in state.findings):
            return True, "done"
        return False, f"make a change that the kernel would refuse ({task.code})"
    if k == "no-errors":
        if not state.actions:
            return False, "the plan is empty: add an action"
        if not state.validated:
            return False, "waiting for validation"
        errs = [f.code for f in state.findings if f.severity == "error"]
        return (not errs, "done" if not errs else f"fix the errors first: {', '.join(sorted(set(errs)))}")
    if k == "export":
        exported = state.exported if state.step_exports is None else state.step_exports
        if task.target is None and exported:
            return True, "done"
        if task.target in exported:
            return True, "done"
        return False, f"export the plan{' as ' + task.target if task.target else ''} (e, choose it, then enter or ctrl+w)"
    return False, f"unknown task {k}"
