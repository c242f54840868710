"""The interactive explorer: view modes over a lazily filled tree, and a details pane."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Input, LoadingIndicator, OptionList, Static, Tree
from textual.widgets.option_list import Option

from ..model import Address, AddressError, Topology, names
from .dialogs import AskDialog, ConfirmDialog, ExportDialog
from .views import VIEW_TYPES, Analysis, GroupKey
from .walkthrough import State as TourState
from .walkthrough import Walkthrough, check as check_task

HELP_TEXT = """\
pci-explorer: keys

  1 / t      topology view: domains, root ports, switches, bridges, devices
  2 / g      IOMMU groups view: predicted groups, checked against the kernel's
  3 / u      trust view: external-facing ports and untrusted devices, and the cost
  4 / r      resources view: bus numbers, windows (used, free, largest aligned block), SR-IOV headroom
  /          search by address, name, vendor:device or driver (enter: go, escape: back)
  n          next search match

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


#: Every action of the app, for the command palette: (title, action, help).
ACTION_COMMANDS = (
    ("view: topology", "view('topology')", "the PCI tree"),
    ("view: IOMMU groups", "view('groups')", "groups, predicted and as the kernel reported them"),
    ("view: trust", "view('trust')", "external-facing ports and untrusted devices"),
    ("view: resources", "view('resources')", "bus numbers, windows and free space"),
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
        for title, action, help_text in ACTION_COMMANDS:
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
        #: Planned changes per device, shown after its label.
        self.marks: dict[Any, str] = {}
        #: Devices a walkthrough step points at.
        self.highlighted: set[Any] = set()

    def make_label(self, key: Any) -> Text:
        label = self.view.label(key)
        mark = self.marks.get(key)
        if mark or key in self.highlighted:
            label = label.copy()
        if mark:
            label.append(f"  ◆ {mark}", style="bold cyan")
        if key in self.highlighted:
            label.stylize("reverse", 0, len(key.__str__()))
            label.append("  ◀ look here", style="bold yellow")
        return label

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
            n = node.add(self.make_label(child), data=child, allow_expand=self.view.has_children(child))
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


class ValidationFinished(Message):
    def __init__(self, revision: int, findings: list) -> None:
        super().__init__()
        self.revision = revision
        self.findings = findings


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
    #plan-panel { height: 12; display: none; }
    #plan-panel.-visible { display: block; }
    #plan-list { width: 2fr; height: 100%; border: round $primary; }
    #findings { width: 3fr; height: 100%; border: round $warning; }
    #tour { dock: right; width: 52; border: round $accent; padding: 0 1; display: none; }
    #tour.-visible { display: block; }
    """
    BINDINGS = [
        Binding("q", "request_quit", "Quit"),
        Binding("1,t", "view('topology')", "Topology", key_display="1"),
        Binding("2,g", "view('groups')", "Groups", key_display="2"),
        Binding("3,u", "view('trust')", "Trust", key_display="3"),
        Binding("4,r", "view('resources')", "Resources", key_display="4"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("n", "search_next", "Next match", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("escape", "close_search", "Back", show=False),
        Binding("b", "plan_bind(False)", "vfio-pci", show=False),
        Binding("B", "plan_bind(True)", "Group to vfio-pci", show=False),
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
        Binding("s,ctrl+s", "save", "Save"),
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
    ) -> None:
        super().__init__()
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
        with VerticalScroll(id="tour"):
            yield Static(Text(""), id="tour-text")
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
        self.query_one("#details", Static).update(Text("Select a device to see every fact about it."))
        self.analysis = Analysis(topology)
        src = topology.source
        from ..export.topology import context_summary

        self.sub_title = f"{src.location} ({src.kind}, {len(topology)} functions) · {context_summary(topology)}"
        self.search_index = [
            (fn.address, " ".join(x for x in (fn.bdf, names.short_name(fn), fn.vendor_device or "", fn.driver if isinstance(fn.driver, str) else "") if x))
            for fn in topology
        ]
        self._set_view(self.view_name)
        self.query_one(ModeTree).focus()
        if self.plan is not None:
            self._plan_changed()
        if self.walkthrough is not None:
            self.query_one("#tour").add_class("-visible")
            self.call_after_refresh(self._start_step)

    # ---- views ---------------------------------------------------------------------
    def _set_view(self, name: str) -> None:
        if self.analysis is None:
            return
        self.view_name = name
        view = VIEW_TYPES[name](self.analysis)
        tree = self.query_one(ModeTree)
        tree.border_title = view.title
        tree.set_view(view)
        self._refresh_tour()

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
        self._refresh_tour()

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
            self.action_tour_next()
            return
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

    # ---- planning ------------------------------------------------------------------
    def _selected_address(self) -> Address | None:
        return self.selected if isinstance(self.selected, Address) else None

    def _need_device(self) -> Address | None:
        addr = self._selected_address()
        if addr is None:
            self.notify("Select a device first.", severity="warning", markup=False)
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
        for i, act in enumerate(actions):
            plist.add_option(Option(Text(f"{i + 1}. {' '.join(act.words())}"), id=f"a{i}"))
        self.query_one("#findings", OptionList).border_title = "Findings: checking…"
        self.query_one(ModeTree).set_marks(self._plan_marks())
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
        addr = self._need_device()
        if addr is not None:
            self.add_action(["bind", str(addr), "--driver", "vfio-pci", *(["--group"] if group else [])])

    def action_plan_assign(self, group: bool) -> None:
        addr = self._need_device()
        if addr is None:
            return

        def done(vm: str | None) -> None:
            if vm:
                self.last_vm = vm
                self.add_action(["assign", str(addr), "--vm", vm, *(["--group"] if group else [])])

        what = f"the whole IOMMU group of {addr}" if group else str(addr)
        self.push_screen(AskDialog(f"Assign {what} to which VM?", "A VM name (letters, digits, . _ + -).", self.last_vm), done)

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

        def done(text: str | None) -> None:
            if text:
                parts = text.split()
                words = ["mdev", str(addr), "--type", parts[0]]
                if len(parts) > 1:
                    words += ["--count", parts[1]]
                self.add_action(words)

        self.push_screen(AskDialog(f"Mediated devices on {addr}", "TYPE [COUNT], e.g. i915-GVTg_V5_4 2", placeholder="TYPE [COUNT]"), done)

    def action_plan_hot_add(self) -> None:
        addr = self._need_device()
        if addr is None:
            return

        def done(text: str | None) -> None:
            if text:
                words = ["hot-add", str(addr)]
                for tok in text.split():
                    if tok.startswith("buses="):
                        words += ["--buses", tok.split("=", 1)[1]]
                    elif tok.startswith("hotplug="):
                        words += ["--hotplug", tok.split("=", 1)[1]]
                    else:
                        words += ["--bar", tok]
                self.add_action(words)

        self.push_screen(
            AskDialog(
                f"Hot-add a device below {addr}",
                "Its BARs as KIND:SIZE (io, mem32, mem64, pref32, pref64), buses=N for a bridge, and "
                "hotplug=acpi|native to override the slot driver the source shows, e.g. mem32:16M pref64:1G",
                placeholder="mem32:16M pref64:256M",
            ),
            done,
        )

    def action_plan_hot_add_template(self) -> None:
        """Hot-add a device taken from a bundled machine: its BARs become the hot-add's."""
        addr = self._need_device()
        if addr is None:
            return

        def done(text: str | None) -> None:
            if not text:
                return
            from ..sources import SourceError, load_source

            name, _, bdf = text.partition(" ")
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

        self.push_screen(
            AskDialog(
                f"Hot-add below {addr} a device from a bundled machine",
                "MACHINE BDF, e.g. amd-laptop-dgpu-usb4 0000:03:00.0 (pci-explorer topologies lists them)",
                placeholder="MACHINE BDF",
            ),
            done,
        )

    def action_plan_hot_remove(self) -> None:
        addr = self._need_device()
        if addr is not None:
            self.add_action(["hot-remove", str(addr)])

    def action_export(self) -> None:
        from ..export.plan_exports import TARGETS

        if self.plan is None or not self.plan.actions:
            self.notify("The plan is empty: add an action first (a, b, v, ...).", severity="warning", markup=False)
            return
        self.push_screen(ExportDialog(self.plan, self.topology, TARGETS))

    def action_save(self) -> None:
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

        if self.plan_path:
            save_to(self.plan_path)
        else:
            self.push_screen(AskDialog("Save the plan as", "A YAML file; written atomically.", "plan.yaml"), save_to)

    def action_open_source(self) -> None:
        def opened(spec: str | None) -> None:
            if not spec:
                return
            self.plan, self.plan_path, self.dirty = None, None, False
            self.undo_stack.clear()
            self.redo_stack.clear()
            self.query_one("#plan-panel").remove_class("-visible")
            self.source_spec = spec
            self.topology = None
            self.mount(LoadingIndicator(id="loading"), before=self.query_one("#main"))
            self._load()

        def ask() -> None:
            self.push_screen(AskDialog("Open another source", "A sysfs directory, snapshot .tar.gz, YAML topology, lspci output or builtin:NAME."), opened)

        if self.dirty:
            self.push_screen(ConfirmDialog("The plan has unsaved changes. Open another source and drop them?", yes="Drop them"), lambda yes: yes and ask())
        else:
            ask()

    # ---- walkthroughs --------------------------------------------------------------
    def tour_state(self) -> TourState:
        return TourState(
            selected=self.selected,
            view=self.view_name,
            actions=tuple(self.plan.actions) if self.plan is not None else (),
            findings=tuple(self.findings),
            exported=tuple(self.exported),
            validated=self.validated_revision == self.revision,
        )

    def note_export(self, target: str) -> None:
        self.exported.append(target)
        self._refresh_tour()

    def _start_step(self) -> None:
        if self.walkthrough is None or self.analysis is None:
            return
        step = self.walkthrough.steps[self.step_index]
        if step.view and step.view != self.view_name:
            self._set_view(step.view)
        tree = self.query_one(ModeTree)
        tree.set_highlight(set(step.highlight))
        if step.select is not None:
            self.call_after_refresh(self.reveal, step.select)
        self._refresh_tour()

    def _refresh_tour(self) -> None:
        if self.walkthrough is None:
            return
        w = self.walkthrough
        step = w.steps[self.step_index]
        out = Text()
        out.append(f"{w.title}\n", style="bold")
        out.append(f"Step {self.step_index + 1} of {len(w.steps)}: {step.title}\n\n", style="bold cyan")
        out.append(step.body + "\n")
        if step.kernel:
            out.append(f"\nKernel: {step.kernel}\n", style="italic")
        if step.highlight:
            out.append("\nLook at: " + ", ".join(str(a) for a in step.highlight) + "\n", style="yellow")
        if step.task is not None:
            done, hint = check_task(step.task, self.tour_state())
            out.append("\nYour turn: ", style="bold")
            out.append(step.task.prompt + "\n")
            out.append(("✓ done: press n for the next step" if done else f"… {hint}") + "\n", style="green" if done else "yellow")
        if self.tour_done:
            out.append("\nWalkthrough complete. l leaves the guide.\n", style="bold green")
        out.append("\nn next · p back · l leave", style="dim")
        self.query_one("#tour-text", Static).update(out)

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
        self.query_one(ModeTree).set_highlight(set())

    def action_request_quit(self) -> None:
        if self.dirty:
            self.push_screen(ConfirmDialog("The plan has unsaved changes. Quit anyway?", yes="Quit"), lambda yes: yes and self.exit())
        else:
            self.exit()


    # For tests and the palette: which group a device sits in, as shown.
    def group_of(self, addr: Address) -> str | None:
        if self.analysis is None:
            return None
        return self.analysis.groups.group_of.get(addr)


__all__ = ["ExplorerApp", "GroupKey", "ModeTree"]
