"""A small set of SVG snapshots of the main screens (pytest-textual-snapshot).

Regenerate deliberately after a UI change: pytest tests/snapshots --snapshot-update.
"""

from __future__ import annotations

from explorer.model import Address
from explorer.sources import load_source
from explorer.ui.app import ExplorerApp

SIZE = (140, 42)
SOURCE = "builtin:amd-laptop-dgpu-usb4"
GPU = Address.parse("0000:03:00.0")


def _app() -> ExplorerApp:
    return ExplorerApp(load_source(SOURCE), source=SOURCE)


async def _prepare(pilot) -> None:
    pilot.app.theme = "textual-dark"
    await pilot.pause()


def test_topology_with_device_selected(snap_compare):
    async def run_before(pilot):
        await _prepare(pilot)
        pilot.app.reveal(GPU)
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=SIZE, run_before=run_before)


def test_groups_view(snap_compare):
    async def run_before(pilot):
        await _prepare(pilot)
        await pilot.press("2")
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=SIZE, run_before=run_before)


def test_plan_with_findings(snap_compare):
    async def run_before(pilot):
        await _prepare(pilot)
        pilot.app.reveal(GPU)
        await pilot.pause()
        pilot.app.add_action(["assign", str(GPU), "--vm", "win11"])
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=SIZE, run_before=run_before)


# ---- every dialog at 80x24 (the smallest terminal the app supports) -----------------------------

SMALL = (80, 24)


async def _still(pilot) -> None:
    """No blinking cursor in a snapshot (it would catch either phase)."""
    from textual.widgets import Input

    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False
    await pilot.pause()


async def _with_plan(pilot) -> None:
    await _prepare(pilot)
    pilot.app.reveal(GPU)
    await pilot.pause()
    pilot.app.add_action(["assign", str(GPU), "--vm", "win11", "--group"])
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


def test_help_dialog_80x24(snap_compare):
    async def run_before(pilot):
        await _prepare(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        await _still(pilot)

    assert snap_compare(_app(), terminal_size=SMALL, run_before=run_before)


def test_assign_dialog_80x24(snap_compare):
    async def run_before(pilot):
        await _prepare(pilot)
        pilot.app.reveal(GPU)
        await pilot.pause()
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause()
        await _still(pilot)

    assert snap_compare(_app(), terminal_size=SMALL, run_before=run_before)


def test_export_dialog_libvirt_80x24(snap_compare):
    async def run_before(pilot):
        await _with_plan(pilot)
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("down", "down")
        await pilot.pause()
        await _still(pilot)

    assert snap_compare(_app(), terminal_size=SMALL, run_before=run_before)


def test_confirm_dialog_80x24(snap_compare):
    async def run_before(pilot):
        await _with_plan(pilot)
        await pilot.press("o")
        await pilot.pause()
        await _still(pilot)

    assert snap_compare(_app(), terminal_size=SMALL, run_before=run_before)


def test_quit_dialog_80x24(snap_compare):
    async def run_before(pilot):
        await _with_plan(pilot)
        await pilot.press("q")
        await pilot.pause()
        await _still(pilot)

    assert snap_compare(_app(), terminal_size=SMALL, run_before=run_before)


def test_open_picker_80x24(snap_compare):
    async def run_before(pilot):
        await _prepare(pilot)
        await pilot.press("o")
        await pilot.pause()
        await _still(pilot)

    assert snap_compare(_app(), terminal_size=SMALL, run_before=run_before)


def test_hot_add_dialog_80x24(snap_compare):
    async def run_before(pilot):
        await _prepare(pilot)
        pilot.app.reveal(Address.parse("0000:00:03.1"))
        await pilot.pause()
        await pilot.pause()
        await pilot.press("h")
        await pilot.pause()
        await _still(pilot)

    assert snap_compare(_app(), terminal_size=SMALL, run_before=run_before)


def test_main_screen_with_plan_80x24(snap_compare):
    assert snap_compare(_app(), terminal_size=SMALL, run_before=_with_plan)


def test_walkthrough_80x24(snap_compare):
    from explorer.ui.walkthrough import get_walkthrough

    w = get_walkthrough("gpu-passthrough")

    async def run_before(pilot):
        await _prepare(pilot)
        await pilot.pause()

    assert snap_compare(ExplorerApp(load_source(w.topology), source=w.topology, walkthrough=w), terminal_size=SMALL, run_before=run_before)
