"""The interactive explorer: a lazily filled topology tree and a details pane."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Header, Static, Tree

from ..export.topology import render_device, root_bus_line
from ..model import Address, Topology, names, present
from ..model.display import DisplayTree, NodeKey, RootBusKey


def node_label(topology: Topology, key: NodeKey) -> Text:
    """A tree row: address, short name, badges. Always plain Text (names contain brackets)."""
    if isinstance(key, RootBusKey):
        return Text(root_bus_line(topology, key), style="bold")
    fn = topology.functions[key]
    label = Text()
    label.append(fn.bdf, style="bold cyan")
    label.append("  ")
    label.append(names.short_name(fn))
    if fn.vendor_device:
        label.append(f"  {fn.vendor_device}", style="dim")
    if fn.pcie_type and fn.pcie_type.is_port:
        label.append(f"  {fn.pcie_type.label}", style="yellow")
    if present(fn.iommu_group):
        label.append(f"  [g{fn.iommu_group}]", style="magenta")
    if present(fn.driver):
        label.append(f"  {fn.driver}", style="green")
    sr = fn.caps.sriov
    if present(sr) and sr.total_vfs:  # type: ignore[union-attr]
        label.append(f"  VFs {sr.num_vfs or 0}/{sr.total_vfs}", style="blue")  # type: ignore[union-attr]
    if present(fn.slot) and fn.slot.hotplug:  # type: ignore[union-attr]
        label.append("  hotplug", style="red")
    if fn.removable:
        label.append("  untrusted", style="bold red")
    return label


class TopologyTree(Tree[NodeKey]):
    """The tree; children are created only when a node is first expanded."""

    def __init__(self, topology: Topology, **kw) -> None:
        super().__init__("machine", **kw)
        self.topology = topology
        self.display_tree = DisplayTree(topology)
        self._populated: set[object] = set()
        self.show_root = False
        self.guide_depth = 3

    def on_mount(self) -> None:
        self.ensure_children(self.root)
        for child in self.root.children:
            self.ensure_children(child)
            child.expand()
        self.root.expand()

    def ensure_children(self, node) -> None:
        key = node.data
        marker = key if key is not None else "__root__"
        if marker in self._populated:
            return
        self._populated.add(marker)
        for child in self.display_tree.children(key):
            node.add(
                node_label(self.topology, child),
                data=child,
                allow_expand=self.display_tree.has_children(child),
            )

    @on(Tree.NodeExpanded)
    def _expanded(self, event: Tree.NodeExpanded) -> None:
        self.ensure_children(event.node)


class ExplorerApp(App):
    """pci-explorer's main app."""

    TITLE = "pci-explorer"
    CSS = """
    #main { height: 1fr; }
    TopologyTree { width: 3fr; border: round $primary; }
    #details-pane { width: 2fr; border: round $secondary; }
    #details { padding: 0 1; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False),
    ]

    def __init__(self, topology: Topology, *, notice: str | None = None) -> None:
        super().__init__()
        self.topology = topology
        self.notice = notice
        self.selected: Address | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield TopologyTree(self.topology, id="tree")
            with VerticalScroll(id="details-pane"):
                yield Static(Text("Select a device to see every fact about it."), id="details")
        yield Footer()

    def on_mount(self) -> None:
        src = self.topology.source
        self.sub_title = f"{src.location} ({src.kind}, {len(self.topology)} functions)"
        if self.notice:
            self.notify(self.notice, markup=False, timeout=10)
        self.query_one(TopologyTree).focus()

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        key = event.node.data
        details = self.query_one("#details", Static)
        if isinstance(key, Address):
            self.selected = key
            details.update(Text(render_device(self.topology, self.topology.functions[key])))
        elif isinstance(key, RootBusKey):
            details.update(Text(root_bus_line(self.topology, key)))
