"""Make the SVG screenshots in screenshots/ by driving the app headless (one command)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Awaitable, Callable

from ..model import Address
from ..sources import load_source
from .app import ExplorerApp

#: The README shows the app as a 100x30 terminal shows it.
SIZE = (100, 30)
THEME = "textual-dark"


async def _shoot(app: ExplorerApp, out: Path, name: str, script: Callable[[ExplorerApp, object], Awaitable[None]]) -> Path:
    async with app.run_test(size=SIZE) as pilot:
        app.theme = THEME
        await pilot.pause()
        await script(app, pilot)
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.pause()
        path = out / f"{name}.svg"
        app.save_screenshot(filename=path.name, path=str(out))
        return path


async def _select(app: ExplorerApp, pilot, bdf: str) -> None:
    app.reveal(Address.parse(bdf))
    await pilot.pause()
    await pilot.pause()


def scenarios(source: str, device: str, group_device: str) -> list[tuple[str, Callable]]:
    async def topology(app, pilot):
        await _select(app, pilot, device)

    async def groups(app, pilot):
        await _select(app, pilot, group_device)
        await pilot.press("2")
        await pilot.pause()

    async def trust(app, pilot):
        await _select(app, pilot, device)
        await pilot.press("3")
        await pilot.pause()
        await pilot.pause()

    async def resources(app, pilot):
        await _select(app, pilot, group_device)
        await pilot.press("4")
        await pilot.pause()
        await pilot.pause()

    async def plan(app, pilot):
        await _select(app, pilot, group_device)
        app.add_action(["assign", group_device, "--vm", "win11"])
        await app.workers.wait_for_complete()
        await pilot.pause()

    async def export(app, pilot):
        await _select(app, pilot, group_device)
        app.add_action(["assign", group_device, "--vm", "win11", "--group"])
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("down", "down")  # shell, undo, libvirt: the file name follows
        await pilot.pause()

    async def help_screen(app, pilot):
        await pilot.press("question_mark")

    return [
        ("01-topology", topology),
        ("02-groups", groups),
        ("03-trust", trust),
        ("04-resources", resources),
        ("05-plan-findings", plan),
        ("06-export", export),
        ("07-help", help_screen),
    ]


async def make_screenshots(out_dir: str | os.PathLike, *, source: str, device: str, group_device: str, walkthrough: str | None = None) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    topology = load_source(source)
    made = []
    for name, script in scenarios(source, device, group_device):
        made.append(await _shoot(ExplorerApp(topology, source=source), out, name, script))
    if walkthrough:
        from .walkthrough import get_walkthrough

        w = get_walkthrough(walkthrough)
        wt = load_source(w.topology)

        async def nothing(app, pilot):
            await pilot.pause()

        made.append(await _shoot(ExplorerApp(wt, source=w.topology, walkthrough=w), out, f"08-walkthrough-{walkthrough}", nothing))
    return made


def run(out_dir: str, source: str, device: str, group_device: str, walkthrough: str | None = None) -> list[Path]:
    return asyncio.run(make_screenshots(out_dir, source=source, device=device, group_device=group_device, walkthrough=walkthrough))
