"""Every walkthrough end to end: each step reachable, each task failing when not done and
passing when done right, on the bundled machine it names."""

from __future__ import annotations

import pytest

from explorer.model import Address
from explorer.sources import load_source
from explorer.ui.app import ExplorerApp
from explorer.ui.walkthrough import (
    State,
    Task,
    WalkthroughError,
    check,
    get_walkthrough,
    load_walkthrough,
    walkthrough_names,
)

NAMES = walkthrough_names()
TERMINAL = (160, 48)


def test_at_least_six_walkthroughs_on_the_required_subjects():
    assert len(NAMES) >= 6
    titles = " ".join(get_walkthrough(n).title.lower() for n in NAMES)
    for subject in ("iommu groups", "gpu passthrough", "trust", "vmd", "sr-iov", "hot-add"):
        assert subject in titles


@pytest.mark.parametrize("name", NAMES)
def test_every_device_a_walkthrough_names_exists(name):
    w = get_walkthrough(name)
    t = load_source(w.topology)
    for step in w.steps:
        named = list(step.highlight) + ([step.select] if step.select else [])
        if step.task:
            named += ([step.task.device] if step.task.device else []) + list(step.task.devices)
            sel = (step.task.solution or {}).get("select")
            if sel:
                named.append(Address.parse(sel))
        for a in named:
            assert a in t.functions, f"{name}: {step.title}: {a} is not in {w.topology}"
        assert step.body and step.title


async def _settle(app, pilot):
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def _make_wrong(app, pilot, task: Task):
    """Put the app in a state where the task is not done."""
    if task.kind == "view":
        other = "topology" if task.view != "topology" else "groups"
        app.action_view(other)
        await pilot.pause()
    if task.kind == "select":
        wrong = next(a for a in app.topology.functions if a != task.device and a not in task.devices)
        app.reveal(wrong)
        await pilot.pause()
        await pilot.pause()


async def _do(app, pilot, task: Task, tmp_path):
    sol = task.solution or {}
    if "view" in sol:
        app.action_view(sol["view"])
        await pilot.pause()
    if "select" in sol:
        assert app.reveal(Address.parse(sol["select"]))
        await pilot.pause()
        await pilot.pause()
    for words in sol.get("plan", []):
        assert app.add_action([str(w) for w in words])
        await _settle(app, pilot)
    if "export" in sol:
        await pilot.press("e")
        await pilot.pause()
        dialog = app.screen
        assert dialog.__class__.__name__ == "ExportDialog" and not dialog.blocked
        dialog._render_target(sol["export"])
        dialog.query_one("#path").value = str(tmp_path / f"export-{sol['export']}")
        dialog.action_write()
        await _settle(app, pilot)


@pytest.mark.parametrize("name", NAMES)
async def test_walkthrough_end_to_end(name, tmp_path):
    w = get_walkthrough(name)
    app = ExplorerApp(load_source(w.topology), source=w.topology, walkthrough=w)
    async with app.run_test(size=TERMINAL) as pilot:
        await _settle(app, pilot)
        for i, step in enumerate(w.steps):
            assert app.step_index == i
            panel = str(app.query_one("#tour-text").render())
            assert step.title in panel
            task = step.task
            if task is not None:
                assert task.solution, f"{name} step {i + 1}: a task needs a solution the tests can run"
                await _make_wrong(app, pilot, task)
                done, hint = check(task, app.tour_state())
                assert not done, f"{name} step {i + 1}: the task passes before it was done"
                assert hint
                # n does not advance past an undone task.
                await pilot.press("n")
                await pilot.pause()
                assert app.step_index == i and not app.tour_done
                await _do(app, pilot, task, tmp_path)
                done, hint = check(task, app.tour_state())
                assert done, f"{name} step {i + 1}: {hint}"
            await pilot.press("n")
            await _settle(app, pilot)
        assert app.tour_done
        # p goes back, l leaves.
        await pilot.press("p")
        await pilot.pause()
        assert app.step_index == len(w.steps) - 2 and not app.tour_done
        await pilot.press("l")
        await pilot.pause()
        assert app.walkthrough is None


def test_checks_are_pure_and_precise():
    sel = Task("select", "pick it", device=Address.parse("0000:01:00.0"))
    assert check(sel, State(selected=Address.parse("0000:01:00.0")))[0]
    assert not check(sel, State(selected=Address.parse("0000:02:00.0")))[0]
    err = Task("no-errors", "fix it")
    assert not check(err, State())[0]  # an empty plan is not a finished one


def test_a_step_is_done_only_by_what_the_user_does_in_it():
    gpu = Address.parse("0000:01:00.0")
    # The step opened the view itself, or the device was selected before the step began: not done.
    view = Task("view", "open it", view="groups")
    assert not check(view, State(view="groups", step_views=()))[0]
    assert check(view, State(view="groups", step_views=("groups",)))[0]
    sel = Task("select", "pick it", device=gpu)
    assert not check(sel, State(selected=gpu, step_selected=()))[0]
    assert check(sel, State(selected=gpu, step_selected=(gpu,)))[0]
    # A finding left over from an earlier step's action does not count.
    class F:
        code, severity = "GROUP-SPLIT", "error"

    class Act:
        def words(self):
            return ["assign", str(gpu), "--vm", "x"]

    finding = Task("finding", "break it", code="GROUP-SPLIT")
    assert not check(finding, State(actions=(Act(),), findings=(F(),), step_actions=()))[0]
    assert check(finding, State(actions=(Act(),), findings=(F(),), step_actions=(Act(),)))[0]
    action = Task("action", "assign it", action="assign", device=gpu)
    assert not check(action, State(actions=(Act(),), step_actions=()))[0]
    export = Task("export", "export it", target="libvirt")
    assert not check(export, State(exported=("libvirt",), step_exports=()))[0]
    assert check(export, State(exported=("libvirt",), step_exports=("libvirt",)))[0]


def test_bad_walkthrough_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: x\ntopology: builtin:example-small\nsteps:\n  - title: a\n    body: b\n    task: {kind: dance, prompt: p}\n")
    with pytest.raises(WalkthroughError) as e:
        load_walkthrough(bad)
    assert "step 1" in str(e.value) and "kind" in str(e.value) and "\n" not in str(e.value)
