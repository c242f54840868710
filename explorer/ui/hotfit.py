"""The resources view's hot-add what-if: what a hotplug port has room for now, and what a
device the user describes gets there, with the simulated boot-parameter remedies.

Nothing here decides anything. A request goes through the hot-add dialog's parser
(:func:`hot_add_words`, then the plan's ``hot-add`` action parser, the one ``plan add`` and
the dialog use) and is answered by the same calls ``pci-explorer fit`` makes
(:func:`explorer.kernel.context.resolve_context`, :func:`explorer.kernel.setup.fit_hotadd`,
which simulates each boot-parameter remedy as a reboot followed by the hot-add, and
:func:`explorer.export.resources.fit_text`). So the details pane shows, word for word, what
``pci-explorer fit SOURCE --port PORT --bar ...`` prints.

The simulation runs in a worker thread (:class:`FitHere`, mixed into the app); the view
only reads the answers kept in :attr:`Analysis.hot_fits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.message import Message

from ..model import Address, Topology

#: The key that asks for a device's BARs below the selected port (documented in the help).
FIT_KEY = "F"

FIT_HINT = ("Its BARs as KIND:SIZE (io, mem32, mem64, pref32, pref64), buses=N for a bridge, hotplug=acpi|native "
            "to override the slot driver the source shows. E.g. pref64:256M mem32:16M. The outcome and the "
            "boot-parameter remedies (each simulated: the next boot, then this hot-add) show in the details.")


def hot_add_words(port: Address | str, text: str) -> list[str]:
    """The hot-add dialog's words for ``text`` (``KIND:SIZE ... buses=N hotplug=MODE``)."""
    words = ["hot-add", str(port)]
    for tok in text.split():
        if tok.startswith("buses="):
            words += ["--buses", tok.split("=", 1)[1]]
        elif tok.startswith("hotplug="):
            words += ["--hotplug", tok.split("=", 1)[1]]
        else:
            words += ["--bar", tok]
    return words


@dataclass(frozen=True)
class FitRequest:
    """One device to try below a port, as the hot-add dialog reads it."""

    port: Address
    text: str
    bars: tuple[str, ...]
    buses: int = 0
    hotplug: str | None = None
    bridge: str | None = None

    def fit_args(self) -> list[str]:
        """The ``pci-explorer fit`` options that ask the same (after SOURCE)."""
        out = ["--port", str(self.port)]
        for b in self.bars:
            out += ["--bar", b]
        out += ["--buses", str(self.buses)] if self.buses else []
        out += ["--bridge", self.bridge] if self.bridge else []
        return out + (["--hotplug", self.hotplug] if self.hotplug else [])


def parse_request(port: Address, text: str) -> FitRequest:
    """``text`` as the hot-add dialog reads it; raises ValueError (one line) on bad input."""
    from ..plan.actions import HotAdd, parse_action

    act = parse_action(hot_add_words(port, text))
    assert isinstance(act, HotAdd)
    return FitRequest(port, " ".join(text.split()), tuple(b.engine_spec() for b in act.bars), act.buses,
                      act.hotplug, act.bridge)


def run_fit(topology: Topology, req: FitRequest) -> tuple[bool, str]:
    """(fits, the text ``pci-explorer fit`` prints) for ``req``: the calls ``fit`` makes."""
    from ..export.resources import fit_text
    from ..kernel.context import resolve_context
    from ..kernel.setup import fit_hotadd, parse_bar_spec

    bars = [parse_bar_spec(b) for b in req.bars]
    ctx = resolve_context(topology, hotplug=req.hotplug, kernel=None, kernel_params=[], port=req.port)
    res = fit_hotadd(topology, req.port, bars, buses=req.buses, bridge=req.bridge, context=ctx)
    return res.fits, fit_text(res)


@dataclass(frozen=True)
class HotFit:
    """A request and, once the worker is done, its answer (text None: still simulating)."""

    request: FitRequest
    fits: bool | None = None
    text: str | None = None
    error: str | None = None
    #: Which request this is (a newer one for the same port replaces it).
    key: int = 0


def firmware_line(topology: Topology) -> tuple[str, str]:
    """Whether boot-parameter remedies can be simulated on this source, and the style."""
    from ..model.firmware import attached_firmware

    fw = attached_firmware(topology)
    if fw is None:
        return ("firmware state unknown (no kernel log): reboot remedies are not simulated; "
                "a snapshot keeps the kernel log as dmesg.txt", "yellow")
    if not fw.firmware_known:
        why = "; ".join(fw.notes) or "no PCI enumeration in the kernel log"
        return f"firmware state unknown ({why}): reboot remedies are not simulated", "yellow"
    return "reboot remedies: simulated from the kernel log's firmware state", "green"


def _headroom(bridge: Any) -> str:
    from ..kernel.resources import fmt_size

    parts = []
    for w in bridge.windows:
        lb = w.largest_block
        kind = w.kind.value + ("64" if w.is_64bit else "")
        parts.append(f"{kind} {fmt_size(lb.size) if lb else '0'}")
    shut = [k.value for k in bridge.closed]
    if shut:
        parts.append("no " + "/".join(shut) + " window")
    return ", ".join(parts) or "no windows"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _summary_lines(text: str) -> list[str]:
    """fit's verdict line (with the possibilities it weighs, when the source leaves a fact
    open) and its remedies, verbatim, to show before the whole output."""
    lines = text.splitlines()
    out = lines[:1]
    i = 1
    while i < len(lines) and lines[i].startswith("  with "):  # "DEPENDS": one line per possibility
        out.append(lines[i])
        i += 1
    head = next((n for n in range(i, len(lines)) if lines[n].strip() == "remedies (least change first):"), None)
    if head is not None:
        out.append(lines[head])
        for ln in lines[head + 1:]:
            if _indent(ln) <= _indent(lines[head]):
                break
            out.append(ln)
    return out


