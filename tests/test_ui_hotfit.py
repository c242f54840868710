"""The resources view's hot-add what-if (F): on real captures with a kernel log, what the details
pane shows for a hotplug port equals what ``pci-explorer fit`` prints for the same port and BARs,
simulated reboot remedies included; at 80x24 the verdict and the first remedy are on screen."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from textual.widgets import Input

from explorer.cli import main
from explorer.model import Address
from explorer.sources import load_source
from explorer.ui import hotfit
from explorer.ui.app import ExplorerApp, ModeTree
from explorer.ui.dialogs import AskDialog
from explorer.ui.views import WindowKey

BOOT = Path(__file__).parent / "fixtures" / "qemu-boot"
#: The machines booted without parameters: the firmware's state is in their dmesg.txt.
CAPTURES = [BOOT / k / "boot-busnum-none.tar.gz" for k in ("6.1", "6.12")]
REQUEST = "2:pref64:1G"
NO_LOG = "builtin:hotplug-chassis-small-window"  # a YAML machine: no kernel log


def empty_hotplug_ports(t):
    for fn in t:
        if fn.is_bridge and fn.slot and getattr(fn.slot, "hotplug", False) and not t.children(fn.address):
            yield fn.address


def fit_output(capsys, source: str, port: Address, words: list[str]) -> str:
    """What ``pci-explorer fit SOURCE --port PORT ...`` prints."""
    capsys.readouterr()
    rc = main(["fit", source, "--port", str(port), *words])
    out = capsys.readouterr().out
    assert rc in (0, 1) and out
    return out.rstrip("\n")


async def settle(app, pilot):
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def go_to_port(app, pilot, port: Address) -> None:
    """The resources view, the port's row selected."""
    await pilot.press("4")
    await pilot.pause()
    assert app.reveal(port)
    await pilot.pause()
    await pilot.pause()
    assert app.selection.device == port


async def ask_fit(app, pilot, port: Address, text: str) -> None:
    """As a person does it: on the port's row, F, type the BARs, enter."""
    assert app.selection.device == port
    await pilot.press("F")
    await pilot.pause()
    assert isinstance(app.screen, AskDialog)
    frame = app.screen.query_one("#frame").region
    assert frame.right <= app.size.width and frame.bottom <= app.size.height
    box = app.screen.query_one(Input)
    box.value = ""
    await pilot.press(*["colon" if c == ":" else c for c in text])
    await pilot.pause()
    assert box.value == text
    await pilot.press("enter")
    await settle(app, pilot)


def squeeze(text: str) -> str:
    """Text without its white space: the pane wraps long lines, inside words too."""
    return "".join(text.split())


def visible_details(app) -> str:
    """The details pane's lines that are on screen, white space dropped."""
    pane = app.query_one("#details-pane")
    lines = pane.text.plain.split("\n")
    shown = lines[round(pane.scroll_y): round(pane.scroll_y) + pane.scrollable_content_region.height]
    return squeeze("".join(shown))


@pytest.mark.parametrize("size", [(80, 24), (140, 42)])
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.parent.name)
async def test_fit_here_shows_what_fit_prints(capture, size, capsys):
    src = str(capture)
    t = load_source(src)
    port = next(iter(empty_hotplug_ports(t)))
    expected = fit_output(capsys, src, port, ["--bar", REQUEST])
    remedies = [ln for ln in expected.splitlines() if re.match(r"    \d+\. ", ln)]
    # the capture is one where fit's simulated reboot finds a remedy
    assert any(ln.split(". ", 1)[1].startswith("fits after a reboot with pci=") for ln in remedies), expected
    app = ExplorerApp(t, source=src)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await go_to_port(app, pilot, port)
        before = app.details_text.plain
        assert before.startswith(f"Hot-add below {port}")
        assert "reboot remedies: simulated from the kernel log" in before
        await ask_fit(app, pilot, port, REQUEST)
        shown = app.details_text.plain
        # all of fit's output, word for word
        assert expected in shown
        # its verdict and remedies first, before the port's room and the full output
        head = shown.split(f"Hot-add below {port}", 1)[0]
        assert head.splitlines()[1] == expected.splitlines()[0]
        for ln in remedies:
            assert ln in head
        # the verdict and the first remedy are on screen without scrolling, at 80x24 too
        seen = visible_details(app)
        assert squeeze(expected.splitlines()[0]) in seen
        assert squeeze(remedies[0]) in seen, (seen, remedies[0])
        # the port's window rows stand for the port: they show it too
        await pilot.press("down")
        await pilot.pause()
        assert isinstance(app.selection.key, WindowKey) and app.selection.device == port
        assert expected in app.details_text.plain


