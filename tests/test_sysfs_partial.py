"""sysfs trees read without root (64-byte config) and from other machines degrade to unknown."""

from __future__ import annotations

import os
import tarfile

import pytest

from conftest import FIXTURES
from explorer.model import ABSENT, Address
from explorer.sources.sysfs import load_sysfs

HWLOC = sorted((FIXTURES / "hwloc").glob("*.tar.bz2"))


_CACHE: dict[str, object] = {}


@pytest.fixture(scope="module")
def hwloc_root(tmp_path_factory):
    def get(archive):
        if archive.name not in _CACHE:
            dest = tmp_path_factory.mktemp("hwloc")
            with tarfile.open(archive) as tf:
                tf.extractall(dest, filter="tar")
            (top,) = [p for p in dest.iterdir() if p.is_dir()]
            _CACHE[archive.name] = top
        return _CACHE[archive.name]

    return get


@pytest.mark.parametrize("archive", HWLOC, ids=[p.name for p in HWLOC])
def test_hwloc_machine_loads_with_unknown_capabilities(hwloc_root, archive):
    root = hwloc_root(archive)
    t = load_sysfs(root)
    listed = {n for n in os.listdir(root / "sys/bus/pci/devices")}
    assert {str(a) for a in t.functions} == listed
    for fn in t:
        assert fn.config_size == 64
        # 64 bytes of config space cannot show the extended capabilities: unknown, not absent.
        if fn.pcie_type is None:
            assert fn.caps.acs is None and fn.caps.ats is None and fn.caps.pasid is None
        assert fn.iommu_group is None  # no iommu_groups in these trees: unknown
        assert fn.vendor_id is not None and fn.class_code is not None


def test_32bit_domain_prints_five_digits(hwloc_root):
    root = hwloc_root(FIXTURES / "hwloc" / "2pa-pcidomain32bits.tar.bz2")
    t = load_sysfs(root)
    a = Address.parse("10000:00:04.0")
    assert a in t.functions and str(a) == "10000:00:04.0"
    assert 0x10000 in t.domains


def test_switch_tree_parents_from_sysfs_paths(hwloc_root):
    root = hwloc_root(FIXTURES / "hwloc" / "32intel64-2p8co2t+8ve.tar.bz2")
    t = load_sysfs(root)
    ve = Address.parse("0000:1b:00.0")
    chain = [str(a) for a in t.path_to_root(ve)]
    assert chain == ["0000:1b:00.0", "0000:19:08.0", "0000:18:00.0", "0000:17:00.0"]
    assert t[Address.parse("0000:17:00.0")].parent is None
    for fn in t:
        if fn.bridge not in (None, ABSENT):
            assert fn.bridge.secondary is not None
