"""Planning from the keyboard: actions, background validation, findings, undo/redo, export, save, quit."""

from __future__ import annotations

from explorer.model import Address
from explorer.sources.sysfs import load_sysfs
from explorer.ui.app import ExplorerApp, ModeTree

TERMINAL = (140, 45)
NVME = Address.parse("0000:02:00.0")


async def _settle(app, pilot):
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def _select(app, pilot, addr):
    assert app.reveal(addr)
    await pilot.pause()
    await pilot.pause()
    assert app.selected == addr


async def test_split_group_is_refused_and_whole_group_exports(unpacked, tmp_path):
    app = ExplorerApp(load_sysfs(unpacked("rp-noacs")))
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        await _select(app, pilot, NVME)
        # a: assign this one device; the dialog asks for the VM.
        await pilot.press("a")
        await pilot.pause()
        await pilot.press("ctrl+a", "ctrl+k", *"win10", "enter")
        await _settle(app, pilot)
        assert [a.words() for a in app.plan.actions] == [["assign", "0000:02:00.0", "--vm", "win10"]]
        codes = {f.code for f in app.findings if f.severity == "error"}
        assert "GROUP-SPLIT" in codes
        # The tree marks the planned change.
        tree = app.query_one(ModeTree)
        assert "VM win10" in tree._key_nodes[NVME].label.plain
        # Export refuses while errors remain.
        await pilot.press("e")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "ExportDialog"
        assert app.screen.blocked
        assert "Refused" in str(app.screen.query_one("#status").render())
        await pilot.press("escape")
        await pilot.pause()
        # Undo, then assign the whole group: no errors.
        await pilot.press("z")
        await _settle(app, pilot)
        assert app.plan.actions == ()
        await pilot.press("y")
        await _settle(app, pilot)
        assert len(app.plan.actions) == 1
        await pilot.press("z")
        await _settle(app, pilot)
        await _select(app, pilot, NVME)
        await pilot.press("A")
        await pilot.pause()
        await pilot.press("ctrl+a", "ctrl+k", *"win10", "enter")
        await _settle(app, pilot)
        assert not [f for f in app.findings if f.severity == "error"], app.findings
        for member in ("0000:01:00.0", "0000:04:00.0"):
            # Nodes are built when first shown; the mark is there when they are.
            await _select(app, pilot, Address.parse(member))
            assert "VM win10" in tree._key_nodes[Address.parse(member)].label.plain
        # Export: libvirt, written to a file; a second write asks before replacing.
        await pilot.press("e")
        await pilot.pause()
        dialog = app.screen
        assert not dialog.blocked
        dialog._render_target("libvirt")
        out = tmp_path / "win10.xml"
        dialog.query_one("#path").value = str(out)
        dialog.action_write()
        await pilot.pause()
        assert out.exists() and "<hostdev" in out.read_text()
        await pilot.press("e")
        await pilot.pause()
        app.screen._render_target("libvirt")
        app.screen.query_one("#path").value = str(out)
        app.screen.action_write()
        await pilot.pause()
        assert app.screen.__class__.__name__ == "ConfirmDialog"


async def test_finding_jumps_to_its_device(unpacked):
    app = ExplorerApp(load_sysfs(unpacked("rp-noacs")))
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        assert app.add_action(["assign", str(NVME), "--vm", "win10"])
        await _settle(app, pilot)
        split = next(i for i, f in enumerate(app.findings) if f.code == "GROUP-SPLIT")
        await _select(app, pilot, Address.parse("0000:00:1f.0"))
        # f jumps through the findings, revealing the device of each.
        for _ in range(split + 1):
            await pilot.press("f")
            await pilot.pause()
            await pilot.pause()
        assert app.selected in app.findings[split].devices


async def test_save_is_atomic_and_quit_asks_when_unsaved(unpacked, tmp_path):
    from explorer.plan import load_plan

    app = ExplorerApp(load_sysfs(unpacked("sriov-nvme")))
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        await _select(app, pilot, Address.parse("0000:01:00.0"))
        await pilot.press("v")
        await pilot.pause()
        await pilot.press("ctrl+a", "ctrl+k", "2", "enter")
        await _settle(app, pilot)
        assert [a.words() for a in app.plan.actions] == [["sriov", "0000:01:00.0", "--vfs", "2"]]
        # Quitting with unsaved changes asks first (save, quit, or cancel); "n" cancels.
        await pilot.press("q")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "ChoiceDialog"
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running
        path = tmp_path / "plan.yaml"
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("ctrl+a", "ctrl+k", *str(path), "enter")
        await pilot.pause()
        assert path.exists() and not app.dirty
        assert load_plan(path).actions == app.plan.actions
        assert not list(tmp_path.glob(".*.tmp"))
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


async def test_bad_action_input_is_reported_not_crashing(unpacked):
    app = ExplorerApp(load_sysfs(unpacked("sriov-nvme")))
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        await _select(app, pilot, Address.parse("0000:01:00.0"))
        assert not app.add_action(["sriov", "0000:01:00.0", "--vfs", "many"])
        assert app.plan is None or app.plan.actions == ()


async def test_hot_add_a_device_copied_from_a_bundled_machine(unpacked):
    """H: the GPU of a bundled laptop, hot-added below an empty hotplug port, keeps its BAR numbers."""
    app = ExplorerApp(load_sysfs(unpacked("hotplug-acpi-default-1g.pre")))
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        await _select(app, pilot, Address.parse("0000:00:02.0"))
        await pilot.press("H")
        await pilot.pause()
        await pilot.press(*"amd-laptop-dgpu-usb4 0000:03:00.0", "enter")
        await _settle(app, pilot)
        (act,) = app.plan.actions
        words = act.words()
        assert words[:2] == ["hot-add", "0000:00:02.0"]
        assert "0:pref64:8G" in words and "2:pref64:256M" in words and "4:io:256" in words
        assert any(f.code.startswith("HOTADD") for f in app.findings)


async def test_hot_add_dialog_takes_the_hotplug_mode_and_shows_the_context(unpacked):
    """h: hotplug=native overrides the slot driver the source shows (acpiphp here); without it the
    findings follow the driver read from the source, as fit and check do."""
    app = ExplorerApp(load_sysfs(unpacked("qemu-6.12/hotplug-acpi-default-1g.pre")))
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        assert "6.12 rules (read)" in app.sub_title
        await _select(app, pilot, Address.parse("0000:00:02.0"))
        await pilot.press("h")
        await pilot.pause()
        await pilot.press(*"0:mem32:256 2:pref64:1G", "enter")
        await _settle(app, pilot)
        hot = [f for f in app.findings if f.code == "HOTADD-FIT"]
        assert hot and hot[0].severity == "error" and "with acpiphp on Linux 6.12" in hot[0].message
        await pilot.press("h")
        await pilot.pause()
        await pilot.press(*"0:mem32:256 2:pref64:1G hotplug=native", "enter")
        await _settle(app, pilot)
        assert app.plan.actions[-1].hotplug == "native"
        msgs = [f.message for f in app.findings if f.code == "HOTADD-FIT" and f.action == 1]
        assert not msgs  # pciehp re-sizes the port's window: the kernel placed the BAR
