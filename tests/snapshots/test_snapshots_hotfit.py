"""SVG snapshots of the resources view's hot-add what-if (F) at 80x24: the port's details with
fit's verdict and the simulated reboot remedy first.

Regenerate deliberately after a UI change: pytest tests/snapshots --snapshot-update.
"""

from __future__ import annotations

from pathlib import Path

from explorer.model import Address
from explorer.sources import load_source
from explorer.ui.app import ExplorerApp

SMALL = (80, 24)
ROOT = Path(__file__).parent.parent.parent
#: A machine booted without parameters; its kernel log holds the firmware's assignment. Loaded
#: by its path from the checkout's root, so the header reads the same wherever that is.
SOURCE = "tests/fixtures/qemu-boot/6.1/boot-busnum-none.tar.gz"
PORT = Address.parse("0000:00:02.0")  # its empty hotplug root port


async def _in_resources_on_the_port(pilot) -> None:
    pilot.app.theme = "textual-dark"
    await pilot.pause()
    await pilot.press("4")
    await pilot.pause()
    pilot.app.reveal(PORT)
    await pilot.pause()
    await pilot.pause()


def _app(monkeypatch) -> ExplorerApp:
    monkeypatch.chdir(ROOT)
    return ExplorerApp(load_source(SOURCE), source=SOURCE)


def test_resources_port_before_asking_80x24(snap_compare, monkeypatch):
    assert snap_compare(_app(monkeypatch), terminal_size=SMALL, run_before=_in_resources_on_the_port)


def test_resources_fit_here_answer_80x24(snap_compare, monkeypatch):
    async def run_before(pilot):
        await _in_resources_on_the_port(pilot)
        await pilot.press("F")
        await pilot.pause()
        await pilot.press(*"pref64", "colon", *"1G", "enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(_app(monkeypatch), terminal_size=SMALL, run_before=run_before)
