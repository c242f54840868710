"""The interactive explorer: view modes over a lazily filled tree, and a details pane."""

from __future__ import annotations

import threading
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.command import DiscoveryHit
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Input, LoadingIndicator, OptionList, Static, Tree
from textual.widgets.option_list import Option

from ..model import Address, AddressError, Topology, names
from .details import DetailsPane
from .hotfit import FitHere
from .dialogs import AskDialog, ChoiceDialog, ConfirmDialog, ExportDialog, HelpDialog, PickDialog, SourceSuggester
from .selection import Selection, hang_wrap_lines, split_lines
from .views import VIEW_TYPES, Analysis, GroupKey
from .walkthrough import State as TourState
from .walkthrough import Walkthrough, check as check_task

HELP_TEXT = """\
Views (the selected device stays selected in each):
  1 / t      topology: domains, root ports, switches, bridges, devices
  2 / g      IOMMU groups: members, [vendor:device], driver, and whether a
             group can be passed through alone
  3 / u      trust: external-facing ports and untrusted devices, and the cost
  4 / r      resources: bus numbers, windows (size, free, largest aligned
             block), each device's BARs, SR-IOV headroom
  F          resources view, on a hotplug port: try a device's BARs
             (KIND:SIZE) below it; its details show what fits and the
             boot-parameter remedies, each simulated (a reboot, then the
             hot-add), as `fit` prints them
  /          search: address, name, vendor:device, driver, class, group
             ("group 15"), tags (untrusted, external-facing, hotplug,
             removable) and planned changes (a VM name, vfio-pci, remove)
  n          next search match

The tree:
  up/down    move            right / left  expand / collapse (or parent)
  enter      expand or collapse              E   expand everything below
  P          show only the path to the selected device (again: show all)

Planning (on the selected device; the plan is validated in the background):
  b          bind to vfio-pci            B   bind its whole IOMMU group
  a          assign to a VM              A   assign its whole IOMMU group
  v          set the SR-IOV VF count     m   create mediated devices
  h          hot-add a device below this hotplug port (its BARs)
  H          hot-add a device copied from a bundled machine (pci-explorer topologies)
  x          hot-remove this device (and what is below it)
  z / y      undo / redo                 f   jump to the next finding
  e          export the plan (refused while it has errors)
  s          save the plan               o   open another source
  ctrl+p     command palette: every action and a device search
  ?          this help
  q          quit (offers to save an unsaved plan)

Planned changes show right after the device's address (a VM name, a driver,
"remove", ...); the plan and its findings sit below the tree.

Walkthroughs: n next step, p previous step, l leave the guide.

The details pane follows the cursor: every fact the source gave, 'unknown'
where it did not, why the device's IOMMU group is what it is, and what its
trust costs.
"""


#: The help dialog (kept under its old name for callers).
def HelpScreen() -> HelpDialog:  # noqa: N802
    return HelpDialog(HELP_TEXT)


#: Every action of the app, for the command palette: (title, action, help).
ACTION_COMMANDS = (
    ("view: topology", "view('topology')", "the PCI tree"),
    ("view: IOMMU groups", "view('groups')", "groups, predicted and as the kernel reported them"),
    ("view: trust", "view('trust')", "external-facing ports and untrusted devices"),
    ("view: resources", "view('resources')", "bus numbers, windows and free space"),
    ("resources: try a device below the selected port (fit, with reboot remedies)", "fit_here(True)", "F"),
    ("search devices", "search", "find by address, name, IDs or driver"),
    ("plan: bind the selected device to vfio-pci", "plan_bind(False)", "b"),
    ("plan: bind the selected device's whole IOMMU group to vfio-pci", "plan_bind(True)", "B"),
    ("plan: assign the selected device to a VM", "plan_assign(False)", "a"),
    ("plan: assign the selected device's whole IOMMU group to a VM", "plan_assign(True)", "A"),
    ("plan: set the SR-IOV VF count", "plan_sriov", "v"),
    ("plan: create mediated devices", "plan_mdev", "m"),
    ("plan: hot-add a device below the selected port", "plan_hot_add", "h"),
    ("plan: hot-add a device from a bundled machine below the selected port", "plan_hot_add_template", "H"),
    ("plan: hot-remove the selected device", "plan_hot_remove", "x"),
    ("tree: expand everything below the selected row", "expand_all", "E"),
    ("tree: show only the path to the selected device", "path_only", "P"),
    ("plan: undo", "undo", "z"),
    ("plan: redo", "redo", "y"),
    ("plan: next finding", "next_finding", "f"),
    ("plan: save", "save", "s"),
    ("plan: export", "export", "e"),
    ("file: open another source", "open_source", "o"),
    ("walkthrough: next step", "tour_next", "n"),
    ("walkthrough: previous step", "tour_back", "p"),
    ("walkthrough: leave", "tour_leave", "l"),
    ("help: keys", "help", "?"),
    ("quit", "request_quit", "q"),
)


class DeviceSearch(Provider):
    """Palette search over devices: address, name, vendor:device, driver, tags."""

    async def search(self, query: str) -> Hits:
        app = self.app
        if not isinstance(app, ExplorerApp) or app.topology is None:
            return
        matcher = self.matcher(query)
        for addr, text in app.search_index:
            score = matcher.match(text)
            if score > 0:
                # Below the actions: "assign" should offer the action before a device whose
                # name happens to match.
                yield Hit(score * 0.5, matcher.highlight(text), lambda a=addr: app.reveal(a), help="go to this device")


class ActionCommands(Provider):
    """Every action of the app; listed when the palette opens empty."""

    async def discover(self) -> Hits:
        app = self.app
        if not isinstance(app, ExplorerApp):
            return
        for title, action, help_text in ACTION_COMMANDS:
            yield DiscoveryHit(title, lambda a=action: app.run_action(a), help=f"key {help_text}" if len(help_text) <= 2 else help_text)

    async def search(self, query: str) -> Hits:
        app = self.app
        if not isinstance(app, ExplorerApp):
            return
        matcher = self.matcher(query)
        for title, action, help_text in ACTION_COMMANDS:
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), lambda a=action: app.run_action(a), help=help_text)


class Chunk:
    """A row standing for a run of a wide level's rows (rows ``start``..``end`` of the
    children of ``parent``): a 100,000-group machine shows 100 rows of 1,000 groups each,
    each filled when opened, instead of 100,000 rows at once."""

    __slots__ = ("parent", "start", "end", "first", "last")

    def __init__(self, parent: Any, start: int, end: int, first: Any, last: Any) -> None:
        self.parent, self.start, self.end, self.first, self.last = parent, start, end, first, last

    def label(self) -> Text:
        return Text(f"{self.first} … {self.last}  ({self.end - self.start:,} rows)", style="dim")