async def test_without_a_kernel_log_the_firmware_state_is_unknown(capsys):
    t = load_source(NO_LOG)
    port = next(a for a in empty_hotplug_ports(t))
    expected = fit_output(capsys, NO_LOG, port, ["--bar", "pref64:1G", "--hotplug", "acpi"])
    assert "firmware's assignment is unknown (no kernel log)" in expected
    app = ExplorerApp(t, source=NO_LOG)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await go_to_port(app, pilot, port)
        assert "firmware state unknown (no kernel log)" in app.details_text.plain
        await ask_fit(app, pilot, port, "pref64:1G hotplug=acpi")
        assert expected in app.details_text.plain


async def test_the_simulation_runs_in_a_worker_and_the_ui_keeps_answering(monkeypatch, capsys):
    """While the reboots are simulated the details say so and the tree still moves; the answer
    replaces the note when the worker is done."""
    src = str(CAPTURES[0])
    t = load_source(src)
    port = next(iter(empty_hotplug_ports(t)))
    expected = fit_output(capsys, src, port, ["--bar", REQUEST])  # (the app takes stdout while it runs)
    release = threading.Event()
    real = hotfit.run_fit
    calls = []

    def held(topology, req):
        calls.append(threading.current_thread() is threading.main_thread())
        release.wait(30)
        return real(topology, req)

    monkeypatch.setattr(hotfit, "run_fit", held)
    app = ExplorerApp(t, source=src)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("4")
        assert app.reveal(port)
        await pilot.pause()
        await pilot.pause()
        await pilot.press("F")
        await pilot.pause()
        app.screen.query_one(Input).value = REQUEST
        await pilot.press("enter")
        await pilot.pause()
        assert "simulating" in app.details_text.plain
        tree = app.query_one(ModeTree)
        line = tree.cursor_line
        await pilot.press("down")
        await pilot.pause()
        assert tree.cursor_line == line + 1  # the UI answered while the worker waits
        await pilot.press("up")
        await pilot.pause()
        release.set()
        await settle(app, pilot)
        assert calls == [False]
        assert expected in app.details_text.plain


async def test_bad_bars_and_non_ports_are_refused_with_the_reason():
    src = str(CAPTURES[0])
    t = load_source(src)
    port = next(iter(empty_hotplug_ports(t)))
    endpoint = next(fn.address for fn in t if fn.is_bridge is False and fn.address.bus != 0)
    app = ExplorerApp(t, source=src)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.pause()
        await pilot.press("4")
        assert app.reveal(endpoint)
        await pilot.pause()
        await pilot.pause()
        await pilot.press("F")
        await pilot.pause()
        assert not isinstance(app.screen, AskDialog)
        assert any("is not a bridge" in n.message for n in app._notifications)
        assert app.reveal(port)
        await pilot.pause()
        await pilot.pause()
        await pilot.press("F")
        await pilot.pause()
        app.screen.query_one(Input).value = "pref64:3G"  # not a power of two
        await pilot.press("enter")
        await settle(app, pilot)
        assert port not in app.analysis.hot_fits
        assert any("power of two" in n.message for n in app._notifications)


