"""tui NEW --compare OLD: changed devices and groups are marked, the details say what changed."""

from __future__ import annotations

from conftest import QEMU
from explorer.model import Address
from explorer.sources import load_source
from explorer.ui.app import ExplorerApp, ModeTree

TERMINAL = (120, 40)
PRE = QEMU / "hotplug-acpi-switch-dp.pre.tar.gz"
POST = QEMU / "hotplug-acpi-switch-dp.tar.gz"


async def test_compare_marks_added_device_and_its_group():
    old, new = load_source(str(PRE)), load_source(str(POST))
    added = sorted(set(new.functions) - set(old.functions))
    assert len(added) == 1
    dev = added[0]
    port = new.functions[dev].parent
    app = ExplorerApp(new, compare=old)
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        assert "1 added" in app.sub_title
        tree = app.query_one(ModeTree)
        assert app.reveal(dev)
        await pilot.pause()
        assert "+added" in tree.cursor_node.label.plain
        details = app.details_text.plain
        assert "Compared with" in details and f"added {dev}" in details
        # an unchanged device says so
        assert app.reveal(Address.parse("0000:00:1f.2"))
        await pilot.pause()
        assert "+added" not in tree.cursor_node.label.plain and "~" not in tree.cursor_node.label.plain
        assert "no change to this device" in app.details_text.plain
        # the groups view: the device's group is marked, its details list the change
        await pilot.press("2")
        await pilot.pause()
        label = new.functions[dev].iommu_group
        gnode = next(n for n in tree.root.children if str(n.data) == f"group {label}")
        assert "changed since OLD" in gnode.label.plain
        others = [n for n in tree.root.children if n is not gnode]
        assert others and all("since OLD" not in n.label.plain for n in others)
        tree.move_cursor(gnode)
        await pilot.pause()
        assert f"{dev} (added): joined group {label}" in app.details_text.plain
        assert port is not None


async def test_compare_marks_a_removed_device_on_its_parent():
    old, new = load_source(str(POST)), load_source(str(PRE))
    gone = sorted(set(old.functions) - set(new.functions))
    parent = old.functions[gone[0]].parent
    app = ExplorerApp(new, compare=old)
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        tree = app.query_one(ModeTree)
        assert app.reveal(parent)
        await pilot.pause()
        assert "-1 removed below" in tree.cursor_node.label.plain
        assert f"removed below it: {gone[0]}" in app.details_text.plain
