"""The interactive explorer: view modes over a lazily filled tree, and a details pane."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Input, LoadingIndicator, Static, Tree

from ..model import Address, AddressError, Topology, names
from .views import VIEW_TYPES, Analysis, GroupKey

HELP_TEXT = """\
pci-explorer: keys

  1 / t      topology view: domains, root ports, switches, bridges, devices
  2 / g      IOMMU groups view: predicted groups, checked against the kernel's
  3 / u      trust view: external-facing ports and untrusted devices, and the cost
  4 / r      resources view: bus numbers, windows (used, free, largest aligned block), SR-IOV headroom
  /          search by address, name, vendor:device or driver (enter: go, escape: back)
  n          next search match
  enter      expand or collapse the selected node
  ctrl+p     command palette: every action and a device search
  ?          this help
  q          quit

The details pane follows the cursor: every fact the source gave, 'unknown' where it
did not, why the device's IOMMU group is what it is, and what its trust costs.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    #help { width: 90; height: auto; border: round $accent; background: $surface; padding: 1 2; }
    """

    def compose(self) -> ComposeResult:
        yield Static(Text(HELP_TEXT), id="help")

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class DeviceSearch(Provider):
    """Palette search over devices: address, name, vendor:device, driver."""

    async def search(self, query: str) -> Hits:
        app = self.app
        if not isinstance(app, ExplorerApp) or app.topology is None:
            return
        matcher = self.matcher(query)
        for addr, text in app.search_index:
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), lambda a=addr: app.reveal(a), help="go to this device")


class ActionCommands(Provider):
    async def search(self, query: str) -> Hits:
        app = self.app
        if not isinstance(app, ExplorerApp):
            return
        matcher = self.matcher(query)
        for title, action, help_text in (
            ("view: topology", "view('topology')", "the PCI tree"),
            ("view: IOMMU groups", "view('groups')", "groups, predicted and as the kernel reported them"),
            ("view: trust", "view('trust')", "external-facing ports and untrusted devices"),
            ("view: resources", "view('resources')", "bus numbers, windows and free space"),
            ("search devices", "search", "find by address, name, IDs or driver"),
            ("help: keys", "help", "list the keys"),
        ):
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), lambda a=action: app.run_action(a), help=help_text)


class ModeTree(Tree[Any]):
    """A tree over one view; children are created only when a node is first expanded."""

    def __init__(self, **kw: Any) -> None:
        super().__init__("machine", **kw)
        self.show_root = False
        self.guide_depth = 3
        self.view: Any = None
        self._populated: set[Any] = set()
        self._key_nodes: dict[Any, Any] = {}

    def set_view(self, view: Any) -> None:
        self.view = view
        self.clear()
        self._populated = set()
        self._key_nodes = {}
        self.ensure_children(self.root)
        for child in list(self.root.children)[:64]:
            if view.name != "groups":
                self.ensure_children(child)
                child.expand()
        self.root.expand()

    def ensure_children(self, node: Any) -> None:
        key = node.data
        marker = ("__root__",) if node is self.root else key
        if marker in self._populated or self.view is None:
            return
        self._populated.add(marker)
        for child in self.view.children(None if node is self.root else key):
            n = node.add(self.view.label(child), data=child, allow_expand=self.view.has_children(child))
            self._key_nodes[child] = n

    @on(Tree.NodeExpanded)
    def _expanded(self, event: Tree.NodeExpanded) -> None:
        self.ensure_children(event.node)

    def reveal(self, key: Any) -> bool:
        """Expand the path to ``key`` (populating as needed) and move the cursor there."""
        path = self.view.path_to(key) if self.view is not None else []
        node = self.root
        self.ensure_children(node)
        for k in path:
            nxt = self._key_nodes.get(k)
            if nxt is None:
                return False
            if k != path[-1]:
                self.ensure_children(nxt)
                nxt.expand()
            node = nxt
        if node is self.root:
            return False
        # Lines are rebuilt on the next refresh; move the cursor once the node has one.
        self.call_after_refresh(self.move_cursor, node)
        return True


class TopologyLoaded(Message):
    def __init__(self, topology: Topology) -> None:
        super().__init__()
        self.topology = topology


class LoadFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ExplorerApp(App):
    """pci-explorer's main app. Give it a Topology, or a SOURCE spec to load in the background."""

    TITLE = "pci-explorer"
    COMMANDS = App.COMMANDS | {DeviceSearch, ActionCommands}
    CSS = """
    #main { height: 1fr; }
    ModeTree { width: 3fr; border: round $primary; }
    #details-pane { width: 2fr; border: round $secondary; }
    #details { padding: 0 1; }
    #search { dock: top; display: none; }
    #search.-visible { display: block; }
    LoadingIndicator { height: 3; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("1,t", "view('topology')", "Topology", key_display="1"),
        Binding("2,g", "view('groups')", "Groups", key_display="2"),
        Binding("3,u", "view('trust')", "Trust", key_display="3"),
        Binding("4,r", "view('resources')", "Resources", key_display="4"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("n", "search_next", "Next match", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("escape", "close_search", "Back", show=False),
    ]

    def __init__(self, topology: Topology | None = None, *, source: str | None = None, notice: str | None = None) -> None:
        super().__init__()
        self.topology = topology
        self.source_spec = source
        self.notice = notice
        self.analysis: Analysis | None = None
        self.view_name = "topology"
        self.selected: Any = None
        self._matches: list[Address] = []
        self._match_pos = 0

    # ---- layout and loading --------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="search: address, name, vendor:device or driver", id="search")
        with Horizontal(id="main"):
            yield ModeTree(id="tree")
            with VerticalScroll(id="details-pane"):
                yield Static(Text("Select a device to see every fact about it."), id="details")
        yield Footer()

    def on_mount(self) -> None:
        self.theme = self.theme or "textual-dark"
        if self.notice:
            self.notify(self.notice, markup=False, timeout=10)
        if self.topology is not None:
            self._install(self.topology)
        else:
            self.query_one("#details", Static).update(Text(f"Loading {self.source_spec or 'this machine'}…"))
            self.mount(LoadingIndicator(id="loading"), before=self.query_one("#main"))
            self._load()

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load(self) -> None:
        from ..sources import SourceError, load_source

        try:
            t = load_source(self.source_spec)
        except SourceError as e:
            self.post_message(LoadFailed(str(e)))
            return
        self.post_message(TopologyLoaded(t))

    def on_topology_loaded(self, message: TopologyLoaded) -> None:
        for w in self.query("#loading"):
            w.remove()
        self._install(message.topology)

    def on_load_failed(self, message: LoadFailed) -> None:
        for w in self.query("#loading"):
            w.remove()
        self.query_one("#details", Static).update(Text(f"Could not load: {message.error}", style="bold red"))

    def _install(self, topology: Topology) -> None:
        self.topology = topology
        self.analysis = Analysis(topology)
        src = topology.source
        self.sub_title = f"{src.location} ({src.kind}, {len(topology)} functions)"
        self.search_index = [
            (fn.address, " ".join(x for x in (fn.bdf, names.short_name(fn), fn.vendor_device or "", fn.driver if isinstance(fn.driver, str) else "") if x))
            for fn in topology
        ]
        self._set_view(self.view_name)
        self.query_one(ModeTree).focus()

    # ---- views ---------------------------------------------------------------------
    def _set_view(self, name: str) -> None:
        if self.analysis is None:
            return
        self.view_name = name
        view = VIEW_TYPES[name](self.analysis)
        tree = self.query_one(ModeTree)
        tree.border_title = view.title
        tree.set_view(view)

    def action_view(self, name: str) -> None:
        if self.analysis is None or name == self.view_name:
            return
        keep = self.selected if isinstance(self.selected, Address) else None
        self._set_view(name)
        if keep is not None:
            self.call_after_refresh(self.reveal, keep)

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        key = event.node.data
        tree = self.query_one(ModeTree)
        if key is None or tree.view is None:
            return
        self.selected = key
        self.query_one("#details", Static).update(tree.view.details(key))

    # ---- search --------------------------------------------------------------------
    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.add_class("-visible")
        box.focus()

    def action_close_search(self) -> None:
        box = self.query_one("#search", Input)
        box.remove_class("-visible")
        self.query_one(ModeTree).focus()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        self._matches = self.find(event.value)
        self._match_pos = 0
        self.action_close_search()
        if not self._matches:
            self.notify(f"no device matches {event.value!r}", markup=False, severity="warning")
            return
        self.reveal(self._matches[0])
        if len(self._matches) > 1:
            self.notify(f"{len(self._matches)} matches: n for the next", markup=False)

    def action_search_next(self) -> None:
        if self._matches:
            self._match_pos = (self._match_pos + 1) % len(self._matches)
            self.reveal(self._matches[self._match_pos])

    def find(self, query: str) -> list[Address]:
        """Devices matching an address (full or partial), vendor:device, driver or name."""
        q = query.strip().lower()
        if not q or self.topology is None:
            return []
        try:
            exact = Address.parse(q)
            if exact in self.topology.functions:
                return [exact]
        except AddressError:
            pass
        return [addr for addr, text in self.search_index if q in text.lower()]

    def reveal(self, addr: Address) -> bool:
        tree = self.query_one(ModeTree)
        ok = tree.reveal(addr)
        if ok:
            tree.focus()
        return ok

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    # For tests and the palette: which group a device sits in, as shown.
    def group_of(self, addr: Address) -> str | None:
        if self.analysis is None:
            return None
        return self.analysis.groups.group_of.get(addr)


__all__ = ["ExplorerApp", "GroupKey", "ModeTree"]
