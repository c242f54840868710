"""The app, driven headless: the tree fills lazily and the details pane follows the cursor."""

from __future__ import annotations

from explorer.model import Address
from explorer.sources.sysfs import load_sysfs
from explorer.ui.app import ExplorerApp, TopologyTree

TERMINAL = (120, 40)


def rows(node, depth=0):
    out = []
    for child in node.children:
        out.append((depth, str(child.data)))
        if child.is_expanded:
            out.extend(rows(child, depth + 1))
    return out


async def test_tree_is_lazy_and_details_follow_cursor(unpacked):
    t = load_sysfs(unpacked("switch"))
    app = ExplorerApp(t)
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        tree = app.query_one(TopologyTree)
        shown = rows(tree.root)
        # Root bus expanded, its functions shown; nothing below the root port built yet.
        assert (0, "pci0000:00") in shown
        assert (1, "0000:00:02.0") in shown
        node = next(n for n in tree.root.children[0].children if str(n.data) == "0000:00:02.0")
        assert len(node.children) == 0 and not node.is_expanded
        # Move to the root port and expand it: its switch appears.
        tree.move_cursor(node)
        await pilot.pause()
        assert app.selected == Address.parse("0000:00:02.0")
        details = app.query_one("#details").render()
        assert "root port" in str(details)
        await pilot.press("enter")
        await pilot.pause()
        assert (2, "0000:01:00.0") in rows(tree.root)


async def test_device_names_with_brackets_are_not_markup(unpacked):
    """Real device names contain [brackets]; they must reach the screen intact."""
    from dataclasses import replace

    t = load_sysfs(unpacked("rp-endpoints"))
    a = Address.parse("0000:00:1f.2")
    fn = replace(t[a], device_name="Ethernet Controller [X710] for 10GbE SFP+", vendor_id=None)
    from explorer.model import Topology

    t2 = Topology.build([fn if f.address == a else f for f in t], t.host_bridges, t.source)
    app = ExplorerApp(t2)
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        tree = app.query_one(TopologyTree)
        node = next(n for n in tree.root.children[0].children if n.data == a)
        assert "[X710]" in node.label.plain
