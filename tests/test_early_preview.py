"""The preview `pci-explorer tui` starts before the app is imported (explorer/early_preview.py):
read in a child process where one can be forked, else in a thread; the same topology and the
same errors either way."""

from __future__ import annotations

import os

import pytest

from explorer import sources
from explorer.early_preview import EarlyPreview
from explorer.export.topology import render_tree
from explorer.sources import preview_source
from explorer.sources.synthetic import generate
from explorer.sources.sysfs_writer import write_sysfs_tree


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory):
    t = generate(700, seed=5)
    return write_sysfs_tree(t, tmp_path_factory.mktemp("early") / "tree")


@pytest.fixture(params=["child", "thread"])
def how(request, monkeypatch):
    if request.param == "thread":
        monkeypatch.delattr(os, "fork")
    elif not hasattr(os, "fork"):
        pytest.skip("no fork here")
    return request.param


def test_early_preview_is_preview_source(big_tree, monkeypatch, how):
    monkeypatch.setattr(sources, "PREVIEW_FROM", 500)
    early = EarlyPreview(str(big_tree))
    if how == "thread":
        assert early._child is None and early._thread is not None
    t, total = early.result()
    want, want_total = preview_source(str(big_tree))
    assert total == want_total == 700
    assert list(t.functions) == list(want.functions) and len(t) == sources.PREVIEW_FUNCTIONS
    assert t.source == want.source
    assert render_tree(t) == render_tree(want)
    assert early.result() is not None  # asked again: the same answer, no second read


def test_early_preview_small_tree_is_none(big_tree, how):
    assert EarlyPreview(str(big_tree)).result() is None  # 700 functions load whole at once


def test_early_preview_raises_what_preview_source_raises(big_tree, how):
    early = EarlyPreview(str(big_tree / "missing"))
    with pytest.raises(sources.SourceError) as got:
        early.result()
    with pytest.raises(sources.SourceError) as want:
        preview_source(str(big_tree / "missing"))
    assert str(got.value) == str(want.value)