class ModeTree(Tree[Any]):
    """A tree over one view; children are created only when a node is first expanded.

    Rows never scroll sideways: a long name is cut at the pane's edge, and what the plan
    does to a device sits right after its address, where it is seen.
    """

    BINDINGS = [
        Binding("right", "expand_or_child", "Expand", show=False),
        Binding("left", "collapse_or_parent", "Collapse", show=False),
    ]
    #: Expanding everything stops after this many rows (a 100k-function machine stays usable).
    EXPAND_LIMIT = 3000
    #: A level with more children than this shows them in runs of CHUNK rows (class Chunk).
    CHUNK = 1000

    def __init__(self, **kw: Any) -> None:
        super().__init__("machine", **kw)
        self.show_root = False
        self.guide_depth = 3
        self.view: Any = None
        self._populated: set[Any] = set()
        self._key_nodes: dict[Any, Any] = {}
        #: Planned changes per device, shown after its label.
        self.marks: dict[Any, str] = {}
        #: Devices a walkthrough step points at.
        self.highlighted: set[Any] = set()
        #: When set: only the path to this device (and what is below it) is shown.
        self.only: Any = None
        self._only_path: set[Any] = set()

    def make_label(self, key: Any) -> Text:
        if isinstance(key, Chunk):
            return key.label()
        label = self.view.label(key)
        mark = self.marks.get(key)
        look = key in self.highlighted
        if not (mark or look):
            return label
        head = str(key)
        n = len(head) if label.plain.startswith(head) else 0
        out = label[:n]
        if look:
            out.stylize("reverse", 0, n)
            out.append(" ◀", style="bold yellow")
        if mark:
            out.append(f" ◆ {mark}", style="bold cyan")
        out.append_text(label[n:])
        return out

    def action_expand_or_child(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.allow_expand and not node.is_expanded:
            self.ensure_children(node)
            node.expand()
        elif node.children:
            self.move_cursor(node.children[0])

    def action_collapse_or_parent(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded and node.children:
            node.collapse()
        elif node.parent is not None and node.parent is not self.root:
            self.move_cursor(node.parent)

    def expand_all(self, node: Any = None) -> int:
        """Expand every row below ``node`` (the root: the whole tree), up to EXPAND_LIMIT rows."""
        node = node or self.root
        count = 0
        todo = [node]
        while todo and count < self.EXPAND_LIMIT:
            n = todo.pop(0)
            if n is not self.root and not n.allow_expand:
                continue
            self.ensure_children(n)
            n.expand()
            count += len(n.children)
            todo.extend(n.children)
        return count

    def show_only(self, key: Any) -> None:
        """Show only the path from the top to ``key`` (None: everything again)."""
        self.only = key
        self._only_path = set(self.view.path_to(key)) if key is not None and self.view is not None else set()
        self.set_view(self.view)

    def set_highlight(self, keys: set[Any]) -> None:
        changed = keys ^ self.highlighted
        self.highlighted = set(keys)
        for key in changed:
            node = self._key_nodes.get(key)
            if node is not None:
                node.set_label(self.make_label(key))

    def set_marks(self, marks: dict[Any, str]) -> None:
        changed = set(marks) ^ set(self.marks) | {k for k in marks if self.marks.get(k) != marks[k]}
        self.marks = marks
        for key in changed:
            node = self._key_nodes.get(key)
            if node is not None:
                node.set_label(self.make_label(key))

    def set_view(self, view: Any) -> None:
        self.view = view  # marks and highlights carry over to the new view's nodes
        self.clear()
        self._populated = set()
        self._key_nodes = {}
        if self.only is not None and not self.view.path_to(self.only):
            self.only, self._only_path = None, set()
        self.ensure_children(self.root)
        for child in list(self.root.children)[:64]:
            if isinstance(child.data, Chunk):
                break  # a wide top level: its runs stay closed until opened
            if self.only is None or child.data in self._only_path:
                self.ensure_children(child)
                child.expand()
        self.root.expand()

    def _kids(self, key: Any, is_root: bool) -> list[Any]:
        kids = list(self.view.children(None if is_root else key))
        if self.only is not None and (is_root or (key in self._only_path and key != self.only)):
            kids = [k for k in kids if k in self._only_path]
        return kids

    def ensure_children(self, node: Any) -> None:
        key = node.data
        marker = ("__root__",) if node is self.root else key
        if marker in self._populated or self.view is None:
            return
        self._populated.add(marker)
        if isinstance(key, Chunk):
            kids = self._kids(key.parent, key.parent is None)[key.start:key.end]
        else:
            kids = self._kids(key, node is self.root)
            if len(kids) > self.CHUNK:
                parent = None if node is self.root else key
                for start in range(0, len(kids), self.CHUNK):
                    end = min(start + self.CHUNK, len(kids))
                    chunk = Chunk(parent, start, end, kids[start], kids[end - 1])
                    self._key_nodes[chunk] = node.add(chunk.label(), data=chunk, allow_expand=True)
                return
        for child in kids:
            n = node.add(self.make_label(child), data=child, allow_expand=self.view.has_children(child))
            self._key_nodes[child] = n

    def _chunk_holding(self, node: Any, key: Any) -> Any:
        """The Chunk row under ``node`` whose run holds ``key`` (None: ``node`` is not chunked)."""
        first = node.children[0].data if node.children else None
        if not isinstance(first, Chunk):
            return None
        try:
            i = self._kids(first.parent, first.parent is None).index(key)
        except ValueError:
            return None
        return node.children[i // self.CHUNK]

    @on(Tree.NodeExpanded)
    def _expanded(self, event: Tree.NodeExpanded) -> None:
        self.ensure_children(event.node)

    def expand_to(self, key: Any) -> None:
        """Expand the path to ``key`` so its row is shown, without moving the cursor."""
        path = self.view.path_to(key) if self.view is not None else []
        node = self.root
        self.ensure_children(node)
        for k in path[:-1]:
            node = self._node_under(node, k)
            if node is None:
                return
            self.ensure_children(node)
            node.expand()

    def _node_under(self, parent: Any, key: Any) -> Any:
        """The row of ``key``, a child of ``parent``'s row, opening the run that holds it."""
        nxt = self._key_nodes.get(key)
        if nxt is None:
            chunk = self._chunk_holding(parent, key)
            if chunk is None:
                return None
            self.ensure_children(chunk)
            chunk.expand()
            nxt = self._key_nodes.get(key)
        return nxt

    def reveal(self, key: Any) -> bool:
        """Expand the path to ``key`` (populating as needed) and move the cursor there."""
        path = self.view.path_to(key) if self.view is not None else []
        node = self.root
        self.ensure_children(node)
        for k in path:
            nxt = self._node_under(node, k)
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


def search_rows(t: Topology, analysis: Analysis) -> list[tuple[Address, str]]:
    """Search text per device (address, name, IDs, driver, class, group, tags), without the
    plan's marks. Computes the analysis's groups and trust: the load thread calls it, so a
    big machine's first keystrokes don't wait for them."""
    from ..export.topology import device_badges

    trust = analysis.trust
    group_of = analysis.groups.group_of
    index = []
    for fn in t:
        words = [fn.bdf, names.short_name(fn), fn.vendor_device or "", names.class_name(fn) or ""]
        if isinstance(fn.driver, str):
            words.append(fn.driver)
        groups = {group_of.get(fn.address)}
        for kind, value in device_badges(fn):
            if kind == "group":
                groups.add(value)
            elif kind in ("hotplug", "removable", "external-facing", "vf"):
                words.append(kind)
        words += [f"group {g} g{g}" for g in sorted(x for x in groups if x is not None)]
        tr = trust.get(fn.address)
        if tr is not None and tr.untrusted:
            words.append("untrusted")
        index.append((fn.address, " ".join(w for w in words if w)))
    return index


def _bundled() -> list[tuple[str, str]]:
    """The bundled machines (builtin:NAME) with their one-line descriptions."""
    from ..sources import builtin_descriptions

    return builtin_descriptions()


class TopologyLoaded(Message):
    """A loaded topology; with ``total``, a preview of its first functions (more to come)."""

    def __init__(self, topology: Topology, total: int | None = None, generation: int = 0,
                 analysis: Analysis | None = None, search: list[tuple[Address, str]] | None = None) -> None:
        super().__init__()
        self.topology = topology
        self.total = total
        self.generation = generation
        #: Computed in the load thread: the analysis (groups, trust, the display tree) and search rows.
        self.analysis = analysis
        self.search = search


class LoadFailed(Message):
    def __init__(self, error: str, generation: int = 0) -> None:
        super().__init__()
        self.error = error
        self.generation = generation


#: What works on a preview (the first functions of a big machine, while the rest loads):
#: looking around. Everything that plans or judges waits for the whole machine.
PREVIEW_ACTIONS = frozenset({
    "request_quit", "quit", "help", "view", "search", "close_search", "search_next", "expand_all", "path_only",
    "open_source", "command_palette", "toggle_dark", "screenshot", "focus_next", "focus_previous", "bell", "notify",
})


class ValidationFinished(Message):
    def __init__(self, revision: int, findings: list) -> None:
        super().__init__()
        self.revision = revision
        self.findings = findings


class ExplorerApp(FitHere, App):
    """pci-explorer's main app. Give it a Topology, or a SOURCE spec to load in the background."""

    TITLE = "pci-explorer"
    COMMANDS = App.COMMANDS | {DeviceSearch, ActionCommands}
    CSS = """
    #main { height: 1fr; }
    ModeTree { width: 3fr; border: round $primary; overflow-x: hidden; }
    #side { width: 2fr; }
    #details-pane { height: 2fr; border: round $secondary; scrollbar-size-vertical: 1; }
    #search { dock: top; display: none; }
    #search.-visible { display: block; }
    LoadingIndicator { height: 3; }
    #plan-panel { height: 30%; min-height: 6; max-height: 14; display: none; }
    #plan-panel.-visible { display: block; }
    #plan-list { width: 2fr; height: 100%; border: round $primary; }
    #findings { width: 3fr; height: 100%; border: round $warning; }
    #tour { height: 3fr; min-height: 6; border: round $accent; padding: 0 1; display: none; }
    #tour.-visible { display: block; }
    #main.-tour ModeTree { width: 1fr; }
    #main.-tour #side { width: 1fr; }
    Footer { height: 1; }
    """
    BINDINGS = [
        Binding("q", "request_quit", "Quit"),
        Binding("1,t", "view('topology')", "Topology", key_display="1", show=False),
        Binding("2,g", "view('groups')", "Groups", key_display="2", show=False),
        Binding("3,u", "view('trust')", "Trust", key_display="3", show=False),
        Binding("4,r", "view('resources')", "Resources", key_display="4", show=False),
        Binding("F", "fit_here", "Fit here"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("n", "search_next", "Next match", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("escape", "close_search", "Back", show=False),
        Binding("b", "plan_bind(False)", "vfio-pci", show=False),
        Binding("B", "plan_bind(True)", "Group to vfio-pci", show=False),
        Binding("E", "expand_all", "Expand all", show=False),
        Binding("P", "path_only", "Path only", show=False),
        Binding("a", "plan_assign(False)", "Assign"),
        Binding("A", "plan_assign(True)", "Assign group", show=False),
        Binding("v", "plan_sriov", "VFs", show=False),
        Binding("m", "plan_mdev", "mdev", show=False),
        Binding("h", "plan_hot_add", "Hot-add", show=False),
        Binding("x", "plan_hot_remove", "Hot-remove", show=False),
        Binding("H", "plan_hot_add_template", "Hot-add from template", show=False),
        Binding("z", "undo", "Undo", show=False),
        Binding("y", "redo", "Redo", show=False),
        Binding("f", "next_finding", "Next finding", show=False),
        Binding("e", "export", "Export"),
        Binding("s,ctrl+s", "save", "Save", key_display="s"),
        Binding("o", "open_source", "Open", show=False),
        Binding("p", "tour_back", "Back", show=False),
        Binding("l", "tour_leave", "Leave guide", show=False),
    ]

    def __init__(
        self,
        topology: Topology | None = None,
        *,
        source: str | None = None,
        notice: str | None = None,
        plan: Any = None,
        plan_path: str | None = None,
        walkthrough: Walkthrough | None = None,
        compare: Topology | None = None,
        early_preview: Any = None,
    ) -> None:
        super().__init__()
        #: ``--compare OLD``: the topology to mark changes against.
        self.compare = compare
        self.walkthrough = walkthrough
        self.step_index = 0
        self.tour_done = False
        self.exported: list[str] = []
        self.validated_revision = 0
        self.topology = topology
        self.source_spec = source
        self.notice = notice
        self.plan = plan
        self.plan_path = plan_path
        self.dirty = False
        self.undo_stack: list[Any] = []
        self.redo_stack: list[Any] = []
        self.findings: list[Any] = []
        self.revision = 0
        self.last_vm = "vm1"
        self.analysis: Analysis | None = None
        self.view_name = "topology"
        #: The one selection every view and key shares.
        self.selection = Selection()
        self._matches: list[Address] = []
        self._match_pos = 0
        self._details_text = Text("")
        #: Walkthrough bookkeeping: what the user did since the current step began.
        self._step_log: dict[str, list[Any]] = {"views": [], "selected": [], "exports": []}
        self._step_actions_start = 0
        self._auto_select: Any = None
        #: While a big machine loads: how many functions it has (the topology shown is a preview).
        self.preview_total: int | None = None
        self._load_generation = 0
        self._preview_painted = threading.Event()
        #: A preview the command line started reading while the app was imported (cli.py).
        self._early_preview = early_preview
        #: Search rows of ``_search_for`` (built once per topology) and the plan's marks.
        self._search_base: list[tuple[Address, str]] = []
        self._search_for: Topology | None = None
        self._search_marks: dict[Address, str] = {}

    @property
    def selected(self) -> Any:
        """What the user sees selected: its device, else the row itself."""
        return self.selection.device if self.selection.device is not None else self.selection.key

    # ---- layout and loading --------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="search: address, name, vendor:device or driver", id="search")
        if self.topology is None:
            # Here rather than mounted in on_mount: the first screen is laid out once.
            yield LoadingIndicator(id="loading")
        with Horizontal(id="main"):
            yield ModeTree(id="tree")
            with Vertical(id="side"):
                with VerticalScroll(id="tour"):
                    yield Static(Text(""), id="tour-text")
                yield DetailsPane(Text("Loading…"), id="details-pane")
        with Horizontal(id="plan-panel"):
            yield OptionList(id="plan-list")
            yield OptionList(id="findings")
        yield Footer()

    def on_mount(self) -> None:
        self.theme = self.theme or "textual-dark"
        if self.notice:
            self.notify(self.notice, markup=False, timeout=10)
        if self.topology is not None:
            self._install(self.topology)
        else:
            self.show_details(Text(f"Loading {self.source_spec or 'this machine'}…"))
            self._load()

    def _load(self) -> None:
        """Load ``source_spec`` in a daemon thread: quitting never waits for a big machine's
        load to finish. A large sysfs tree shows a preview first (sources.preview_source)."""
        self._load_generation += 1
        preview = self.plan is None and self.walkthrough is None and self.compare is None
        threading.Thread(target=self._load_thread, args=(self.source_spec, self._load_generation, preview),
                         name="pci-explorer-load", daemon=True).start()

    def _load_thread(self, spec: str | None, generation: int, preview: bool) -> None:
        from ..model.safe_text import one_line
        from ..sources import SourceError, load_source, preview_source

        try:
            if preview:
                first = self._early_preview.result() if self._early_preview is not None else preview_source(spec)
                self._early_preview = None
                if first is not None:
                    self._preview_painted.clear()
                    self.post_message(TopologyLoaded(first[0], total=first[1], generation=generation))
                    # Let the first screen be drawn before the whole load takes the interpreter.
                    self._preview_painted.wait(2.0)
            t = load_source(spec)
            # What the first screen and the first keystrokes need, computed here, not on the UI thread.
            analysis = Analysis(t)
            analysis.display.children(None)
            search = search_rows(t, analysis)
        except SourceError as e:
            self.post_message(LoadFailed(str(e), generation))
            return
        except Exception as e:  # noqa: BLE001 - shown in the app, never a traceback on the terminal
            self.post_message(LoadFailed(one_line(f"{type(e).__name__}: {e}"), generation))
            return
        self.post_message(TopologyLoaded(t, generation=generation, analysis=analysis, search=search))

    def on_topology_loaded(self, message: TopologyLoaded) -> None:
        if message.generation != self._load_generation:
            return  # a load the user has since replaced (o: open another source)
        keep = self.selection.device
        self.preview_total = message.total
        if message.total is None:
            for w in self.query("#loading"):
                w.remove()
        if message.search is not None:
            self._search_base, self._search_for = message.search, message.topology
        self._install(message.topology, message.analysis)
        self.refresh_bindings()
        if message.total is not None:
            self.call_after_refresh(self._preview_painted.set)
        if message.total is None and keep is not None and keep in message.topology.functions:
            self.reveal(keep, focus=False)

    def on_load_failed(self, message: LoadFailed) -> None:
        if message.generation != self._load_generation:
            return
        self.preview_total = None
        for w in self.query("#loading"):
            w.remove()
        self.show_details(Text(f"Could not load: {message.error}", style="bold red"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """On a preview only looking around works; the rest comes back with the whole machine."""
        allowed = super().check_action(action, parameters)
        if allowed and self.preview_total is not None and action not in PREVIEW_ACTIONS:
            return None  # shown, greyed, until the whole machine is in
        return allowed

    def show_details(self, text: Text) -> None:
        """Put text in the details pane, wrapped so "label  value" columns stay aligned."""
        self._details_text = text
        pane = self.query_one("#details-pane", DetailsPane)
        # The wrap width as before: the pane's width inside its border, less 6.
        width = pane.outer_size.width - 2 - 6
        # Only the lines on screen are repainted (ui/details.py): no layout per keystroke.
        pane.set_lines(hang_wrap_lines(text, width) if width > 0 else split_lines(text))

    @property
    def details_text(self) -> Text:
        """What the details pane shows, before it is wrapped to the pane's width."""
        return self._details_text

    def on_resize(self) -> None:
        self.call_after_refresh(lambda: self.show_details(self._details_text))

    def _install(self, topology: Topology, analysis: Analysis | None = None) -> None:
        self.topology = topology
        self.analysis = analysis if analysis is not None and analysis.topology is topology else Analysis(topology)
        src = topology.source
        from ..export.topology import context_summary

        if self.preview_total is not None:
            self.sub_title = f"{src.location}: {len(topology):,}/{self.preview_total:,} functions, loading…"
        else:
            self.sub_title = f"{src.location} ({src.kind}, {len(topology)} functions) · {context_summary(topology)}"
        if self.compare is not None:
            from .compare import Comparison

            self.analysis.comparison = Comparison(self.compare, topology)
            self.sub_title += f"; {self.analysis.comparison.summary()}"
        self._build_search_index()
        self._set_view(self.view_name)
        self.query_one(ModeTree).focus()
        self.call_after_refresh(self._sync_selection)
        if self.plan is not None:
            self._plan_changed()
        if self.walkthrough is not None:
            self.query_one("#tour").add_class("-visible")
            self.query_one("#main").add_class("-tour")
            self.call_after_refresh(self._start_step)

    def _build_search_index(self) -> None:
        """The plan's marks for search (the per-device text is built once per topology, when
        a search first needs it: not before the first screen is drawn)."""
        t = self.topology
        if t is None or self.analysis is None:
            self._search_base, self._search_marks, self._search_for = [], {}, None
            return
        self._search_marks = self._plan_marks() if self.plan is not None else {}

    def _search_rows(self) -> list[tuple[Address, str]]:
        t = self.topology
        if t is None or self.analysis is None:
            return []
        if self._search_for is not t:
            self._search_base = search_rows(t, self.analysis)
            self._search_for = t
        return self._search_base

    @property
    def search_index(self) -> list[tuple[Address, str]]:
        """Search text per device: address, name, IDs, driver, class, group, tags and the plan's marks."""
        base = self._search_rows()
        marks = self._search_marks
        if not marks:
            return base
        return [(a, f"{text} {marks[a]}" if a in marks else text) for a, text in base]

    # ---- views ---------------------------------------------------------------------
    VIEW_KEYS = {"topology": "1", "groups": "2", "trust": "3", "resources": "4"}

    def _tree_title(self) -> None:
        tree = self.query_one(ModeTree)
        if tree.view is None:
            return
        tabs = " ".join(f"{k} {VIEW_TYPES[n].title.split()[0]}" for n, k in self.VIEW_KEYS.items() if n != self.view_name)
        only = f" (path to {tree.only} only; P: all)" if tree.only is not None else ""
        tree.border_title = f"{self.VIEW_KEYS[self.view_name]} {tree.view.title}{only}"
        tree.border_subtitle = tabs

    def _set_view(self, name: str) -> None:
        if self.analysis is None:
            return
        self.view_name = name
        view = VIEW_TYPES[name](self.analysis)
        tree = self.query_one(ModeTree)
        tree.set_view(view)
        self._tree_title()
        self._refresh_tour()
        self.refresh_bindings()  # keys that belong to one view (F in resources)

    def action_view(self, name: str) -> None:
        if self.analysis is None:
            return
        self._step_log["views"].append(name)
        if name == self.view_name:
            self._refresh_tour()
            return
        keep = self.selection.device
        self._set_view(name)
        if keep is None or not self.reveal(keep, focus=False):
            self.call_after_refresh(self._sync_selection)

    def _cursor_into_view(self) -> None:
        """After the tree changed size (the plan panel opened), keep the selected row on screen."""
        tree = self.query_one(ModeTree)
        if tree.cursor_line >= 0:
            tree.scroll_to_line(tree.cursor_line, animate=False)

    def _sync_selection(self) -> None:
        """The selection is the row under the cursor (after the tree was rebuilt)."""
        tree = self.query_one(ModeTree)
        node = tree.cursor_node
        if node is None and tree.root.children:
            node = tree.root.children[0]
            tree.move_cursor(node)
        if node is not None and node.data is not None:
            self._select_key(node.data)

    def _select_key(self, key: Any) -> None:
        tree = self.query_one(ModeTree)
        if tree.view is None:
            return
        if isinstance(key, Chunk):
            self.show_details(Text(f"{key.end - key.start:,} rows, {key.first} to {key.last}: "
                                   "→ or Enter opens them; / finds one by name or address."))
            return
        device = tree.view.device_of(key)
        self.selection.set(key, device, self.view_name)
        self.show_details(tree.view.details(key))
        if self._auto_select is not None and (key == self._auto_select or device == self._auto_select):
            self._auto_select = None
        elif device is not None:
            self._step_log["selected"].append(device)
        self._refresh_tour()

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        key = event.node.data
        tree = event.node.tree
        if key is None or not isinstance(tree, ModeTree) or not tree.is_attached or tree.view is None or tree._key_nodes.get(key) is not event.node:
            return  # a row of a view that has since been replaced
        self._select_key(key)

    def action_expand_all(self) -> None:
        tree = self.query_one(ModeTree)
        node = tree.cursor_node
        n = tree.expand_all(node if node is not None and node.allow_expand else None)
        if n >= tree.EXPAND_LIMIT:
            self.notify(f"Expanded the first {tree.EXPAND_LIMIT} rows; select a smaller subtree for the rest.", markup=False)

    def action_path_only(self) -> None:
        tree = self.query_one(ModeTree)
        if tree.only is not None:
            keep = self.selection.device
            tree.show_only(None)
        else:
            keep = self.selection.device
            if keep is None:
                self.notify("Select a device first: P shows only the path to it.", severity="warning", markup=False)
                return
            tree.show_only(keep)
        self._tree_title()
        if keep is not None:
            self.reveal(keep)

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
        if self.walkthrough is not None:
            # n moves forward: to the next step once this one is done, else through the
            # matches of the last search.
            step = self.walkthrough.steps[self.step_index]
            done, _ = check_task(step.task, self.tour_state())
            if done or not self._matches or self.tour_done:
                self.action_tour_next()
                return
        if self._matches:
            self._match_pos = (self._match_pos + 1) % len(self._matches)
            self.reveal(self._matches[self._match_pos])

    def find(self, query: str) -> list[Address]:
        """Devices matching an address (full or partial), vendor:device, driver, name, class,
        group ("group 15"), a tag (untrusted, external-facing, hotplug, removable) or what the
        plan does to them (a VM name, vfio-pci, remove)."""
        q = query.strip().lower()
        if not q or self.topology is None:
            return []
        try:
            exact = Address.parse(q)
            if exact in self.topology.functions:
                return [exact]
        except AddressError:
            pass
        import re

        pattern = re.compile(r"(?<![\w-])" + re.escape(q) + r"(?![\w-])") if q.startswith(("group ", "g")) and q[-1].isdigit() else None
        out = []
        for addr, text in self.search_index:
            low = text.lower()
            if (pattern.search(low) if pattern is not None else q in low):
                out.append(addr)
        return out

    def reveal(self, addr: Address, *, focus: bool = True) -> bool:
        tree = self.query_one(ModeTree)
        ok = tree.reveal(addr)
        if not ok and tree.only is not None:
            tree.show_only(None)  # the device is outside the path being shown: show everything
            self._tree_title()
            ok = tree.reveal(addr)
        if ok and focus:
            tree.focus()
        return ok

    def action_help(self) -> None:
        self.push_screen(HelpDialog(HELP_TEXT))

    # ---- planning ------------------------------------------------------------------
    def _selected_address(self) -> Address | None:
        return self.selection.device

    def _need_device(self, *, group: bool = False) -> Address | None:
        """The device the selected row stands for; a group row stands for its group when the
        action takes a whole group."""
        addr = self.selection.device
        key = self.selection.key
        if addr is None and group and isinstance(key, GroupKey) and self.analysis is not None:
            members = self.analysis.groups.groups.get(key.label, ())
            addr = members[0] if members else None
        if addr is None:
            if isinstance(key, GroupKey):
                self.notify(f"{key} is selected: A or B act on the whole group; select one of its devices for a, b, v, m, h or x.",
                            severity="warning", markup=False)
            else:
                self.notify(f"{key if key is not None else 'Nothing'} is selected, not a device: move to a device first.",
                            severity="warning", markup=False)
        return addr

    def _ensure_plan(self) -> Any:
        if self.plan is None:
            from ..plan import new_plan

            spec = self.source_spec or ("" if self.topology.source.location == "this machine" else self.topology.source.location)
            self.plan = new_plan(self.topology, spec)
        return self.plan

    def add_action(self, words: list[str]) -> bool:
        """Add one plan action (the same words as `pci-explorer plan add`); validation follows."""
        from ..plan import add_action

        if self.topology is None:
            return False
        plan = self._ensure_plan()
        try:
            new = add_action(plan, words)
        except ValueError as e:
            self.notify(str(e), severity="error", markup=False)
            return False
        self.undo_stack.append(plan)
        self.redo_stack.clear()
        self.plan = new
        self.dirty = True
        self._plan_changed()
        return True

    def _plan_marks(self) -> dict[Address, str]:
        """What the plan does to each device, for the tree's ◆ marks."""
        from ..plan.actions import Assign, Bind, HotAdd, HotRemove, Mdev, Sriov, Trust, Unbind

        marks: dict[Address, list[str]] = {}
        t = self.topology
        if self.plan is None or t is None:
            return {}

        def group(addr: Address) -> list[Address]:
            label = self.analysis.groups.group_of.get(addr) if self.analysis else None
            return list(self.analysis.groups.groups.get(label, (addr,))) if label else [addr]

        def below(addr: Address) -> list[Address]:
            out, todo = [], [addr]
            while todo:
                a = todo.pop()
                out.append(a)
                todo.extend(self.analysis.display.children(a) if self.analysis else [])
            return [a for a in out if isinstance(a, Address)]

        for act in self.plan.actions:
            if isinstance(act, Bind):
                for a in group(act.device) if act.group else [act.device]:
                    marks.setdefault(a, []).append(f"→ {act.driver}")
            elif isinstance(act, Unbind):
                marks.setdefault(act.device, []).append("unbind")
            elif isinstance(act, Assign):
                for a in group(act.device) if act.group else [act.device]:
                    marks.setdefault(a, []).append(f"VM {act.vm}")
            elif isinstance(act, Sriov):
                marks.setdefault(act.pf, []).append(f"VFs → {act.vfs}")
            elif isinstance(act, Mdev):
                marks.setdefault(act.parent, []).append(f"+{len(act.uuids)} mdev")
            elif isinstance(act, HotAdd):
                marks.setdefault(act.port, []).append("+ hot-add")
            elif isinstance(act, HotRemove):
                for a in below(act.device):
                    marks.setdefault(a, []).append("✗ remove")
            elif isinstance(act, Trust):
                marks.setdefault(act.port, []).append("external" if act.external else "internal")
        return {a: ", ".join(m) for a, m in marks.items()}

    def action_undo(self) -> None:
        if not self.undo_stack:
            self.notify("Nothing to undo.", markup=False)
            return
        self.redo_stack.append(self.plan)
        self.plan = self.undo_stack.pop()
        self.dirty = True
        self._plan_changed()

    def action_redo(self) -> None:
        if not self.redo_stack:
            self.notify("Nothing to redo.", markup=False)
            return
        self.undo_stack.append(self.plan)
        self.plan = self.redo_stack.pop()
        self.dirty = True
        self._plan_changed()

    def _plan_changed(self) -> None:
        self.revision += 1
        panel = self.query_one("#plan-panel")
        panel.add_class("-visible")
        plist = self.query_one("#plan-list", OptionList)
        plist.clear_options()
        actions = self.plan.actions if self.plan is not None else ()
        plist.border_title = f"Plan: {len(actions)} action(s){' (unsaved)' if self.dirty else ''}"
        plist.border_subtitle = "z undo · e export · s save"
        for i, act in enumerate(actions):
            plist.add_option(Option(Text(f"{i + 1}. {' '.join(act.words())}"), id=f"a{i}"))
        self.query_one("#findings", OptionList).border_title = "Findings: checking…"
        self.query_one(ModeTree).set_marks(self._plan_marks())
        self._build_search_index()
        self.call_after_refresh(self._cursor_into_view)
        self._validate(self.plan, self.topology, self.revision)

    @work(thread=True, exclusive=True, group="validate", exit_on_error=False)
    def _validate(self, plan: Any, topology: Topology, revision: int) -> None:
        from ..plan import validate

        findings = validate(topology, plan)
        self.post_message(ValidationFinished(revision, findings))

    def on_validation_finished(self, message: "ValidationFinished") -> None:
        if message.revision != self.revision:
            return  # a newer change is being checked
        self.validated_revision = message.revision
        self.findings = list(message.findings)
        box = self.query_one("#findings", OptionList)
        box.clear_options()
        errors = sum(1 for f in self.findings if f.severity == "error")
        warnings = sum(1 for f in self.findings if f.severity == "warning")
        box.border_title = f"Findings: {errors} error(s), {warnings} warning(s)" if self.findings else "Findings: none, the plan is valid"
        style = {"error": "bold red", "warning": "yellow", "info": "dim"}
        for i, f in enumerate(self.findings):
            t = Text()
            t.append(f"{f.severity} {f.code}: ", style=style.get(f.severity, ""))
            t.append(f.message)
            box.add_option(Option(t, id=f"f{i}"))
        self._refresh_tour()

    @on(OptionList.OptionSelected, "#findings")
    def _finding_selected(self, event: OptionList.OptionSelected) -> None:
        i = int(event.option.id[1:]) if event.option.id else -1
        if 0 <= i < len(self.findings) and self.findings[i].devices:
            self.reveal(self.findings[i].devices[0])

    def action_next_finding(self) -> None:
        box = self.query_one("#findings", OptionList)
        if not self.findings:
            self.notify("No findings.", markup=False)
            return
        nxt = 0 if box.highlighted is None else (box.highlighted + 1) % len(self.findings)
        box.highlighted = nxt
        if self.findings[nxt].devices:
            self.reveal(self.findings[nxt].devices[0])

    def action_plan_bind(self, group: bool) -> None:
        addr = self._need_device(group=group)
        if addr is not None:
            self.add_action(["bind", str(addr), "--driver", "vfio-pci", *(["--group"] if group else [])])

    def action_plan_assign(self, group: bool) -> None:
        from .mdev import MdevKey

        if isinstance(self.selected, MdevKey):  # an existing mdev to a VM
            uuid = self.selected.uuid

            def give(vm: str | None) -> None:
                if vm:
                    self.last_vm = vm
                    self.add_action(["assign", uuid, "--vm", vm])

            self.push_screen(AskDialog(f"Give mdev {uuid} to which VM?", "A VM name (letters, digits, . _ + -).", self.last_vm), give)
            return
        addr = self._need_device(group=group)
        if addr is None:
            return

        def done(vm: str | None) -> None:
            if vm:
                self.last_vm = vm
                self.add_action(["assign", str(addr), "--vm", vm, *(["--group"] if group else [])])

        what = f"the whole IOMMU group of {addr}" if group else str(addr)
        fn = self.topology.functions.get(addr) if self.topology is not None else None
        name = f" ({names.short_name(fn)})" if fn is not None and not group else ""
        self.push_screen(AskDialog(f"Assign {what}{name} to which VM?", "A VM name (letters, digits, . _ + -).", self.last_vm), done)

    def action_plan_sriov(self) -> None:
        addr = self._need_device()
        if addr is None:
            return

        def done(n: str | None) -> None:
            if n:
                self.add_action(["sriov", str(addr), "--vfs", n])

        self.push_screen(AskDialog(f"How many SR-IOV VFs on {addr}?", "0 disables them.", "1"), done)

    def action_plan_mdev(self) -> None:
        addr = self._need_device()
        if addr is None:
            return
        parent = self.topology.mdev.parent(addr) if self.topology is not None and self.topology.mdev else None
        if parent is not None and parent.types:
            from .mdev import MdevTypeDialog  # the type picker (ui/mdev.py)

            self.push_screen(MdevTypeDialog(parent, addr, self.last_vm or ""), lambda w: w and self.add_action(w))
            return

        def done(text: str | None) -> None:
            if text:
                parts = text.split()
                words = ["mdev", str(addr), "--type", parts[0]]
                if len(parts) > 1:
                    words += ["--count", parts[1]]
                self.add_action(words)

        self.push_screen(AskDialog(f"Mediated devices on {addr}", "TYPE [COUNT], e.g. i915-GVTg_V5_4 2", placeholder="TYPE [COUNT]"), done)

    def _need_port(self) -> Address | None:
        """A hot-add goes below a bridge: refuse (with the reason) a selection that is not one."""
        addr = self._need_device()
        if addr is None or self.topology is None:
            return None
        fn = self.topology.functions.get(addr)
        if fn is not None and fn.is_bridge is False:
            self.notify(f"{addr} ({names.short_name(fn)}) is not a bridge: select the hotplug port to add a device below "
                        "(rows marked hotplug).", severity="warning", markup=False)
            return None
        return addr

    def action_plan_hot_add(self) -> None:
        addr = self._need_port()
        if addr is None:
            return

        def done(text: str | None) -> None:
            if text:
                from .hotfit import hot_add_words

                self.add_action(hot_add_words(addr, text))

        self.push_screen(
            AskDialog(
                f"Hot-add a device below {addr}",
                "Its BARs as KIND:SIZE (io, mem32, mem64, pref32, pref64; add :optional for a BAR the device works "
                "without), buses=N for a bridge, and hotplug=acpi|native to override the slot driver the source "
                "shows. E.g. mem32:16M pref64:1G",
                placeholder="mem32:16M pref64:256M",
            ),
            done,
        )

    def action_plan_hot_add_template(self) -> None:
        """Hot-add a device taken from a bundled machine: pick the machine, then the device;
        its BARs become the hot-add's. Typing "MACHINE BDF" also works."""
        addr = self._need_port()
        if addr is None:
            return
        from ..sources import SourceError, load_source

        def add(name: str, bdf: str) -> None:
            try:
                t = load_source(name if name.startswith("builtin:") else f"builtin:{name}")
                fn = t[Address.parse(bdf.strip())]
            except (SourceError, KeyError, AddressError) as e:
                self.notify(f"No such template device: {e}", severity="error", markup=False)
                return
            from ..plan.actions import hot_add_like

            try:
                words = hot_add_like(addr, fn).words()
            except ValueError as e:
                self.notify(str(e), severity="warning", markup=False)
                return
            self.add_action(words)

        def machine(text: str | None) -> None:
            if not text:
                return
            name, _, bdf = text.strip().partition(" ")
            if bdf.strip():
                add(name, bdf)
                return
            try:
                t = load_source(name if name.startswith("builtin:") else f"builtin:{name}")
            except SourceError as e:
                self.notify(str(e), severity="error", markup=False)
                return
            devices = [(fn.bdf, f"{names.short_name(fn)}  " + ", ".join(f"{b.kind.value}:{b.size}" for b in (fn.bars or ()) if b.size))
                       for fn in t if fn.is_bridge is not True and any(b.size for b in (fn.bars or ()))]
            self.push_screen(PickDialog(f"Hot-add below {addr}: which device of {name}?",
                                        "Its BARs (with their numbers) become the hot-add's.", devices, free_text=False),
                             lambda bdf: bdf and add(name, bdf))

        self.push_screen(
            PickDialog(
                f"Hot-add below {addr} a device from a bundled machine",
                "Pick a machine, then its device (or type MACHINE BDF).",
                [(n, d) for n, d in _bundled()],
            ),
            machine,
        )

    def action_plan_hot_remove(self) -> None:
        from .mdev import MdevKey

        if isinstance(self.selected, MdevKey):  # x on an mdev removes it
            self.add_action(["mdev-remove", self.selected.uuid])
            return
        addr = self._need_device()
        if addr is not None:
            self.add_action(["hot-remove", str(addr)])

    def action_export(self) -> None:
        from ..export.plan_exports import TARGETS

        if self.plan is None or not self.plan.actions:
            self.notify("The plan is empty: add an action first (a, b, v, ...).", severity="warning", markup=False)
            return
        self.push_screen(ExportDialog(self.plan, self.topology, TARGETS))

    def action_save(self, then: Any = None) -> None:
        if self.plan is None:
            self.notify("No plan to save yet.", severity="warning", markup=False)
            return

        def save_to(path: str | None, overwrite: bool = False) -> None:
            from ..fileio import OutputExists
            from ..plan import save_plan

            if not path:
                return
            try:
                save_plan(self.plan, path, overwrite=overwrite or path == self.plan_path)
            except OutputExists:
                self.push_screen(ConfirmDialog(f"{path} exists. Replace it?", yes="Replace"), lambda yes: yes and save_to(path, True))
                return
            except OSError as e:
                self.notify(f"Not saved: {e}", severity="error", markup=False)
                return
            self.plan_path = path
            self.dirty = False
            self.query_one("#plan-list", OptionList).border_title = f"Plan: {len(self.plan.actions)} action(s)"
            self.notify(f"Saved {path}", markup=False)
            if then is not None:
                then()

        if self.plan_path:
            save_to(self.plan_path)
        else:
            self.push_screen(AskDialog("Save the plan as", "A YAML file; written atomically.", "plan.yaml"), save_to)

    def action_open_source(self) -> None:
        def opened(spec: str | None) -> None:
            if not spec:
                return
            self.plan, self.plan_path, self.dirty = None, None, False
            self.selection = Selection()
            self.undo_stack.clear()
            self.redo_stack.clear()
            self.query_one("#plan-panel").remove_class("-visible")
            self.source_spec = spec
            self.topology = None
            self.mount(LoadingIndicator(id="loading"), before=self.query_one("#main"))
            self._load()

        def ask() -> None:
            bundled = _bundled()
            self.push_screen(PickDialog(
                "Open another source",
                "A bundled machine, or type a path (sysfs directory, snapshot .tar.gz, YAML topology, lspci output); "
                "the right arrow completes a name.",
                [(f"builtin:{n}", d) for n, d in bundled],
                suggester=SourceSuggester(n for n, _ in bundled),
                placeholder="builtin:NAME or a path",
            ), opened)

        if self.dirty:
            self.push_screen(ConfirmDialog("The plan has unsaved changes. Open another source and drop them?", yes="Drop them"), lambda yes: yes and ask())
        else:
            ask()

    # ---- walkthroughs --------------------------------------------------------------
    def tour_state(self) -> TourState:
        actions = tuple(self.plan.actions) if self.plan is not None else ()
        return TourState(
            selected=self.selected,
            view=self.view_name,
            actions=actions,
            findings=tuple(self.findings),
            exported=tuple(self.exported),
            validated=self.validated_revision == self.revision,
            step_views=tuple(self._step_log["views"]),
            step_selected=tuple(self._step_log["selected"]),
            step_actions=actions[self._step_actions_start:],
            step_exports=tuple(self._step_log["exports"]),
        )

    def note_export(self, target: str) -> None:
        self.exported.append(target)
        self._step_log["exports"].append(target)
        self._refresh_tour()

    def _start_step(self) -> None:
        if self.walkthrough is None or self.analysis is None:
            return
        step = self.walkthrough.steps[self.step_index]
        # A step is done only by what the user does in it: start its log afresh.
        self._step_log = {"views": [], "selected": [], "exports": []}
        self._step_actions_start = len(self.plan.actions) if self.plan is not None else 0
        if step.view and step.view != self.view_name:
            self._set_view(step.view)
            keep = self.selection.device
            if step.select is None and keep is not None:
                self._auto_select = keep
                self.call_after_refresh(self.reveal, keep)
        tree = self.query_one(ModeTree)
        tree.set_highlight(set(step.highlight))
        for addr in step.highlight:  # show the rows the step points at (◀), selection unchanged
            tree.expand_to(addr)
        if step.select is not None:
            self._auto_select = step.select
            self.call_after_refresh(self.reveal, step.select)
        self._refresh_tour()

    def _refresh_tour(self) -> None:
        if self.walkthrough is None:
            return
        w = self.walkthrough
        step = w.steps[self.step_index]
        out = Text()
        out.append(f"Step {self.step_index + 1} of {len(w.steps)}: {step.title}\n", style="bold cyan")
        # What to do comes first, so it is seen without scrolling the panel.
        if step.task is not None:
            done, hint = check_task(step.task, self.tour_state())
            out.append(("✓ done: n for the next step" if done else f"… to do: {hint}") + "\n", style="bold green" if done else "yellow")
            out.append("Your turn: ", style="bold")
            out.append(step.task.prompt + "\n")
        else:
            out.append("Read, then n for the next step.\n", style="green")
        if self.tour_done:
            out.append("Walkthrough complete. l leaves the guide.\n", style="bold green")
        out.append("\n" + step.body + "\n")
        if step.highlight:
            out.append("\nLook at (◀ in the tree): " + ", ".join(str(a) for a in step.highlight) + "\n", style="yellow")
        if step.kernel:
            out.append(f"\nKernel: {step.kernel}\n", style="italic")
        out.append(f"\n{w.title} · n next · p back · l leave", style="dim")
        self.query_one("#tour-text", Static).update(out)
        self.query_one("#tour").border_title = f"Walkthrough {self.step_index + 1}/{len(w.steps)}"

    def action_tour_next(self) -> bool:
        if self.walkthrough is None:
            return False
        step = self.walkthrough.steps[self.step_index]
        done, hint = check_task(step.task, self.tour_state())
        if not done:
            self.notify(f"Not yet: {hint}", severity="warning", markup=False)
            self._refresh_tour()
            return False
        if self.step_index + 1 < len(self.walkthrough.steps):
            self.step_index += 1
            self._start_step()
        else:
            self.tour_done = True
            self.notify("Walkthrough complete.", markup=False)
            self._refresh_tour()
        return True

    def action_tour_back(self) -> None:
        if self.walkthrough is not None and self.step_index > 0:
            self.step_index -= 1
            self.tour_done = False
            self._start_step()

    def action_tour_leave(self) -> None:
        if self.walkthrough is None:
            return
        self.walkthrough = None
        self.query_one("#tour").remove_class("-visible")
        self.query_one("#main").remove_class("-tour")
        self.query_one(ModeTree).set_highlight(set())

    def action_request_quit(self) -> None:
        if not self.dirty:
            self.exit()
            return

        def answer(choice: str | None) -> None:
            if choice == "quit":
                self.exit()
            elif choice == "save":
                self.action_save(then=self.exit)

        self.push_screen(ChoiceDialog(
            "Quit", "The plan has unsaved changes.",
            [("Save and quit", "save", "s"), ("Quit without saving", "quit", "y"), ("Cancel", "cancel", "n")],
        ), answer)


    # For tests and the palette: which group a device sits in, as shown.
    def group_of(self, addr: Address) -> str | None:
        if self.analysis is None:
            return None
        return self.analysis.groups.group_of.get(addr)


__all__ = ["ExplorerApp", "GroupKey", "ModeTree"]
