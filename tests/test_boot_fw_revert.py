"""pci_revert_fw_address() at boot, on a real capture whose firmware log is altered.

SeaBIOS never leaves two BARs overlapping, so no real boot here reaches this path; the
expectations follow the kernel's code (Linux 6.12, the same in Debian's 6.1.192):

* arch/x86/pci/i386.c pcibios_allocate_dev_resources(): a BAR or IOV BAR that
  pci_claim_resource() refuses is remembered by pcibios_save_fw_addr() and made unassigned
  ("We'll assign a new address later");
* drivers/pci/setup-res.c pci_assign_resource(): when _pci_assign_resource() finds no space
  ("can't assign; no space") it calls pci_revert_fw_address(), which puts the resource back
  at the firmware's address: behind a bridge only when that bridge's window holds it
  (``if (pci_upstream_bridge(dev)) return -ENXIO;``, the resource keeping that address),
  otherwise it requests it there ("trying firmware assignment") and on a conflict restores
  the size-only resource ("conflicts with") before "failed to assign".

The machine: the real nvme PF whose 127 VFs' IOV BAR does not fit its port's window
(tests/fixtures/qemu-boot-more/6.1/boot-iovfull-none, the firmware left the IOV BAR at 0).
"""

from __future__ import annotations

import tarfile

from explorer.kernel.setup.boot import predict_boot
from explorer.sources import load_source
from explorer.sources.dmesg import parse_dmesg
from conftest import FIXTURES

BASE = FIXTURES / "qemu-boot-more" / "6.1" / "boot-iovfull-none.tar.gz"
PF = "pci 0000:01:00.0: "


def _log_with_iov_bar_at(start: int) -> str:
    text = tarfile.open(BASE).extractfile("./dmesg.txt").read().decode()  # type: ignore[union-attr]
    whole = "VF BAR 0 [mem 0x00000000-0x001fbfff 64bit]"
    one = "VF BAR 0 [mem 0x00000000-0x00003fff 64bit]"
    assert whole in text and one in text
    text = text.replace(whole, f"VF BAR 0 [mem {start:#010x}-{start + 0x1fc000 - 1:#010x} 64bit]")
    return text.replace(one, f"VF BAR 0 [mem {start:#010x}-{start + 0x4000 - 1:#010x} 64bit]")


def _pf_lines(messages) -> list[str]:
    return [m[len(PF):] for m in messages if m.startswith(PF) and "VF BAR" in m]


def test_the_unaltered_machine_never_reverts():
    src = load_source(str(BASE))
    fw = parse_dmesg(tarfile.open(BASE).extractfile("./dmesg.txt").read().decode())  # type: ignore[union-attr]
    res = predict_boot(src, fw, kernel_params="pci=realloc=off")
    assert not any("trying firmware assignment" in m for m in res.messages)
    assert "VF BAR 0 [mem size 0x001fc000 64bit]: failed to assign" in _pf_lines(res.messages)


def test_claim_conflict_then_no_space_tries_the_firmware_address_and_reports_the_conflict():
    src = load_source(str(BASE))
    orig = parse_dmesg(tarfile.open(BASE).extractfile("./dmesg.txt").read().decode())  # type: ignore[union-attr]
    pf_bar = next(r for a, d in orig.devices.items() if str(a) == "0000:01:00.0" for i, r in d.bars.items() if i == 0)
    fw = parse_dmesg(_log_with_iov_bar_at(pf_bar.start))  # on top of the PF's own BAR 0, as the firmware left it
    res = predict_boot(src, fw, kernel_params="pci=realloc=off")
    fwr = f"[mem {pf_bar.start:#010x}-{pf_bar.start + 0x1fc000 - 1:#010x} 64bit]"
    bar0 = f"[mem {pf_bar.start:#010x}-{pf_bar.end:#010x} 64bit]"
    lines = _pf_lines(res.messages)
    assert lines[:5] == [
        f"VF BAR 0 {fwr}: can't claim; address conflict with 0000:01:00.0 {bar0}",
        "VF BAR 0 [mem size 0x001fc000 64bit]: can't assign; no space",
        f"VF BAR 0: trying firmware assignment {fwr}",
        f"VF BAR 0 {fwr}: conflicts with 0000:01:00.0 {bar0}",
        "VF BAR 0 [mem size 0x001fc000 64bit]: failed to assign",
    ]
    vb = res.predicted.get("0000:01:00.0").vf_bars[0]  # type: ignore[union-attr, index]
    assert vb.unassigned


def test_firmware_address_outside_the_bridge_window_is_not_tried():
    src = load_source(str(BASE))
    orig = parse_dmesg(tarfile.open(BASE).extractfile("./dmesg.txt").read().decode())  # type: ignore[union-attr]
    win = next(d.windows["mem"] for a, d in orig.devices.items() if str(a) == "0000:00:02.0")
    start = win.end + 1 - 0x100000  # runs past the end of the port's window as the firmware left it
    fw = parse_dmesg(_log_with_iov_bar_at(start))
    res = predict_boot(src, fw, kernel_params="pci=realloc=off")
    fwr = f"[mem {start:#010x}-{start + 0x1fc000 - 1:#010x} 64bit]"
    lines = _pf_lines(res.messages)
    assert lines[:3] == [
        f"VF BAR 0 {fwr}: can't claim; no compatible bridge window",
        "VF BAR 0 [mem size 0x001fc000 64bit]: can't assign; no space",
        # -ENXIO: no "trying firmware assignment", and the resource keeps the firmware's range
        f"VF BAR 0 {fwr}: failed to assign",
    ]
    assert not any("trying firmware assignment" in m for m in res.messages)
