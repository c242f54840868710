"""Snapshots: the real-kernel captures load as snapshots, capture() round-trips them and this
machine, serial numbers are zeroed unless asked, and hostile archives are refused."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import QEMU, capture_names
from explorer.model import Address, present
from explorer.sources import SourceError, detect_kind, load_source
from explorer.sources import snapshot as snap
from explorer.sources.config import ECAP_DSN, find_ext_cap
from explorer.sources.snapshot import SnapshotExists, capture, is_snapshot, load_snapshot
from explorer.sources.sysfs import has_pci, load_sysfs

CAPTURES = capture_names()
ZERO_SERIAL = "00-00-00-00-00-00-00-00"
SWITCH_DSN = {"0000:03:00.0": "52-54-00-ff-ff-12-34-56", "0000:04:00.0": "52-54-00-ff-ff-12-34-57"}
SWITCH_CONFIG = "sys/devices/pci0000:00/0000:00:02.0/0000:01:00.0/0000:02:00.0/0000:03:00.0/config"


def summary_devices(name: str) -> set[str]:
    """The BDFs of the '## devices' section of a capture's NAME.txt."""
    out: set[str] = set()
    section = ""
    for line in (QEMU / f"{name}.txt").read_text().splitlines():
        if line.startswith("## "):
            section = line[3:]
        elif section.startswith("devices") and line.strip():
            out.add(line.split()[0])
    return out


def without_serials(functions):
    """Functions with every present DSN replaced by a marker (serials differ on purpose)."""
    return {
        a: replace(fn, caps=replace(fn.caps, dsn="<serial>")) if present(fn.caps.dsn) else fn
        for a, fn in functions.items()
    }


def member_bytes(archive: Path, rel: str) -> bytes:
    with tarfile.open(archive) as tf:
        f = tf.extractfile("./" + rel)
        assert f is not None
        return f.read()


