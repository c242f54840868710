"""The app as a person meets it, at 80x24 and at 200x60: every dialog on screen, one selection
for every view and key, plans visible where they are made, groups and trust readable, and
walkthrough steps done only by what the user does in them."""

from __future__ import annotations

import pytest

from explorer.model import Address
from explorer.sources import load_source
from explorer.ui.app import ExplorerApp, ModeTree
from explorer.ui.views import GroupKey
from explorer.ui.walkthrough import check, get_walkthrough

A = Address.parse
SIZES = [(80, 24), (200, 60)]
EGPU_LAPTOP = "builtin:tb4-laptop-egpu"
EGPU = A("0000:04:00.0")
GPU_LAPTOP = "builtin:amd-laptop-dgpu-usb4"
GPU = A("0000:03:00.0")


def app_for(source: str) -> ExplorerApp:
    return ExplorerApp(load_source(source), source=source)


async def settle(app, pilot):
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def select(app, pilot, addr):
    assert app.reveal(addr)
    await pilot.pause()
    await pilot.pause()
    assert app.selection.device == addr


def on_screen(app, widget) -> bool:
    r = widget.region
    w, h = app.size
    return r.width > 0 and r.height > 0 and r.x >= 0 and r.y >= 0 and r.right <= w and r.bottom <= h


def assert_dialog_fits(app):
    """The dialog's frame and every one of its buttons and inputs lie inside the terminal."""
    screen = app.screen
    frame = screen.query_one("#frame")
    assert on_screen(app, frame), (frame.region, app.size)
    for widget in list(screen.query("Button")) + list(screen.query("Input")):
        assert on_screen(app, widget), (widget, widget.region, app.size)


# ---- 1. export: the file name follows the format --------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_export_file_name_follows_the_target_until_edited(size, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = app_for(GPU_LAPTOP)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await select(app, pilot, GPU)
        assert app.add_action(["assign", str(GPU), "--vm", "vm1", "--group"])
        await settle(app, pilot)
        await pilot.press("e")
        await pilot.pause()
        dialog = app.screen
        assert dialog.__class__.__name__ == "ExportDialog"
        path = dialog.query_one("#path")
        assert path.value == "apply.sh"
        # down, down: shell -> undo -> libvirt; the name follows each.
        await pilot.press("down")
        await pilot.pause()
        assert dialog.target == "undo" and path.value == next(iter(dialog.files))
        assert path.value != "apply.sh"
        await pilot.press("down")
        await pilot.pause()
        assert dialog.target == "libvirt" and path.value == "vm1.xml"
        # enter goes to the file name, enter again writes the libvirt XML there.
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("enter")
        await settle(app, pilot)
        written = tmp_path / "vm1.xml"
        assert written.exists() and "<hostdev" in written.read_text()
        assert not (tmp_path / "apply.sh").exists()
        # A name the user typed stays when the target changes.
        await pilot.press("e")
        await pilot.pause()
        dialog = app.screen
        dialog.query_one("#path").value = "mine.txt"
        await pilot.press("down")
        await pilot.pause()
        assert dialog.target == "undo" and dialog.query_one("#path").value == "mine.txt"


# ---- 2. every dialog fits -------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_every_dialog_fits_the_terminal(size, tmp_path):
    app = app_for(GPU_LAPTOP)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await select(app, pilot, GPU)
        # Help scrolls inside itself.
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "HelpDialog"
        assert_dialog_fits(app)
        await pilot.press("escape")
        await pilot.pause()
        # Assign asks for the VM.
        await pilot.press("a")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "AskDialog"
        assert_dialog_fits(app)
        await pilot.press("enter")
        await settle(app, pilot)
        # With a plan the tree keeps most of the screen.
        tree = app.query_one(ModeTree)
        assert tree.region.height >= size[1] // 2, (tree.region, size)
        # Export: targets, file name and both buttons on screen.
        await pilot.press("e")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "ExportDialog"
        assert_dialog_fits(app)
        assert app.screen.query_one("#targets").region.height >= 5
        # Replacing a file asks, and the question fits.
        out = tmp_path / "x.sh"
        out.write_text("old")
        app.screen.query_one("#path").value = str(out)
        app.screen.action_write()
        await pilot.pause()
        assert app.screen.__class__.__name__ == "ConfirmDialog"
        assert_dialog_fits(app)
        await pilot.press("escape", "escape")
        await pilot.pause()
        # Open another source: a picker.
        await pilot.press("o")
        await pilot.pause()
        if app.screen.__class__.__name__ == "ConfirmDialog":  # unsaved plan: asked first
            assert_dialog_fits(app)
            await pilot.press("y")
            await pilot.pause()
        assert app.screen.__class__.__name__ == "PickDialog"
        assert_dialog_fits(app)
        await pilot.press("escape")
        await pilot.pause()
        # Quit with an unsaved plan: save, quit or cancel.
        await pilot.press("q")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "ChoiceDialog"
        assert_dialog_fits(app)
        labels = [str(b.label) for b in app.screen.query("Button")]
        assert any("Save" in x for x in labels)