def port_section(analysis: Any, bridge: Any) -> Text:
    """The hot-add part of a port's details in the resources view: what ``F`` asked for
    first (fit's verdict and remedies, then all it prints), then the port's room now."""
    t = analysis.topology
    out = Text()
    got = getattr(analysis, "hot_fits", {}).get(bridge.address)
    if got is not None:
        out.append(f"{FIT_KEY} {got.request.text}", style="bold")
        if got.error is not None:
            out.append(f": {got.error}\n\n", style="bold red")
        elif got.text is None:
            out.append(": simulating the hot-add, then each remedy's reboot…\n\n", style="italic")
        else:
            out.append(", as `fit` answers it:\n", style="bold")
            summary = _summary_lines(got.text)
            out.append(summary[0] + "\n", style="bold green" if got.fits else "bold red")
            for ln in summary[1:]:
                out.append(ln + "\n")
            out.append("\n")
    out.append(f"Hot-add below {bridge.name}", style="bold")
    out.append(f" ({FIT_KEY}: try a device here)\n", style="dim")
    out.append(f"  room now, without re-sizing a window (largest aligned free block): {_headroom(bridge)}\n")
    line, style = firmware_line(t)
    out.append(f"  {line}\n", style=style)
    if got is not None and got.text is not None and got.error is None:
        cmd = "pci-explorer fit SOURCE " + " ".join(got.request.fit_args())
        out.append(f"\nwhat `{cmd}` prints:\n", style="dim")
        out.append(got.text)
    return out


class FitFinished(Message):
    def __init__(self, key: int, port: Address, fits: bool | None, text: str | None, error: str | None) -> None:
        super().__init__()
        self.key = key
        self.port = port
        self.fits = fits
        self.text = text
        self.error = error


class FitHere:
    """The app's ``F`` key in the resources view: ask for BARs, simulate in a worker, show the
    answer in the port's details. The key (and its footer entry) exists only in that view."""

    _fit_counter = 0

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "fit_here" and not parameters:  # the key; the palette's entry works anywhere
            return getattr(self, "view_name", None) == "resources"
        return super().check_action(action, parameters)  # type: ignore[misc]

    def action_fit_here(self, anywhere: bool = False) -> None:
        from ..model import names
        from .dialogs import AskDialog

        app: Any = self
        if app.topology is None or app.analysis is None:
            return
        addr = app.selection.device
        fn = app.topology.functions.get(addr) if addr is not None else None
        if fn is None or fn.is_bridge is False:
            what = f"{addr} ({names.short_name(fn)}) is not a bridge" if fn is not None else "No port is selected"
            app.notify(f"{what}: select a hotplug port (rows marked hotplug) to try a device below it.",
                       severity="warning", markup=False)
            return
        if app.view_name != "resources":  # from the command palette in another view
            app.action_view("resources")
        last = app.analysis.hot_fits.get(addr)
        value = last.request.text if last is not None else getattr(app, "_last_fit_text", "")

        def done(text: str | None) -> None:
            if text:
                self.fit_request(addr, text)

        app.push_screen(AskDialog(f"Try a device below {addr}", FIT_HINT, value, placeholder="pref64:256M"), done)

    def fit_request(self, port: Address, text: str) -> None:
        """Answer ``text`` (the dialog's words) for ``port`` in the background."""
        app: Any = self
        try:
            req = parse_request(port, text)
        except ValueError as e:
            app.notify(str(e), severity="error", markup=False)
            return
        app._last_fit_text = req.text
        FitHere._fit_counter += 1
        key = FitHere._fit_counter
        app.analysis.hot_fits[port] = HotFit(req, key=key)
        self._refresh_fit(port)
        app._fit_worker(app.topology, req, key)

    @work(thread=True, group="fit", exit_on_error=False)  # one per port asked; not exclusive
    def _fit_worker(self, topology: Topology, req: FitRequest, key: int) -> None:
        app: Any = self
        try:
            fits, text = run_fit(topology, req)
        except (ValueError, KeyError) as e:
            app.post_message(FitFinished(key, req.port, None, None, str(e).strip("'\"")))
            return
        app.post_message(FitFinished(key, req.port, fits, text, None))

    def on_fit_finished(self, message: FitFinished) -> None:
        app: Any = self
        got = app.analysis.hot_fits.get(message.port) if app.analysis is not None else None
        if got is None or got.key != message.key:
            return  # a newer request for this port, or another source since
        app.analysis.hot_fits[message.port] = HotFit(got.request, message.fits, message.text, message.error, got.key)
        self._refresh_fit(message.port)

    def _refresh_fit(self, port: Address) -> None:
        """Show the port's details again when it is the row selected."""
        from .app import ModeTree

        app: Any = self
        if app.selection.device != port:
            return
        tree = app.query_one(ModeTree)
        if tree.view is not None and app.selection.key is not None:
            app.show_details(tree.view.details(app.selection.key))
            app.query_one("#details-pane").scroll_home(animate=False)  # the answer is at the top


__all__ = ["FIT_KEY", "FitFinished", "FitHere", "FitRequest", "HotFit", "firmware_line", "hot_add_words",
           "parse_request", "port_section", "run_fit"]