async def test_the_key_is_in_the_footer_of_the_resources_view_only(capsys):
    """F belongs to the resources view: its footer shows it, other views neither show nor take
    it; the command palette's entry opens the resources view on the port and asks there."""
    src = str(CAPTURES[1])
    t = load_source(src)
    port = next(iter(empty_hotplug_ports(t)))
    expected = fit_output(capsys, src, port, ["--bar", "pref64:256M"])
    app = ExplorerApp(t, source=src)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.reveal(port)
        await pilot.pause()
        assert "F" not in app.screen.active_bindings
        await pilot.press("F")
        await pilot.pause()
        assert not isinstance(app.screen, AskDialog) and app.view_name == "topology"
        await pilot.press("4")
        await pilot.pause()
        assert "F" in app.screen.active_bindings
        await pilot.press("1")
        await pilot.pause()
        assert "F" not in app.screen.active_bindings
        await app.run_action("fit_here(True)")  # what the palette's entry does
        await pilot.pause()
        await pilot.pause()
        assert app.view_name == "resources" and isinstance(app.screen, AskDialog)
        app.screen.query_one(Input).value = "pref64:256M"
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.selection.device == port
        assert expected in app.details_text.plain


async def test_an_outcome_that_depends_on_unknown_facts_shows_each_possibility_first(capsys):
    """An lspci capture does not say which driver owns a slot: fit weighs each possibility; the
    details put its verdict, one line per possibility and its remedies first, as fit words them."""
    src = str(Path(__file__).parent / "fixtures" / "lspci" / "laptop-intel-xps13-9310-tgl-tb4-lmde6-01.txt")
    t = load_source(src)
    port = next(fn.address for fn in t if fn.is_bridge and fn.slot and getattr(fn.slot, "hotplug", False))
    expected = fit_output(capsys, src, port, ["--bar", "pref64:8G"])
    lines = expected.splitlines()
    possibilities = [ln for ln in lines[1:] if ln.startswith("  with ")]
    remedies = [ln for ln in lines if re.match(r" +\d+\. ", ln)]
    assert "DEPENDS" in lines[0] and len(possibilities) > 1 and remedies
    app = ExplorerApp(t, source=src)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await go_to_port(app, pilot, port)
        assert "firmware state unknown (no kernel log)" in app.details_text.plain
        await ask_fit(app, pilot, port, "pref64:8G")
        shown = app.details_text.plain
        assert expected in shown
        head = shown.split(f"Hot-add below {port}", 1)[0].splitlines()
        assert head[1:] == [lines[0], *possibilities, next(ln for ln in lines if ln.strip().startswith("remedies (")),
                            *remedies, ""]
        assert "kernel log:" not in "\n".join(head)


async def test_answers_for_two_ports_asked_in_turn_both_arrive(monkeypatch, capsys):
    """Asking below a second port while the first is still simulated leaves both answered."""
    src = str(CAPTURES[0])
    t = load_source(src)
    ports = [fn.address for fn in t if fn.is_bridge and fn.slot and getattr(fn.slot, "hotplug", False)][:2]
    assert len(ports) == 2
    expected = {p: fit_output(capsys, src, p, ["--bar", REQUEST]) for p in ports}
    release = threading.Event()
    real = hotfit.run_fit

    def first_waits(topology, req):
        if req.port == ports[0]:
            release.wait(30)
        return real(topology, req)

    monkeypatch.setattr(hotfit, "run_fit", first_waits)
    app = ExplorerApp(t, source=src)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await go_to_port(app, pilot, ports[0])
        await pilot.press("F")
        await pilot.pause()
        app.screen.query_one(Input).value = REQUEST
        await pilot.press("enter")
        await pilot.pause()
        assert app.reveal(ports[1])
        await pilot.pause()
        await pilot.pause()
        await pilot.press("F")
        await pilot.pause()
        app.screen.query_one(Input).value = REQUEST
        await pilot.press("enter")
        for _ in range(600):  # the second answer arrives while the first still waits
            await pilot.pause(0.05)
            if app.analysis.hot_fits[ports[1]].text is not None:
                break
        assert expected[ports[1]] in app.details_text.plain
        assert app.analysis.hot_fits[ports[0]].text is None
        release.set()
        await settle(app, pilot)
        assert app.analysis.hot_fits[ports[0]].text == expected[ports[0]] + "\n"
        assert app.reveal(ports[0])
        await pilot.pause()
        await pilot.pause()
        assert expected[ports[0]] in app.details_text.plain
