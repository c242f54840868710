"""Reboot what-if on more machines and parameter sets (tests/fixtures/qemu-boot-more), and the
reboot remedies of ``fit`` checked against real boots followed by real hot-adds
(tests/fixtures/qemu-remedy). Captures made with scripts/qemu-capture (ORIGIN.md).

As in test_boot.py every expectation is read from the kernel's own captures: from the capture
booted without parameters, ``predict_boot`` with the pci= words of another capture's command
line must give that capture's bus ranges, windows, BARs, ROMs and IOV BARs, and the kernel's
own lines about what it changed.
"""

from __future__ import annotations

import json
import re

import pytest

from explorer.cli import main
from explorer.kernel.setup.boot import compare_layouts, predict_boot
from conftest import FIXTURES
from test_boot import _load, _pci_words  # one capture cache for both files

MORE = FIXTURES / "qemu-boot-more"
REMEDY = FIXTURES / "qemu-remedy"
KEEP = re.compile(r"add_size|: assigned|can't assign|failed to assign|try to assign|max bus depth|released|"
                  r"reassigned|failed to expand|failed to add|Some PCI device|Automatically enabled|relaxed alignment|"
                  r"cannot fit|can't claim|trying firmware|conflicts with")


def _pairs() -> list[tuple[str, str, str]]:
    out = []
    for kdir in sorted(p for p in MORE.iterdir() if p.is_dir()):
        for base in sorted(kdir.glob("boot-*-none.tar.gz")):
            machine = base.name[len("boot-"):-len("-none.tar.gz")]
            for other in sorted(kdir.glob(f"boot-{machine}-*.tar.gz")):
                pset = other.name[len(f"boot-{machine}-"):-len(".tar.gz")]
                if pset != "none":
                    out.append((kdir.name, machine, pset))
    return out


PAIRS = _pairs()


def test_the_data_has_new_machines_and_sets():
    assert len({m for _, m, _ in PAIRS}) >= 3
    assert {k for k, _, _ in PAIRS} >= {"6.1"}
    sets = {_pci_words(_load(MORE / k / f"boot-{m}-{s}.tar.gz")[0].source.kernel_cmdline) for k, m, s in PAIRS}
    assert {"pci=realloc=off", "pci=assign-busses", "pci=hpbussize=2"} <= sets


@pytest.mark.parametrize("kernel,machine,pset", PAIRS, ids=[f"{k}-{m}-{s}" for k, m, s in PAIRS])
def test_boot_with_the_set_equals_the_kernels_own_boot(kernel, machine, pset):
    src, fw = _load(MORE / kernel / f"boot-{machine}-none.tar.gz")
    actual, actual_log = _load(MORE / kernel / f"boot-{machine}-{pset}.tar.gz")
    params = _pci_words(actual.source.kernel_cmdline)
    assert params
    res = predict_boot(src, fw, kernel_params=params)
    assert res.kernel == kernel and res.firmware_known and res.predicted is not None
    cmp = compare_layouts(res.predicted, actual)
    if any("not predicted exactly" in w for w in res.warnings):
        # the engine says it cannot know (e.g. two bridges decoding one bus in the firmware's
        # numbering hide a device): then it must indeed differ, and say so
        assert any(cmp[w][0] != cmp[w][1] for w in cmp)
        return
    for what in ("windows", "bars", "buses"):
        equal, total, misses = cmp[what]
        assert total > 0
        assert equal == total, f"{what}: {equal}/{total}; " + "; ".join(misses)
    assert {f.address for f in res.predicted} == {f.address for f in actual if not f.is_virtfn}
    want = [re.sub(r"^\[\s*\d+\.\d+\]\s*", "", ln) for ln in actual_log.changes if KEEP.search(ln)]
    got = [m for m in res.messages if KEEP.search(m)]
    assert got == want


@pytest.mark.parametrize("kernel,machine", sorted({(k, m) for k, m, _ in PAIRS}))
def test_no_parameters_reproduce_the_source(kernel, machine, capsys):
    base = MORE / kernel / f"boot-{machine}-none.tar.gz"
    assert main(["boot", str(base), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["diff"]) >= {"buses", "windows", "bars"}
    assert not any(doc["diff"][k] for k in doc["diff"]), doc["diff"]


def test_iov_bars_are_measured():
    """The SR-IOV machines' IOV BARs take part in the comparison (the firmware leaves them to the kernel)."""
    seen = 0
    for k, m, s in PAIRS:
        actual, _ = _load(MORE / k / f"boot-{m}-{s}.tar.gz")
        seen += sum(1 for f in actual for _ in (f.vf_bars or ()))
    assert seen > 0


# ---- reboot remedies, then the hot-add, on the real kernel ------------------------------------


def _remedy_cases() -> list[str]:
    return sorted(f"{p.parent.name}/{p.name[:-len('.meta.json')]}" for p in REMEDY.glob("*/*.meta.json")
                  if json.loads(p.read_text()).get("qmp"))


def _new_function(pre, post):
    before = {f.address for f in pre}
    new = [f for f in post if f.address not in before and not f.is_virtfn]
    assert len(new) == 1
    return new[0]


@pytest.mark.parametrize("case", _remedy_cases())
def test_the_first_reboot_remedy_really_fits(case, capsys):
    """The capture ``CASE`` booted the machine of ``MACHINE-none`` with the first remedy ``fit``
    offers for the hot-add (``CASE.pre``), then hot-added the device through the QEMU monitor
    (``CASE``). The remedy must be the one the capture used, the predicted boot must equal the
    kernel's boot, and the device must sit where the remedy says."""
    kernel, case = case.split("/")
    machine = case.split("-", 1)[0]
    base = REMEDY / kernel / f"{machine}-none.tar.gz"
    pre, _ = _load(REMEDY / kernel / f"{case}.pre.tar.gz")
    post, _ = _load(REMEDY / kernel / f"{case}.tar.gz")
    dev = _new_function(pre, post)
    port = str(dev.parent)
    bars = [f"{b.index}:{b.kind.value}:{b.size}" for b in dev.bars or () if b.size]
    meta = json.loads((REMEDY / kernel / f"{case}.meta.json").read_text())
    args = ["fit", str(base), "--port", port, "--hotplug", meta["hotplug"], "--json"]
    for b in bars:
        args += ["--bar", b]
    assert main(args) == 1  # does not fit as the machine is booted now
    doc = json.loads(capsys.readouterr().out)
    first = doc["remedies"][0]
    m = re.match(r"fits after a reboot with (pci=\S+): (.*) \(simulated", first)
    assert m, first
    assert m.group(1) == _pci_words(pre.source.kernel_cmdline) == meta["kernel_params"]
    # the boot the remedy predicts is the kernel's boot
    src, fw = _load(base)
    res = predict_boot(src, fw, kernel_params=m.group(1))
    assert res.kernel == kernel
    for what, (equal, total, misses) in compare_layouts(res.predicted, pre).items():
        assert equal == total, f"{what}: {misses}"
    # and the device really got every BAR, at the addresses the remedy gave
    said = {int(i): int(a, 16) for i, a in re.findall(r"BAR (\d+) at (0x[0-9a-f]+)", m.group(2))}
    got = {b.index: b.start for b in dev.bars or () if b.size}
    assert all(b.assigned for b in dev.bars or () if b.size)
    assert said == got
