"""Mediated devices in the app: under their parent in the tree, their details, the type
picker on m, and a / x on an mdev (on the bundled GVT-g desktop)."""

from __future__ import annotations

from explorer.model import Address
from explorer.sources import load_source
from explorer.ui.app import ExplorerApp, ModeTree
from explorer.ui.mdev import MdevKey

TERMINAL = (140, 45)
IGPU = Address.parse("0000:00:02.0")
VGPU = "a297db4a-f4c2-11e6-90f6-d3b88d6c9525"


async def _settle(app, pilot):
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def test_mdevs_in_the_tree_details_and_type_picker():
    app = ExplorerApp(load_source("builtin:intel-cfl-gvtg-desktop"), source="builtin:intel-cfl-gvtg-desktop")
    async with app.run_test(size=TERMINAL) as pilot:
        await _settle(app, pilot)
        assert app.reveal(IGPU)
        await _settle(app, pilot)
        details = app.details_text.plain
        assert "i915-GVTg_V5_1  GVTg_V5_1  (vfio-pci, 1 available)" in details and "Scalable IOV" in details
        # The active vGPU is a child row of the iGPU.
        tree = app.query_one(ModeTree)
        assert app.reveal(MdevKey(VGPU))
        await _settle(app, pilot)
        node = tree._key_nodes[MdevKey(VGPU)]
        assert node.parent is tree._key_nodes[IGPU] and VGPU in node.label.plain and "g14" in node.label.plain
        assert app.selected == MdevKey(VGPU)
        assert "IOMMU group        14" in app.details_text.plain
        # a on the mdev gives it to a VM; x removes it.
        await pilot.press("a")
        await pilot.pause()
        await pilot.press("ctrl+a", "ctrl+k", *"desk", "enter")
        await _settle(app, pilot)
        await pilot.press("x")
        await _settle(app, pilot)
        assert [a.words() for a in app.plan.actions] == [["assign", VGPU, "--vm", "desk"], ["mdev-remove", VGPU]]
        assert "MDEV-MISSING" not in {f.code for f in app.findings}  # assigned, then removed: in that order, fine
        # m on the iGPU: the type picker lists its types with their free instances.
        assert app.reveal(IGPU)
        await _settle(app, pilot)
        await pilot.press("m")
        await pilot.pause()
        dialog = app.screen
        assert dialog.__class__.__name__ == "MdevTypeDialog"
        types = dialog.query_one("#types")
        assert [types.get_option_at_index(i).id for i in range(types.option_count)] == [
            "i915-GVTg_V5_1", "i915-GVTg_V5_2", "i915-GVTg_V5_4", "i915-GVTg_V5_8"]
        await pilot.press("down", "down", "enter")  # i915-GVTg_V5_4
        await pilot.pause()
        await pilot.press("ctrl+a", "ctrl+k", *"5 office", "enter")
        await _settle(app, pilot)
        assert app.plan.actions[-1].words()[:6] == ["mdev", "0000:00:02.0", "--type", "i915-GVTg_V5_4", "--count", "5"]
        assert app.plan.actions[-1].vm == "office"
        # Removed before the five are created: 4 + 1 fit.
        assert not [f for f in app.findings if f.severity == "error"], app.findings