# ---- 3. one selection for every view and key --------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_selection_survives_views_and_keys_act_on_it(size):
    app = app_for(EGPU_LAPTOP)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await select(app, pilot, EGPU)
        tree = app.query_one(ModeTree)
        for key in ("4", "1", "2", "3", "4", "1"):
            await pilot.press(key)
            await settle(app, pilot)
            assert app.selection.device == EGPU, key
            assert tree.view.device_of(tree.cursor_node.data) == EGPU, key
            assert str(EGPU) in app.details_text.plain, key
        await pilot.press("a")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "AskDialog"
        assert str(EGPU) in app.screen.title_text


@pytest.mark.parametrize("size", SIZES)
async def test_keys_act_on_the_row_seen_in_the_resources_view(size):
    app = app_for("builtin:hotplug-chassis-small-window")
    port = A("0000:02:01.0")
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await pilot.press("4")
        await settle(app, pilot)
        await select(app, pilot, port)
        tree = app.query_one(ModeTree)
        assert tree.view.device_of(tree.cursor_node.data) == port
        await pilot.press("h")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "AskDialog"
        assert str(port) in app.screen.title_text
        await pilot.press("escape")
        await pilot.pause()
        # h on an endpoint (the SMBus controller) does not offer a hot-add below it.
        await select(app, pilot, A("0000:00:1f.3"))
        await pilot.press("h")
        await pilot.pause()
        assert app.screen.__class__.__name__ != "AskDialog"


@pytest.mark.parametrize("size", SIZES)
async def test_details_follow_the_cursor_from_the_start(size):
    app = app_for(EGPU_LAPTOP)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        tree = app.query_one(ModeTree)
        assert tree.cursor_node is not None
        assert app.selection.key == tree.cursor_node.data
        assert "Select a device" not in app.details_text.plain and "Loading" not in app.details_text.plain


# ---- 4. planned changes where they are seen; tree keys -----------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_plan_mark_sits_next_to_the_address(size):
    app = app_for(EGPU_LAPTOP)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await select(app, pilot, EGPU)
        assert app.add_action(["assign", str(EGPU), "--vm", "vm1", "--group"])
        await settle(app, pilot)
        tree = app.query_one(ModeTree)
        label = tree._key_nodes[EGPU].label.plain
        assert label.startswith(str(EGPU))
        assert label.index("VM vm1") < 30, label
        # The tree never scrolls sideways: the name is cut instead.
        assert tree.styles.overflow_x == "hidden"
        # The selected row stays on screen after the plan panel opened.
        assert tree.cursor_node.data == EGPU
        first = tree.scroll_offset.y
        assert first <= tree.cursor_line < first + tree.scrollable_content_region.height


@pytest.mark.parametrize("size", SIZES)
async def test_right_expands_left_collapses_E_expands_all_P_shows_the_path(size):
    app = app_for(EGPU_LAPTOP)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        tree = app.query_one(ModeTree)
        port = A("0000:00:06.0")
        await select(app, pilot, port)
        node = tree._key_nodes[port]
        assert not node.is_expanded
        scroll_x = tree.scroll_offset.x
        await pilot.press("right")
        await pilot.pause()
        assert node.is_expanded and tree.scroll_offset.x == scroll_x
        await pilot.press("left")
        await pilot.pause()
        assert not node.is_expanded
        # E from the root row: everything expanded.
        tree.move_cursor(tree.root.children[0])
        await pilot.pause()
        await pilot.press("E")
        await pilot.pause()

        def walk(n):
            for c in n.children:
                yield c
                yield from walk(c)

        assert all(n.is_expanded for n in walk(tree.root) if n.allow_expand)
        assert EGPU in tree._key_nodes
        # P: only the path to the eGPU.
        await select(app, pilot, EGPU)
        await pilot.press("P")
        await settle(app, pilot)
        shown = [n.data for n in walk(tree.root)]
        path = tree.view.path_to(EGPU)
        assert set(path) <= set(shown)
        assert A("0000:00:02.0") not in shown  # a device off the path
        assert app.selection.device == EGPU
        await pilot.press("P")
        await settle(app, pilot)
        assert A("0000:00:02.0") in [n.data for n in walk(tree.root)]


