"""A big machine's first screen: the preview of its first functions (sources.preview_source),
and the app showing it while the whole machine loads, with planning keys waiting."""

from __future__ import annotations

import asyncio
import threading

import pytest

from explorer import sources
from explorer.sources import load_source, preview_source
from explorer.sources.consistency import check_topology
from explorer.sources.synthetic import generate
from explorer.sources.sysfs import load_sysfs, preview_sysfs
from explorer.sources.sysfs_writer import write_sysfs_tree


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory):
    """A generated machine with SR-IOV PFs, switches and a VMD domain, as a sysfs tree."""
    t = generate(700, seed=5)
    return write_sysfs_tree(t, tmp_path_factory.mktemp("preview") / "tree")


def test_preview_is_the_first_functions_in_address_order(big_tree):
    whole = load_sysfs(big_tree)
    order = list(whole.functions)  # Topology.build keeps address order
    for n in (1, 17, 120, 450):
        t, total = preview_sysfs(big_tree, n)
        assert total == len(whole)
        assert list(t.functions) == order[:n]
        check_topology(t)  # no dangling parent, physfn or VF link
        for fn in t:
            full = whole.functions[fn.address]
            assert fn.parent == full.parent
            assert (fn.vendor_id, fn.device_id, fn.class_code, fn.driver, fn.iommu_group, fn.bars, fn.bridge) == (
                full.vendor_id, full.device_id, full.class_code, full.driver, full.iommu_group, full.bars, full.bridge)
            # a PF keeps the VFs the preview read, in the whole machine's order
            assert fn.virtfns == tuple(v for v in full.virtfns if v in t.functions)


def test_preview_cut_between_a_pf_and_its_vfs(big_tree):
    whole = load_sysfs(big_tree)
    order = list(whole.functions)
    pf = next(fn for fn in whole if len(fn.virtfns) >= 2)
    cut = order.index(pf.virtfns[0]) + 1  # the PF and its first VF, not the rest
    t, _ = preview_sysfs(big_tree, cut)
    assert t.functions[pf.address].virtfns == (pf.virtfns[0],)


def test_preview_source_only_for_big_sysfs_trees(big_tree, unpacked, monkeypatch):
    assert preview_source(str(big_tree)) is None  # 700 functions: loads whole as fast
    monkeypatch.setattr(sources, "PREVIEW_FROM", 500)
    t, total = preview_source(str(big_tree), 40)
    assert len(t) == 40 and total == 700
    assert t.source.location == str(big_tree)
    assert preview_source("builtin:switch-no-acs") is None  # YAML: read whole at once
    with pytest.raises(sources.SourceError):
        preview_source(str(big_tree / "missing"))


def test_app_shows_a_preview_then_the_whole_machine(big_tree, monkeypatch):
    """While the rest loads: the first rows, a subtitle that says so, planning keys off; then
    the whole machine with every key back and the cursor where the user left it."""
    from explorer.ui import app as app_mod
    from explorer.ui.app import ExplorerApp, ModeTree

    monkeypatch.setattr(sources, "PREVIEW_FROM", 100)
    release = threading.Event()

    def slow_load(spec):  # the whole load waits until the test has looked at the preview
        release.wait(30)
        return load_source(spec)

    monkeypatch.setattr(sources, "load_source", slow_load)
    whole = load_sysfs(big_tree)

    async def run() -> None:
        app = ExplorerApp(source=str(big_tree))
        async with app.run_test(size=(80, 24)) as pilot:
            for _ in range(100):
                await pilot.pause(0.05)
                if app.topology is not None:
                    break
            assert app.topology is not None and app.preview_total == len(whole)
            assert len(app.topology) == sources.PREVIEW_FUNCTIONS or len(app.topology) == len(whole)
            assert "loading" in app.sub_title and f"/{len(whole):,} functions" in app.sub_title
            assert app.check_action("plan_assign", (False,)) is None  # shown, disabled
            assert app.check_action("view", ("groups",)) is True
            await pilot.press("down", "down")
            await pilot.pause()
            kept = app.selection.device
            assert kept is not None
            await pilot.press("a")  # assign: does nothing on a preview
            await pilot.pause()
            assert app.plan is None and len(app.screen_stack) == 1
            release.set()
            for _ in range(200):
                await pilot.pause(0.05)
                if app.preview_total is None:
                    break
            assert app.preview_total is None and len(app.topology) == len(whole)
            assert "loading" not in app.sub_title
            assert app.check_action("plan_assign", (False,)) is True
            assert app.selection.device == kept
            assert app.query_one(ModeTree).cursor_node.data == kept
            assert len(app.search_index) == len(whole)
            assert app.find(str(whole.roots()[0]))

    asyncio.run(run())
    assert app_mod.PREVIEW_ACTIONS  # the set the check above relies on


def test_wide_levels_show_runs_of_rows(monkeypatch):
    """A level wider than ModeTree.CHUNK rows (100,000 groups) shows runs of rows, each filled
    when opened; revealing a device opens the run that holds it."""
    from explorer.ui.app import Chunk, ExplorerApp, ModeTree

    monkeypatch.setattr(ModeTree, "CHUNK", 3)
    t = load_source("builtin:switch-no-acs")

    async def run() -> None:
        app = ExplorerApp(t)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("2")
            await pilot.pause()
            tree = app.query_one(ModeTree)
            groups = list(tree.view.children(None))
            assert len(groups) > 3
            top = [n.data for n in tree.root.children]
            assert all(isinstance(c, Chunk) for c in top)
            assert [(c.start, c.end) for c in top] == [(i, min(i + 3, len(groups))) for i in range(0, len(groups), 3)]
            assert (top[0].first, top[-1].last) == (groups[0], groups[-1])
            assert not any(n.is_expanded for n in tree.root.children)
            # the cursor on a run: its details say what it holds; no device is selected
            tree.move_cursor(tree.root.children[0])
            await pilot.pause()
            assert "rows" in app.details_text.plain
            # a device of the last group: the run holding it opens, the cursor lands on it
            last_dev = tree.view.children(groups[-1])[0]
            assert app.reveal(last_dev)
            await pilot.pause()
            assert app.selection.device == last_dev
            assert tree.root.children[-1].is_expanded

    asyncio.run(run())
