"""The app, driven headless: the tree fills lazily and the details pane follows the cursor."""

from __future__ import annotations

from explorer.model import Address
from explorer.sources.sysfs import load_sysfs
from explorer.ui.app import ExplorerApp, ModeTree

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
        tree = app.query_one(ModeTree)
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
        assert "root port" in app.details_text.plain
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
        tree = app.query_one(ModeTree)
        node = next(n for n in tree.root.children[0].children if n.data == a)
        assert "[X710]" in node.label.plain


async def test_search_by_address_and_driver_reveals_device(unpacked):
    t = load_sysfs(unpacked("switch"))
    app = ExplorerApp(t)
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        await pilot.press("slash")
        await pilot.press(*"04:00.0")
        await pilot.press("enter")
        await pilot.pause()
        assert app.selected == Address.parse("0000:04:00.0")
        tree = app.query_one(ModeTree)
        assert tree.cursor_node.data == Address.parse("0000:04:00.0")
        # The path down to it was built on demand.
        assert (4, "0000:04:00.0") in rows(tree.root)
        # By driver: two e1000e functions; n goes to the next.
        await pilot.press("slash", *"e1000e", "enter")
        await pilot.pause()
        first = app.selected
        await pilot.press("n")
        await pilot.pause()
        assert {first, app.selected} == {Address.parse("0000:03:00.0"), Address.parse("0000:04:00.0")}


async def test_help_opens_and_closes(unpacked):
    app = ExplorerApp(load_sysfs(unpacked("base")))
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "HelpDialog"
        assert "IOMMU groups:" in str(app.screen.query_one("#help").render())
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.__class__.__name__ != "HelpDialog"


async def test_background_load_from_source_spec(unpacked):
    app = ExplorerApp(source=str(unpacked("multifunction")))
    async with app.run_test(size=TERMINAL) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.topology is not None and len(app.topology) > 5
        assert not app.query("#loading")


async def test_background_load_failure_is_shown(tmp_path):
    app = ExplorerApp(source=str(tmp_path / "missing"))
    async with app.run_test(size=TERMINAL) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "Could not load" in app.query_one("#details-pane").text.plain


async def test_each_view_mode_fills_the_tree(unpacked):
    """Topology, groups, trust and resources: one key each, each with content and details."""
    t = load_sysfs(unpacked("sriov-nvme"))
    app = ExplorerApp(t)
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        tree = app.query_one(ModeTree)
        for key, name in (("2", "groups"), ("3", "trust"), ("4", "resources"), ("1", "topology")):
            await pilot.press(key)
            await pilot.pause()
            assert app.view_name == name and tree.view.name == name
            assert len(tree.root.children) > 0
        # Groups: one node per predicted group, each equal to the kernel's.
        await pilot.press("2")
        await pilot.pause()
        labels = [n.label.plain for n in tree.root.children]
        assert len(labels) == len(t.reported_groups)
        assert not any("reported it differently" in lab for lab in labels)
        # Resources: the SR-IOV PF's headroom is listed.
        await pilot.press("4")
        await pilot.pause()
        heads = [n.label.plain for n in tree.root.children]
        assert any(h.startswith("SR-IOV headroom") for h in heads)
        assert any(h.startswith("0000:00:02.0") for h in heads)


async def test_switching_view_keeps_the_selected_device(unpacked):
    t = load_sysfs(unpacked("rp-noacs"))
    app = ExplorerApp(t)
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        assert app.reveal(Address.parse("0000:02:00.0"))
        await pilot.pause()
        await pilot.press("2")
        await pilot.pause()
        await pilot.pause()
        assert app.selected == Address.parse("0000:02:00.0")
        details = app.details_text.plain  # as given to the pane, before it wraps to the pane's width
        assert "IOMMU group (predicted)" in details and "no ACS capability" in details


def test_rcec_and_its_endpoints_name_each_other():
    from explorer.model import present
    from explorer.sources import load_source
    from explorer.ui.views import Analysis, device_details

    t = load_source("builtin:rcec-platform")
    a = Analysis(t)
    rcec = next(fn for fn in t if present(fn.caps.rcec))
    text = device_details(a, rcec.address).plain
    assert "RCEC: collects errors of" in text
    served = [x for x in t if x.pcie_type is not None and x.pcie_type.value == "rc-integrated-endpoint"
              and x.address.bus == rcec.address.bus and x.address.device in rcec.caps.rcec.devices]
    assert served, "the bundled RCEC machine has RCiEPs in the bitmap"
    for ep in served:
        assert str(ep.address) in text
        assert f"RCEC {rcec.bdf} collects this endpoint's errors" in device_details(a, ep.address).plain


def test_vmd_device_lists_the_drives_behind_it():
    from explorer.sources import load_source
    from explorer.ui.views import Analysis, device_details

    t = load_source("builtin:vmd-nvme-laptop")
    text = device_details(Analysis(t), Address.parse("0000:00:0e.0")).plain
    assert "VMD:" in text and "drive 10000:e1:00.0" in text