@pytest.mark.parametrize("size", SIZES)
async def test_resources_rows_put_free_space_first(size):
    app = app_for("builtin:hotplug-chassis-small-window")
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await pilot.press("4")
        await settle(app, pilot)
        tree = app.query_one(ModeTree)
        rows = [n.label.plain for parent in tree.root.children for n in parent.children if "free" in n.label.plain]
        assert rows
        for row in rows:
            assert row.index("largest") < 40, row


# ---- 5. groups readable ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_groups_show_members_ids_driver_and_a_verdict(size):
    app = app_for(EGPU_LAPTOP)
    t = app.topology
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await pilot.press("2")
        await settle(app, pilot)
        tree = app.query_one(ModeTree)
        groups = [n for n in tree.root.children if isinstance(n.data, GroupKey)]
        assert groups and all(n.is_expanded for n in groups[:20])
        for n in groups:
            label = n.label.plain
            assert "kernel" not in label or "differently" in label
            members = [c.data for c in n.children]
            endpoints = [m for m in members if t[m].is_bridge is not True]
            if len(endpoints) > 1:
                assert "only together" in label or "host" in label, label
            for c in n.children:
                fn = t[c.data]
                assert f"[{fn.vendor_device}]" in c.label.plain
                if isinstance(fn.driver, str):
                    assert fn.driver in c.label.plain
        alone = next(n for n in groups if n.data.label == app.group_of(A("0000:00:02.0")))
        assert "can be passed through alone" in alone.label.plain
        await select(app, pilot, A("0000:00:0d.0"))
        assert "shares with" in app.details_text.plain


# ---- 6. trust and search ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_search_finds_tags_states_groups_and_plans(size):
    app = app_for(EGPU_LAPTOP)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        assert EGPU in app.find("untrusted")
        assert A("0000:00:07.0") in app.find("external-facing")
        group = app.group_of(EGPU)
        assert EGPU in app.find(f"group {group}")
        assert A("0000:00:02.0") not in app.find(f"group {group}")
        # From the keyboard, as a person does it.
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*"untrusted", "enter")
        await settle(app, pilot)
        assert app.selection.device in app.find("untrusted")
        # The plan's states are searchable.
        assert app.add_action(["assign", str(EGPU), "--vm", "gamevm", "--group"])
        await settle(app, pilot)
        assert EGPU in app.find("gamevm")
        # The trust view shows UNTRUSTED right after the address; the details say how to check authorization.
        await select(app, pilot, EGPU)
        await pilot.press("3")
        await settle(app, pilot)
        tree = app.query_one(ModeTree)
        label = tree._key_nodes[EGPU].label.plain
        assert label.startswith(f"{EGPU} ◆ VM gamevm UNTRUSTED"), label
        assert "Thunderbolt authorization" in app.details_text.plain


# ---- 7. walkthroughs --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_walkthrough_steps_wait_for_the_user(size):
    w = get_walkthrough("thunderbolt-trust")
    app = ExplorerApp(load_source(w.topology), source=w.topology, walkthrough=w)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        step = w.steps[0]
        assert step.task.kind == "view"
        assert not check(step.task, app.tour_state())[0]
        await pilot.press("n")
        await pilot.pause()
        assert app.step_index == 0
        await pilot.press("3")
        await settle(app, pilot)
        assert check(step.task, app.tour_state())[0]
        # The side panel sits below the header, beside the tree.
        tour = app.query_one("#tour")
        header = app.query_one("Header")
        assert tour.region.y >= header.region.bottom
        assert on_screen(app, tour)
        assert "Your turn" in str(app.query_one("#tour-text").render())
        await pilot.press("n")
        await settle(app, pilot)
        # Step 2: select the eGPU; a device selected before the step began does not count.
        assert app.step_index == 1
        assert not check(w.steps[1].task, app.tour_state())[0]
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*"04:00.0", "enter")
        await settle(app, pilot)
        assert check(w.steps[1].task, app.tour_state())[0]