def tree_state(root: Path) -> dict[str, tuple]:
    """Every path under root with its kind and content (links: target), for 'nothing changed'."""
    state: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                state[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                state[rel] = ("dir",)
            elif p.is_file():
                state[rel] = ("file", p.read_bytes())
            else:
                state[rel] = ("other", p.lstat().st_mode)
    return state


# ---- 1. every real-kernel capture is a snapshot ---------------------------------------------


@pytest.mark.parametrize("name", CAPTURES)
def test_fixture_capture_loads_as_snapshot(name):
    path = QEMU / f"{name}.tar.gz"
    assert is_snapshot(path)
    t = load_snapshot(path)
    assert {str(a) for a in t.functions} == summary_devices(name)
    assert t.source.kind == "snapshot" and t.source.location == str(path)
    assert t.source.kernel_release == "6.1.0-56-amd64"


def test_load_source_dispatches_to_snapshot():
    path = str(QEMU / "switch.tar.gz")
    assert detect_kind(path) == "snapshot"
    assert load_source(path).functions == load_snapshot(path).functions


def test_plain_tar_and_one_top_directory_load(tmp_path):
    with gzip.open(QEMU / "switch.tar.gz") as f:
        raw = f.read()
    plain = tmp_path / "switch.tar"
    plain.write_bytes(raw)
    assert is_snapshot(plain)
    expected = load_snapshot(QEMU / "switch.tar.gz")
    assert load_snapshot(plain).functions == expected.functions
    # The same tree below one top-level directory (tar czf x.tar.gz capture/).
    nested = tmp_path / "nested.tar.gz"
    with tarfile.open(plain) as src, tarfile.open(nested, "w:gz") as dst:
        for m in src.getmembers():
            data = src.extractfile(m) if m.isreg() else None
            m.name = "capture/" + m.name.lstrip("./")
            dst.addfile(m, data)
    assert load_snapshot(nested).functions == expected.functions


def test_is_snapshot_sniffs_content(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("0000:00:00.0 Host bridge\n" * 40)
    assert not is_snapshot(text)
    assert not is_snapshot(tmp_path)
    assert not is_snapshot(tmp_path / "missing.tar.gz")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert not is_snapshot(empty)


# ---- 2. round trip through capture() --------------------------------------------------------


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_round_trip(name, unpacked, tmp_path):
    root = unpacked(name)
    expected = load_sysfs(root)
    out = tmp_path / "snap.tar.gz"
    report = capture(root, out)
    assert report.skipped == []
    assert report.devices == len(expected.functions)
    got = load_snapshot(out)
    assert without_serials(got.functions) == without_serials(expected.functions)
    assert got.host_bridges == expected.host_bridges
    assert (got.source.kernel_release, got.source.kernel_cmdline, got.source.iommu_present, got.source.group_types) == (
        expected.source.kernel_release,
        expected.source.kernel_cmdline,
        expected.source.iommu_present,
        expected.source.group_types,
    )
    n_dsn = sum(1 for fn in expected if present(fn.caps.dsn))
    assert report.serials_zeroed == n_dsn
    assert all(fn.caps.dsn == ZERO_SERIAL for fn in got if present(fn.caps.dsn))
    # Only what the loader reads, in the captures' layout.
    with tarfile.open(out) as tf:
        names = tf.getnames()
        assert names[0] == "." and all(n.startswith("./") for n in names[1:])
        tops = {n.split("/")[1] for n in names[1:]}
        assert tops <= {"sys", "proc", "meta", "dmesg.txt"}
        assert not any("/msi_irqs" in n or "/power/" in n or n.endswith("/modalias") for n in names)
        links = {m.name: m.linkname for m in tf.getmembers() if m.issym()}
    for link, target in links.items():
        assert not target.startswith("/"), link
    fixture_links = {}
    with tarfile.open(QEMU / f"{name}.tar.gz") as tf:
        fixture_links = {m.name: m.linkname for m in tf.getmembers() if m.issym()}
    for link, target in links.items():
        assert fixture_links[link] == target, "links keep their original relative targets"


def test_switch_serials_zeroed_by_default(unpacked, tmp_path):
    root = unpacked("switch")
    live = load_sysfs(root)
    assert {str(fn.address): fn.caps.dsn for fn in live if present(fn.caps.dsn)} == SWITCH_DSN

    out = tmp_path / "zeroed.tar.gz"
    report = capture(root, out)
    assert report.serials_zeroed == 2 and not report.include_serials
    t = load_snapshot(out)
    assert {str(fn.address): fn.caps.dsn for fn in t if present(fn.caps.dsn)} == {a: ZERO_SERIAL for a in SWITCH_DSN}
    assert any("serial numbers of 2 devices were zeroed" in w for w in t.source.warnings)
    # Everything else is unchanged.
    assert without_serials(t.functions) == without_serials(live.functions)
    # In the stored config the capability header stays and only the 8 serial bytes are zero.
    original = (root / SWITCH_CONFIG).read_bytes()
    stored = member_bytes(out, SWITCH_CONFIG)
    off = find_ext_cap(original, ECAP_DSN)
    assert off is not None and find_ext_cap(stored, ECAP_DSN) == off
    assert stored[off + 4 : off + 12] == bytes(8) and original[off + 4 : off + 12] != bytes(8)
    assert stored[: off + 4] == original[: off + 4] and stored[off + 12 :] == original[off + 12 :]
    assert "serial numbers of 2 devices zeroed" in report.summary()


def test_switch_serials_kept_on_request(unpacked, tmp_path):
    root = unpacked("switch")
    out = tmp_path / "kept.tar.gz"
    report = capture(root, out, include_serials=True)
    assert report.serials_zeroed == 0 and report.include_serials
    t = load_snapshot(out)
    live = load_sysfs(root)
    assert t.functions == live.functions
    assert t.host_bridges == live.host_bridges
    assert not any("serial" in w for w in t.source.warnings)
    assert member_bytes(out, SWITCH_CONFIG) == (root / SWITCH_CONFIG).read_bytes()


def test_partial_config_is_stored_and_reported(unpacked, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(unpacked("switch"), root, symlinks=True)
    cfg = root / SWITCH_CONFIG
    cfg.write_bytes(cfg.read_bytes()[:64])  # what a non-root read of sysfs config gives
    out = tmp_path / "partial.tar.gz"
    report = capture(root, out)
    assert report.partial_config == 1 and report.partial_config_devices == ["0000:03:00.0"]
    assert "partly readable" in report.summary()
    t = load_snapshot(out)
    fn = t[Address.parse("0000:03:00.0")]
    assert fn.config_size == 64 and fn.caps.acs is None and fn.caps.dsn is None
    assert without_serials(t.functions) == without_serials(load_sysfs(root).functions)
    assert any("only partly readable" in w for w in t.source.warnings)


def test_capture_keeps_vmd_domains(unpacked, tmp_path):
    """A VMD endpoint's nested root bus (sys/devices/.../0000:00:0e.0/pci10000:e0/...) and its
    ``domain`` link (drivers/pci/controller/vmd.c links it to the domain's pci_bus device)."""
    root = tmp_path / "root"
    shutil.copytree(unpacked("base"), root, symlinks=True)
    top = root / "sys/devices/pci0000:00"
    vmd = top / "0000:00:0e.0"
    shutil.copytree(top / "0000:00:1f.2", vmd, symlinks=True)
    (vmd / "domain").symlink_to("pci10000:e0/pci_bus/10000:e0")
    nested = vmd / "pci10000:e0" / "10000:e0:17.0"
    shutil.copytree(top / "0000:00:1f.2", nested, symlinks=True)
    (nested / "iommu_group").unlink()
    (nested / "iommu_group").symlink_to("../../../../../kernel/iommu_groups/2")
    bus = root / "sys/bus/pci/devices"
    (bus / "0000:00:0e.0").symlink_to("../../../devices/pci0000:00/0000:00:0e.0")
    (bus / "10000:e0:17.0").symlink_to("../../../devices/pci0000:00/0000:00:0e.0/pci10000:e0/10000:e0:17.0")

    out = tmp_path / "vmd.tar.gz"
    report = capture(root, out, include_serials=True)
    assert report.skipped == []
    with tarfile.open(out) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert members["./sys/devices/pci0000:00/0000:00:0e.0/pci10000:e0"].isdir()
    assert members["./sys/devices/pci0000:00/0000:00:0e.0/domain"].linkname == "pci10000:e0/pci_bus/10000:e0"
    assert members["./sys/devices/pci0000:00/0000:00:0e.0/pci10000:e0/10000:e0:17.0/config"].isreg()
    expected = load_sysfs(root)
    t = load_snapshot(out)
    assert Address.parse("10000:e0:17.0") in t.functions
    assert t.functions == expected.functions
    assert t.host_bridges == expected.host_bridges
    assert (0x10000, 0xE0) in {(h.domain, h.root_bus) for h in t.host_bridges}
    # The loader follows the domain link to the VMD domain and hangs the domain under it.
    assert t[Address.parse("0000:00:0e.0")].vmd_domain == 0x10000
    assert t.vmd_domains == {0x10000: Address.parse("0000:00:0e.0")}
    vmd_hb = t.host_bridge(0x10000, 0xE0)
    assert vmd_hb.vmd_owner == Address.parse("0000:00:0e.0")
    assert t[Address.parse("10000:e0:17.0")].parent is None


def test_capture_never_follows_links_out_of_root(unpacked, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(unpacked("base"), root, symlinks=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-OUTSIDE-ROOT\n")
    outside_dev = tmp_path / "outside-device"
    outside_dev.mkdir()
    (outside_dev / "vendor").write_text("SECRET-OUTSIDE-ROOT\n")
    devdir = root / "sys/devices/pci0000:00/0000:00:00.0"
    (devdir / "revision").unlink()
    (devdir / "revision").symlink_to(secret)  # a device file that is a link out of root
    (devdir / "numa_node").unlink()
    os.mkfifo(devdir / "numa_node")  # must not block the capture
    bus = root / "sys/bus/pci/devices"
    (bus / "0000:00:09.0").symlink_to("../../../../../outside-device")
    (bus / "0000:00:0a.0").symlink_to(outside_dev)  # absolute: read as root-relative, missing
    before = tree_state(root)

    out = tmp_path / "snap.tar.gz"
    report = capture(root, out)
    skipped = dict(report.skipped)
    assert skipped["sys/devices/pci0000:00/0000:00:00.0/revision"] == "is a symlink"
    assert skipped["sys/devices/pci0000:00/0000:00:00.0/numa_node"] == "not a regular file"
    assert "sys/bus/pci/devices/0000:00:09.0" in skipped and "sys/bus/pci/devices/0000:00:0a.0" in skipped
    with gzip.open(out) as f:
        assert b"SECRET" not in f.read()
    assert tree_state(root) == before, "capture wrote below its root"
    t = load_snapshot(out)
    assert {str(a) for a in t.functions} == summary_devices("base")


def test_capture_of_a_root_without_pci_writes_nothing(tmp_path):
    out = tmp_path / "out" / "snap.tar.gz"
    out.parent.mkdir()
    with pytest.raises(SourceError, match="no PCI device list"):
        capture(tmp_path / "empty-root", out)
    assert list(out.parent.iterdir()) == []


# ---- 3. this machine ----------------------------------------------------------------------


@pytest.mark.skipif(not has_pci("/"), reason="this machine shows no PCI devices under /sys")
def test_capture_of_this_machine(tmp_path):
    before = load_sysfs("/")
    out = tmp_path / "this-machine.tar.gz"
    report = capture("/", out)
    after = load_sysfs("/")
    t = load_snapshot(out)
    assert {str(a) for a in t.functions} == set(n for n in os.listdir("/sys/bus/pci/devices"))
    assert report.devices == len(t.functions)
    got = without_serials(t.functions)
    # A device may change between two reads (link retraining); it must match one of them.
    assert got in (without_serials(before.functions), without_serials(after.functions))
    assert t.source.kernel_release == os.uname().release
    uname = member_bytes(out, "meta/uname.txt").decode().split()
    assert uname[0] == os.uname().sysname and uname[2] == os.uname().release


# ---- 4. hostile archives ------------------------------------------------------------------


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], *, gz: bool = True) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w") as tf:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x\n") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    return ti, None


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, target
    return ti, None


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.devmajor, ti.devminor = kind, 1, 3
    return ti, None


_PCI = [_dir("./sys"), _dir("./sys/bus/pci/devices")]


def _hostile_cases(tmp_path: Path) -> dict[str, tuple[list, str, str]]:
    """name -> (members, offending member as named in the message, words of the message)."""
    return {
        "absolute": (_PCI + [_file(str(tmp_path / "abs-sentinel"))], str(tmp_path / "abs-sentinel"), "absolute path"),
        "dotdot": (_PCI + [_file("../escape")], "../escape", "'..'"),
        "dotdot-inner": (_PCI + [_file("./sys/../../../escape")], "./sys/../../../escape", "'..'"),
        "symlink-etc-passwd": (_PCI + [_link("./sys/passwd", "/etc/passwd")], "./sys/passwd", "absolute path"),
        "symlink-dotdot": (
            _PCI + [_link("./sys/evil", "../../../../target"), _file("./sys/evil/pwned")],
            "./sys/evil:",
            "leaves the archive",
        ),
        # A link that stays inside still may not carry other members below it.
        "below-symlink": (
            _PCI + [_dir("./meta"), _link("./sys/inner", "../meta"), _file("./sys/inner/x")],
            "./sys/inner/x",
            "lies below sys/inner, which is a symlink",
        ),
        "below-file": (_PCI + [_file("./sys/f"), _file("./sys/f/x")], "./sys/f/x", "which is a file"),
        # Each link alone stays inside by string arithmetic; together they lead out.
        "symlink-chain": (
            _PCI
            + [_dir("./a/b/c"), _link("./a/b/c/up", "../../.."), _link("./a/b/c/x", "up/../../../target")],
            "./a/b/c/x",
            "leaves the archive",
        ),
        "symlink-loop": (_PCI + [_link("./sys/a", "b"), _link("./sys/b", "a")], "./sys/a", "loops"),
        "hardlink-outside": (_PCI + [_link("./sys/hl", "../../../../sentinel.txt", tarfile.LNKTYPE)], "./sys/hl", "hard link"),
        "hardlink-absolute": (_PCI + [_link("./sys/hl", str(tmp_path / "sentinel.txt"), tarfile.LNKTYPE)], "./sys/hl", "absolute"),
        "hardlink-nonmember": (_PCI + [_link("./sys/hl", "./sys/nothing", tarfile.LNKTYPE)], "./sys/hl", "not an earlier regular file"),
        "char-device": (_PCI + [_special("./sys/null", tarfile.CHRTYPE)], "./sys/null", "character device"),
        "block-device": (_PCI + [_special("./sys/sda", tarfile.BLKTYPE)], "./sys/sda", "block device"),
        "fifo": (_PCI + [_special("./sys/fifo", tarfile.FIFOTYPE)], "./sys/fifo", "FIFO"),
        "file-then-link": (_PCI + [_file("./sys/x"), _link("./sys/x", "../..")], "./sys/x", "appears twice"),
    }


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """load_snapshot's private directory is made at tmp_path/unpack/deep/...; a naive unpacker
    writing through the hostile members would land in tmp_path, where tree_state sees it."""
    deep = tmp_path / "unpack" / "deep"
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    (tmp_path / "target").mkdir()
    (tmp_path / "sentinel.txt").write_text("untouched\n")
    return tmp_path


def _assert_refused(archive: Path, root: Path, *words: str) -> SourceError:
    before = tree_state(root)
    with pytest.raises(SourceError) as info:
        load_snapshot(archive)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{archive}: "), msg
    for w in words:
        assert w in msg, msg
    assert tree_state(root) == before, "something was written outside the private directory"
    assert list((root / "unpack" / "deep").iterdir()) == [], "private directory not removed"
    return info.value


@pytest.mark.parametrize(
    "case",
    [
        "absolute", "dotdot", "dotdot-inner", "symlink-etc-passwd", "symlink-dotdot", "below-symlink", "below-file",
        "symlink-chain", "symlink-loop", "hardlink-outside", "hardlink-absolute", "hardlink-nonmember", "char-device",
        "block-device", "fifo", "file-then-link",
    ],
)
def test_hostile_archive_refused(case, sandbox):
    members, offender, words = _hostile_cases(sandbox)[case]
    archive = _tar(sandbox / f"{case}.tar.gz", members)
    _assert_refused(archive, sandbox, "refused", offender, words)


def test_hostile_members_after_a_valid_capture_are_refused(sandbox):
    # A real capture with one bad member appended: nothing of it is unpacked either.
    with tarfile.open(QEMU / "base.tar.gz") as src:
        members = [(m, src.extractfile(m).read() if m.isreg() else None) for m in src.getmembers()]
    members.append(_file("./sys/../../escape"))
    archive = _tar(sandbox / "appended.tar.gz", members)
    _assert_refused(archive, sandbox, "./sys/../../escape")


def test_not_gzip_not_tar(sandbox):
    text = sandbox / "notes.tar.gz"
    text.write_text("this is not an archive\n" * 100)
    _assert_refused(text, sandbox, "not a snapshot")
    gz_text = sandbox / "text.gz"
    gz_text.write_bytes(gzip.compress(b"hello\n" * 1000))
    _assert_refused(gz_text, sandbox, "not a gzip-compressed tar")
    empty = sandbox / "empty.tar.gz"
    empty.write_bytes(b"")
    _assert_refused(empty, sandbox, "not a snapshot")
    _assert_refused(sandbox / "missing.tar.gz", sandbox, "cannot read")


@pytest.mark.parametrize("cut", ["half", "trailer"])
def test_truncated_gzip(cut, sandbox):
    data = (QEMU / "switch.tar.gz").read_bytes()
    archive = sandbox / f"truncated-{cut}.tar.gz"
    archive.write_bytes(data[: len(data) // 2] if cut == "half" else data[:-4])
    _assert_refused(archive, sandbox, "truncated")


def test_corrupt_gzip(sandbox):
    data = bytearray((QEMU / "switch.tar.gz").read_bytes())
    for i in range(200, 400):
        data[i] ^= 0x5A
    archive = sandbox / "corrupt.tar.gz"
    archive.write_bytes(bytes(data))
    _assert_refused(archive, sandbox)


def test_truncated_plain_tar(sandbox):
    with gzip.open(QEMU / "switch.tar.gz") as f:
        raw = f.read()
    archive = sandbox / "cut.tar"
    archive.write_bytes(raw[: len(raw) // 3])
    _assert_refused(archive, sandbox, "truncated")


def test_size_and_count_limits(sandbox, monkeypatch):
    monkeypatch.setattr(snap, "MAX_TOTAL_SIZE", 10_000)
    # (Files the loader reads: the others are never unpacked, and so never count.)
    big = _tar(sandbox / "big.tar.gz", _PCI + [_file("./sys/a/resource", bytes(6000)), _file("./sys/b/resource", bytes(6000))])
    _assert_refused(big, sandbox, "more than 10000 bytes", "./sys/b/resource")
    # Hard links count again: they are the classic way to multiply a size.
    hl = _tar(
        sandbox / "hardlinks.tar.gz",
        _PCI + [_file("./sys/a/resource", bytes(6000)), _link("./sys/b/resource", "./sys/a/resource", tarfile.LNKTYPE)],
    )
    _assert_refused(hl, sandbox, "more than 10000 bytes")
    monkeypatch.setattr(snap, "MAX_MEMBERS", 10)
    many = _tar(sandbox / "many.tar.gz", _PCI + [_file(f"./sys/f{i}") for i in range(20)])
    _assert_refused(many, sandbox, "more than 10 members")


def test_decompression_and_header_limits(sandbox, monkeypatch):
    # A gzip bomb: a small file that unpacks to far more than the stream limit.
    monkeypatch.setattr(snap, "MAX_STREAM", 64 * 1024)
    bomb = sandbox / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tf:
        ti = tarfile.TarInfo("./sys/zeros")
        ti.size = 1024 * 1024
        tf.addfile(ti, io.BytesIO(bytes(ti.size)))
    assert bomb.stat().st_size < 10_000
    _assert_refused(bomb, sandbox, "refused", "more than 65536 bytes")
    monkeypatch.setattr(snap, "MAX_STREAM", 1024 * 1024 * 1024)
    # An oversized pax header (a long name) is refused before it is read into memory.
    monkeypatch.setattr(snap, "MAX_RECORD", 4096)
    long_name = _tar(sandbox / "longname.tar.gz", _PCI + [_file("./sys/" + "n" * 200 + "/" + "m" * 8000)])
    _assert_refused(long_name, sandbox, "refused", "header or record")


def test_valid_tar_that_is_not_a_snapshot(sandbox):
    archive = _tar(sandbox / "other.tar.gz", [_dir("./docs"), _file("./docs/readme.txt")])
    _assert_refused(archive, sandbox, "no sys/bus/pci/devices")


def test_links_inside_the_archive_are_fine(sandbox):
    # Symlinks and hard links that stay inside are legitimate and loaded.
    with tarfile.open(QEMU / "base.tar.gz") as src:
        members = [(m, src.extractfile(m).read() if m.isreg() else None) for m in src.getmembers()]
    members += [_link("./meta/uname-copy.txt", "./meta/uname.txt", tarfile.LNKTYPE), _link("./meta/up", "../sys/bus")]
    archive = _tar(sandbox / "ok.tar.gz", members)
    before = tree_state(sandbox)
    assert {str(a) for a in load_snapshot(archive).functions} == summary_devices("base")
    assert tree_state(sandbox) == before
    assert list((sandbox / "unpack" / "deep").iterdir()) == []


# ---- 5. writing the archive ---------------------------------------------------------------


def _tmp_leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_capture_refuses_to_overwrite(unpacked, tmp_path):
    root = unpacked("base")
    out = tmp_path / "snap.tar.gz"
    out.write_bytes(b"precious")
    with pytest.raises(SnapshotExists) as info:
        capture(root, out)
    assert isinstance(info.value, FileExistsError)
    assert str(info.value) == f"{out}: already exists (use --force to replace it)"
    assert out.read_bytes() == b"precious"
    assert _tmp_leftovers(tmp_path) == []
    # A dangling symlink at the output name counts as existing too.
    dangling = tmp_path / "dangling.tar.gz"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(SnapshotExists):
        capture(root, dangling)
    assert not (tmp_path / "nowhere").exists()


def test_capture_overwrite_replaces_atomically(unpacked, tmp_path):
    root = unpacked("base")
    out = tmp_path / "snap.tar.gz"
    out.write_bytes(b"old")
    keep = tmp_path / "old-link"
    os.link(out, keep)  # a second name for the old file: replace, never rewrite in place
    report = capture(root, out, overwrite=True)
    assert keep.read_bytes() == b"old"
    assert not out.samefile(keep)
    assert report.archive_bytes == out.stat().st_size
    assert {str(a) for a in load_snapshot(out).functions} == summary_devices("base")
    assert _tmp_leftovers(tmp_path) == []


def test_capture_failure_leaves_old_file_and_no_temp(unpacked, tmp_path, monkeypatch):
    out = tmp_path / "snap.tar.gz"
    out.write_bytes(b"old")

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snap, "_write_tar", boom)
    with pytest.raises(OSError, match="No space left"):
        capture(unpacked("base"), out, overwrite=True)
    assert out.read_bytes() == b"old"
    assert _tmp_leftovers(tmp_path) == []


def test_capture_new_file_and_report(unpacked, tmp_path):
    out = tmp_path / "new.tar.gz"
    report = capture(unpacked("switch"), out)
    assert out.is_file() and is_snapshot(out)
    assert report.path == out and report.devices == 11 and report.links > 0 and report.files > 0
    assert report.summary().startswith("11 devices")
    assert _tmp_leftovers(tmp_path) == []
