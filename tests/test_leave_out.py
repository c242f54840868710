"""Commands that show fewer facts read fewer files: what they leave out stays unknown, and
what they print is the same as after a whole load (on every real capture)."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import capture_names
from explorer import cli
from explorer.export.groups import groups_json, list_text
from explorer.export.topology import render_tree
from explorer.kernel.groups import predict_groups
from explorer.sources import load_source
from explorer.sources.sysfs import LEAVE_OUT, load_sysfs

CAPTURES = capture_names()
#: The facts each part of LEAVE_OUT stands for.
LEFT_OUT = {
    "resources": ("bars", "rom"),
    "attributes": ("driver_override", "reset_methods", "numa_node"),
}


@pytest.mark.parametrize("name", CAPTURES)
def test_left_out_facts_are_unknown_and_the_rest_unchanged(name, unpacked):
    root = unpacked(name)
    whole = load_sysfs(root)
    light = load_sysfs(root, leave_out=LEAVE_OUT)
    assert list(whole.functions) == list(light.functions)
    gone = {f for fields in LEFT_OUT.values() for f in fields}
    for a, fn in whole.functions.items():
        lf = light.functions[a]
        for f in dataclasses.fields(fn):
            if f.name in gone:
                assert getattr(lf, f.name) is None, (a, f.name)
            elif f.name == "bridge" and fn.bridge:
                # bus numbers from config space; the windows come from the resource file
                assert (lf.bridge.primary, lf.bridge.secondary, lf.bridge.subordinate) == (
                    fn.bridge.primary, fn.bridge.secondary, fn.bridge.subordinate), a
                assert (lf.bridge.io_window, lf.bridge.mem_window, lf.bridge.pref_window) == (None, None, None), a
            elif f.name == "vf_bars" and fn.vf_bars:
                assert lf.vf_bars is None, a
            else:
                assert getattr(lf, f.name) == getattr(fn, f.name), (a, f.name)
    assert light.source.group_types == ()
    assert whole.source.group_types or not whole.source.iommu_present


@pytest.mark.parametrize("name", CAPTURES)
def test_tree_and_groups_print_the_same_as_after_a_whole_load(name, unpacked):
    root = str(unpacked(name))
    whole = load_source(root)
    tree = load_source(root, leave_out=cli._TREE_TEXT_LEAVES_OUT)
    assert render_tree(tree) == render_tree(whole)
    light = load_source(root, leave_out=cli._GROUPS_LEAVE_OUT)
    pw, pl = predict_groups(whole), predict_groups(light)
    assert pl.groups == pw.groups
    for which in ("reported", "predicted"):
        assert list_text(light, pl, which=which, explain=True) == list_text(whole, pw, which=which, explain=True)
        assert groups_json(light, pl, which=which) == groups_json(whole, pw, which=which)


def test_an_unknown_fact_to_leave_out_is_refused(unpacked):
    with pytest.raises(ValueError, match="cannot leave out"):
        load_sysfs(unpacked(CAPTURES[0]), leave_out=frozenset({"config"}))


def test_the_tree_command_reads_no_resource_file(unpacked, capsys, monkeypatch):
    """What the command really opens: no resource, driver_override, reset_method, numa_node
    or group type file."""
    import os

    opened: list[str] = []
    real_open = os.open

    def spy(path, *args, **kw):
        opened.append(os.fsdecode(path))
        return real_open(path, *args, **kw)

    root = str(unpacked(CAPTURES[0]))
    monkeypatch.setattr(os, "open", spy)
    assert cli.main(["tree", root]) == 0
    names = {p.rsplit("/", 1)[-1] for p in opened}
    assert "config" in names
    assert not names & {"resource", "driver_override", "reset_method", "numa_node", "type"}
    opened.clear()
    assert cli.main(["tree", root, "--json"]) == 0
    names = {p.rsplit("/", 1)[-1] for p in opened}
    assert {"resource", "driver_override", "numa_node", "type"} <= names
    capsys.readouterr()