@pytest.mark.parametrize("name", ["gpu-passthrough", "hotplug-fit", "thunderbolt-trust"])
async def test_walkthrough_from_the_keyboard_at_80x24(name, tmp_path, monkeypatch):
    """Only key presses, as the side panel tells them; every step done, nothing off-screen."""
    monkeypatch.chdir(tmp_path)
    keys = {
        "gpu-passthrough": [["slash", *"03:00.0", "enter"], ["2"], ["a", *"win11", "enter"],
                            ["slash", *"03:00.1", "enter", "a", "enter"], ["e", "down", "down", "enter", "enter"]],
        "hotplug-fit": [["4"], ["h", *"pref64:1G", "enter"], []],
        "thunderbolt-trust": [["3"], ["slash", *"04:00.0", "enter"], [], ["slash", *"01:00.0", "enter"]],
    }[name]
    w = get_walkthrough(name)
    app = ExplorerApp(load_source(w.topology), source=w.topology, walkthrough=w)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        for i, presses in enumerate(keys):
            assert app.step_index == i
            for k in presses:
                await pilot.press(k)
                await pilot.pause()
                if app.screen is not app.screen_stack[0]:
                    assert_dialog_fits(app)
            await settle(app, pilot)
            done, hint = check(w.steps[i].task, app.tour_state())
            assert done, (name, i, hint)
            await pilot.press("n")
            await settle(app, pilot)
        assert app.tour_done
    if name == "gpu-passthrough":
        assert (tmp_path / "win11.xml").exists()


# ---- 8. smaller things -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_palette_lists_actions_when_empty_and_ranks_actions_first(size):
    from textual.command import CommandPalette

    app = app_for(EGPU_LAPTOP)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.pause()
        palette = app.screen
        assert isinstance(palette, CommandPalette)
        listed = palette.query_one("CommandList")
        await pilot.pause(0.3)
        texts = [str(listed.get_option_at_index(i).prompt) for i in range(listed.option_count)]
        assert any("plan: assign" in t for t in texts), texts[:5]
        await pilot.press(*"assign")
        await pilot.pause(0.5)
        first = str(listed.get_option_at_index(0).prompt)
        assert "plan: assign" in first, first


@pytest.mark.parametrize("size", SIZES)
async def test_quit_can_save_the_plan_first(size, tmp_path):
    from explorer.plan import load_plan

    app = app_for(GPU_LAPTOP)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await select(app, pilot, GPU)
        assert app.add_action(["bind", str(GPU), "--driver", "vfio-pci"])
        await settle(app, pilot)
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("s")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "AskDialog"
        out = tmp_path / "p.yaml"
        app.screen.query_one("Input").value = str(out)
        await pilot.press("enter")
        await pilot.pause()
        await pilot.pause()
        assert not app.is_running
    assert load_plan(out).actions == app.plan.actions


@pytest.mark.parametrize("size", SIZES)
async def test_open_and_template_offer_pickers(size):
    app = app_for("builtin:hotplug-chassis-small-window")
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await select(app, pilot, A("0000:02:01.0"))
        # H: pick a machine, then one of its devices.
        await pilot.press("H")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "PickDialog"
        assert "amd-laptop-dgpu-usb4" in app.screen.shown
        await pilot.press(*"amd-laptop-dgpu", "enter")
        await pilot.pause()
        await pilot.pause()
        assert app.screen.__class__.__name__ == "PickDialog"
        assert "0000:03:00.0" in app.screen.shown
        app.screen.query_one("Input").value = "03:00.0"
        await pilot.pause()
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.plan.actions[0].words()[:2] == ["hot-add", "0000:02:01.0"]
        # o: the bundled machines, with completion of builtin names.
        await pilot.press("o")
        await pilot.pause()
        if app.screen.__class__.__name__ == "ConfirmDialog":
            await pilot.press("y")
            await pilot.pause()
        assert app.screen.__class__.__name__ == "PickDialog"
        assert "builtin:example-small" in app.screen.shown
        suggestion = await app.screen.suggester.get_suggestion("builtin:example-s")
        assert suggestion == "builtin:example-small"
        await pilot.press(*"example-small", "enter")
        await settle(app, pilot)
        assert app.topology.source.location == "builtin:example-small"


@pytest.mark.parametrize("size", SIZES)
async def test_a_group_row_takes_group_actions_only(size):
    app = app_for(EGPU_LAPTOP)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await select(app, pilot, EGPU)
        await pilot.press("2")
        await settle(app, pilot)
        tree = app.query_one(ModeTree)
        tree.move_cursor(tree.cursor_node.parent)  # the group row above the eGPU
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.selection.key, GroupKey) and app.selection.device is None
        await pilot.press("a")
        await pilot.pause()
        assert app.screen.__class__.__name__ != "AskDialog"  # one device: select it first
        await pilot.press("A")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "AskDialog"
        assert "whole IOMMU group" in app.screen.title_text
        await pilot.press("enter")
        await settle(app, pilot)
        words = app.plan.actions[0].words()
        assert words[0] == "assign" and "--group" in words
        members = app.analysis.groups.groups[app.selection.key.label]
        assert words[1] in {str(m) for m in members}
