"""Names come from the system's pci.ids and agree with pciutils; without pci.ids nothing fails."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import capture_names
from explorer.model import names
from explorer.sources.sysfs import load_sysfs

LSPCI = shutil.which("lspci")
_MM = re.compile(r'"([^"]*)"')


@pytest.fixture
def use_pci_ids(monkeypatch):
    def use(path: str) -> None:
        monkeypatch.setenv("PCI_EXPLORER_PCI_IDS", path)
        names.reset_cache()

    yield use
    names.reset_cache()


def _strip_id(s: str) -> str:
    return re.sub(r"\s*\[[0-9a-f]{4}\]$", "", s)


@pytest.mark.skipif(LSPCI is None or names.find_pci_ids() is None, reason="needs pciutils and pci.ids")
@pytest.mark.parametrize("name", ["switch", "pcie-pci-bridge", "sriov-nvme", "rc-integrated"])
def test_names_agree_with_lspci(name, unpacked, use_pci_ids):
    root = unpacked(name)
    use_pci_ids(names.find_pci_ids() or "")
    out = subprocess.run(
        [LSPCI, "-A", "linux-sysfs", "-O", f"sysfs.path={root}/sys/bus/pci", "-mm", "-nn", "-D"],
        capture_output=True, text=True, check=True,
    ).stdout
    t = load_sysfs(root)
    checked = 0
    for line in out.splitlines():
        bdf = line.split()[0]
        fields = _MM.findall(line)
        klass, vendor, device = (_strip_id(f) for f in fields[:3])
        fn = t[bdf]
        assert names.class_name(fn) == klass, bdf
        assert names.vendor_name(fn) == vendor, bdf
        if not device.startswith("Device"):
            assert names.device_name(fn) == device, bdf
        checked += 1
    assert checked == len(t)


def test_without_pci_ids_names_fall_back(unpacked, use_pci_ids, tmp_path):
    use_pci_ids(str(tmp_path / "missing.ids"))
    t = load_sysfs(unpacked("switch"))
    fn = t["0000:03:00.0"]
    assert names.vendor_name(fn) is None and names.device_name(fn) is None
    assert names.class_name(fn) == "Ethernet controller"  # built-in class table
    assert names.short_name(fn) == "Ethernet controller"


def test_garbled_pci_ids_never_fails(use_pci_ids, tmp_path, unpacked):
    bad = tmp_path / "pci.ids"
    bad.write_bytes(b"8086  Intel Corporation\n\tzzzz  broken line\n\t\tnot hex\nC 02  Network controller\n\t00  Ethernet controller\n\xff\xfe garbage\n")
    use_pci_ids(str(bad))
    fn = load_sysfs(unpacked("switch"))["0000:03:00.0"]
    assert names.vendor_name(fn) == "Intel Corporation"
    assert names.device_name(fn) is None
    assert names.class_name(fn) == "Ethernet controller"
