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
