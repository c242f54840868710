"""Snapshots: a machine's PCI sysfs tree in one ``.tar.gz``, and loading one back safely.

Layout (the same as the real-kernel captures in ``tests/fixtures/qemu``), every member
below ``./``::

    sys/bus/pci/devices/<BDF>        links, with their original relative targets
    sys/devices/pci<dom>:<bus>/...   the device directories (VMD's nested pci<dom>:<bus> too),
                                     each with the files in sysfs.DEVICE_FILES that exist and
                                     the links in sysfs.DEVICE_LINKS and ``virtfn*``
    sys/bus/pci/slots/<name>/address
    sys/kernel/iommu_groups/<n>/type and devices/<BDF> links (and <uuid> links of mdevs)
    sys/class/mdev_bus/<parent>, <parent>/mdev_supported_types/<type>/{name,description,
    device_api,available_instances,devices/}, <parent>/<uuid>/ links, sys/bus/mdev/devices,
    sys/class/iommu/<unit> and its intel-iommu/ecap     (mediated devices: sources/mdev.py)
    sys/bus/pci/slots/<name>/module  the slot's hotplug driver (a link; Linux 6.1 has it)
    sys/bus/pci_express/devices/*    PCIe port service devices and their ``driver`` links
                                     (Linux 6.12: a port bound to pciehp has native hotplug)
    sys/class/iommu/<unit>           the IOMMU units (links)
    proc/iomem, proc/ioports, proc/cmdline, proc/version, proc/sys/kernel/osrelease
    sys/class/dmi/id/bios_*          the firmware's vendor, version and date (the ``id`` link
                                     and the DMI device directory it leads to)
    meta/uname.txt                   "Linux HOST RELEASE VERSION MACHINE"
    meta/capture.json                what this capture left out (serials, partial reads)
    dmesg.txt                        the kernel log as far as it is readable (/dev/kmsg;
                                     empty or left out when dmesg is restricted)

That is exactly what :mod:`explorer.sources.sysfs` reads; nothing else of ``/sys`` is
stored. ``driver`` links keep their target ``../../bus/pci/drivers/NAME``, which is not in
the archive: the loader only reads a link's last component.

**Serial numbers.** Unless ``include_serials`` is given, the 8 serial-number bytes of every
Device Serial Number extended capability (``ECAP_DSN``, bytes cap+4..cap+12) are zeroed in
the stored ``config`` copy. The capability header stays, so a loaded snapshot still shows
that the device *has* a DSN, reading ``00-00-00-00-00-00-00-00``; ``load_snapshot`` adds a
warning saying so.

**Non-root capture.** The kernel gives non-root readers only the first 64 bytes of
``config`` (128 for CardBus). The snapshot stores what was read; capabilities then load as
unknown, and :class:`CaptureReport` counts such devices in ``partial_config``.

**Loading.** :func:`load_snapshot` checks every member before anything is written
(no absolute names, no ``..``, no member below a symlink, symlinks whose targets, resolved
through the archive's own links, stay inside it, hard links only to earlier regular members,
no devices, FIFOs or sparse files, limits on size and member count), then unpacks into a
private temporary directory with its own code (never ``tarfile.extractall``), reads it with
``load_sysfs`` and removes it. A bad archive gives a one-line :class:`SourceError` naming
the archive and the member.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Callable

from ..model import Topology, is_address
from .config import ECAP_DSN
from .errors import SourceError
from ..fileio import OutputExists, commit, umask
from .sysfs import ATTR_CAP, CONFIG_CAP, DEVICE_FILES, DEVICE_LINKS, DMI_DIR, DMI_FILES, FILE_CAPS, THUNDERBOLT_FILES, load_sysfs

__all__ = [
    "CaptureReport",
    "SnapshotExists",
    "capture",
    "load_snapshot",
    "zero_serials",
    "is_snapshot",
    "MAX_TOTAL_SIZE",
    "MAX_MEMBERS",
]

#: Refuse archives whose regular files (hard links counted again) add up to more than this.
MAX_TOTAL_SIZE = 128 * 1024 * 1024
#: Refuse archives with more members than this (a capture holds some 30 a function: this
#: is some 4,000 functions, more than the largest real machines have).
MAX_MEMBERS = 1 << 17
#: Refuse archives whose uncompressed tar stream is longer than this (headers included).
MAX_STREAM = 768 * 1024 * 1024
#: Largest single read from the tar stream (a pax or GNU long-name header, a data chunk).
MAX_RECORD = 16 * 1024 * 1024
#: Largest file read from the tree when capturing (sysfs attributes are one page).
MAX_FILE = 16 * 1024 * 1024
#: Symlink expansions allowed while resolving one path (the kernel's MAXSYMLINKS).
MAX_HOPS = 40

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1024 * 1024
_HOSTBRIDGE_RE = re.compile(r"^pci[0-9a-f]{4,8}:[0-9a-f]{2}$")
_ROOT_BUS_MARK = "root bus resource [bus "
_PROC_FILES = ("proc/iomem", "proc/ioports", "proc/cmdline", "proc/version", "proc/sys/kernel/osrelease")
_CAPTURE_META = "meta/capture.json"


class SnapshotExists(FileExistsError):
    """The output archive exists and ``overwrite`` was not given."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(errno.EEXIST, "already exists (use --force to replace it)", str(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


@dataclass
class CaptureReport:
    """What :func:`capture` wrote and what it could not read."""

    path: Path
    devices: int = 0
    files: int = 0
    links: int = 0
    dirs: int = 0
    #: Bytes of file content stored (uncompressed) and the archive's size on disk.
    content_bytes: int = 0
    archive_bytes: int = 0
    include_serials: bool = False
    #: Devices whose DSN serial number was zeroed (0 with ``include_serials``).
    serials_zeroed: int = 0
    #: Devices whose config space was only partly readable (not run as root).
    partial_config: int = 0
    partial_config_devices: list[str] = field(default_factory=list)
    #: (root-relative path, reason) for everything that could not be stored.
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.devices} devices, {self.files} files, {self.links} links, {self.archive_bytes} bytes"]
        if self.include_serials:
            parts.append("serial numbers kept")
        elif self.serials_zeroed:
            parts.append(f"serial numbers of {self.serials_zeroed} devices zeroed")
        if self.partial_config:
            parts.append(f"config space of {self.partial_config} devices only partly readable (run as root for all of it)")
        if self.skipped:
            shown = "; ".join(f"{p} ({why})" for p, why in self.skipped[:3])
            more = f"; {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            parts.append(f"{len(self.skipped)} skipped: {shown}{more}")
        return "; ".join(parts)


# ---- path resolution shared by capture and load ------------------------------------------


class _Unresolvable(Exception):
    """A path that leaves the root, or loops."""


def _resolve(
    path: str,
    readlink: Callable[[str], str | None],
    *,
    absolute_from_root: bool,
) -> str:
    """Expand every symlink in root-relative ``path``, one component at a time.

    ``readlink(rel)`` gives a link's target or None for a non-link. Returns the
    root-relative result. Raises _Unresolvable when the path leaves the root, meets an
    absolute target (unless ``absolute_from_root``: then it restarts at the root, as the
    sysfs loader does) or expands more than MAX_HOPS links. Missing components count as
    plain names, so ``..`` after one is applied lexically (stricter than the kernel).
    """
    pending = list(reversed(path.split("/")))
    done: list[str] = []
    hops = 0
    while pending:
        comp = pending.pop()
        if comp in ("", "."):
            continue
        if comp == "..":
            if not done:
                raise _Unresolvable("leaves the archive")
            done.pop()
            continue
        done.append(comp)
        target = readlink("/".join(done))
        if target is None:
            continue
        hops += 1
        if hops > MAX_HOPS:
            raise _Unresolvable(f"loops (more than {MAX_HOPS} links)")
        if target == "":
            raise _Unresolvable("passes through a link with an empty target")
        done.pop()
        if target.startswith("/"):
            if not absolute_from_root:
                raise _Unresolvable("passes through a link to an absolute path")
            done = []
        pending.extend(reversed(target.split("/")))
    return "/".join(done)


# ---- capture ------------------------------------------------------------------------------


def _dsn_offsets(data: bytes | bytearray) -> list[int]:
    """Offsets of every DSN extended capability (the walk of config.find_ext_cap)."""
    out = []
    off = 0x100
    seen: set[int] = set()
    while off and off not in seen and 0x100 <= off < 0x1000 and off + 4 <= len(data):
        seen.add(off)
        hdr = int.from_bytes(data[off : off + 4], "little")
        if hdr in (0, 0xFFFFFFFF):
            break
        if hdr & 0xFFFF == ECAP_DSN:
            out.append(off)
        off = (hdr >> 20) & 0xFFC
    return out


def zero_serials(data: bytes) -> tuple[bytes, int]:
    """``data`` (config space) with every DSN serial zeroed; and how many were zeroed."""
    offsets = _dsn_offsets(data)
    if not offsets:
        return data, 0
    buf = bytearray(data)
    for off in offsets:
        end = min(off + 12, len(buf))
        buf[off + 4 : end] = bytes(max(0, end - (off + 4)))
    return bytes(buf), len(offsets)


class _Tree:
    """Read-only access to the tree under ``root``, never through a link leaving it."""

    def __init__(self, root: str | Path, report: CaptureReport) -> None:
        self.root = os.path.realpath(str(root))
        self.report = report
        self._dir_ok: dict[str, bool] = {}

    def abs(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def skip(self, rel: str, why: str) -> None:
        self.report.skipped.append((rel, why))

    def plain(self, rel: str) -> bool:
        """True when no component of ``rel`` is a symlink (so opening it stays in root)."""
        if not rel:
            return True
        ok = self._dir_ok.get(rel)
        if ok is None:
            ok = os.path.realpath(self.abs(rel)) == os.path.normpath(self.abs(rel))
            self._dir_ok[rel] = ok
        return ok

    def is_dir(self, rel: str) -> bool:
        if not self.plain(rel):
            return False
        try:
            return stat.S_ISDIR(os.lstat(self.abs(rel)).st_mode)
        except OSError:
            return False

    def listdir(self, rel: str) -> list[str] | None:
        if not self.is_dir(rel):
            return None
        try:
            return sorted(os.listdir(self.abs(rel)))
        except OSError as e:
            self.skip(rel, e.strerror or str(e))
            return None

    def readlink(self, rel: str) -> str | None:
        if not self.plain(posixpath.dirname(rel)):
            return None
        try:
            return os.readlink(self.abs(rel))
        except OSError:
            return None

    def resolve(self, rel: str) -> str | None:
        try:
            return _resolve(rel, self.readlink, absolute_from_root=True)
        except _Unresolvable:
            return None

    def read(self, rel: str) -> tuple[bytes, int] | None:
        """(content, st_size) of a regular file; None if missing or unreadable (reported)."""
        if not self.plain(posixpath.dirname(rel)):
            self.skip(rel, "reached through a link")
            return None
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.abs(rel), flags)
        except FileNotFoundError:
            return None
        except OSError as e:
            self.skip(rel, "is a symlink" if e.errno == errno.ELOOP else (e.strerror or str(e)))
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self.skip(rel, "not a regular file")
                return None
            chunks = []
            total = 0
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                total += len(b)
                if total > MAX_FILE:
                    self.skip(rel, f"larger than {MAX_FILE} bytes")
                    return None
                chunks.append(b)
            return b"".join(chunks), st.st_size
        except OSError as e:
            self.skip(rel, e.strerror or str(e))
            return None
        finally:
            os.close(fd)


class _Collector:
    """The members of a capture: directories, files and links, by root-relative path."""

    def __init__(self, tree: _Tree, include_serials: bool) -> None:
        self.tree = tree
        self.report = tree.report
        self.include_serials = include_serials
        self.dirs: set[str] = set()
        self.files: dict[str, bytes] = {}
        self.links: dict[str, str] = {}

    def add_dir(self, rel: str) -> None:
        while rel and rel not in self.dirs:
            self.dirs.add(rel)
            rel = posixpath.dirname(rel)

    def add_file(self, rel: str, data: bytes) -> None:
        self.add_dir(posixpath.dirname(rel))
        self.files[rel] = data

    def copy_file(self, rel: str) -> bytes | None:
        got = self.tree.read(rel)
        if got is None:
            return None
        self.add_file(rel, got[0])
        return got[0]

    def copy_link(self, rel: str) -> bool:
        target = self.tree.readlink(rel)
        if target is None:
            return False
        if target.startswith("/"):
            # The loader reads absolute targets as root-relative: store the same place, relative.
            dest = posixpath.normpath(target.lstrip("/")) if target.strip("/") else "."
            target = posixpath.relpath(dest, posixpath.dirname(rel) or ".")
        self.add_dir(posixpath.dirname(rel))
        self.links[rel] = target
        return True

    def device(self, name: str) -> None:
        link = f"sys/bus/pci/devices/{name}"
        rel = self.tree.resolve(link)
        if rel is None or not self.tree.is_dir(rel):
            self.tree.skip(link, "link leads nowhere inside the tree")
            return
        if not self.copy_link(link):
            self.tree.skip(link, "not a link")
            return
        self.report.devices += 1
        self.add_dir(rel)
        entries = self.tree.listdir(rel) or []
        present = set(entries)
        for f in DEVICE_FILES:
            if f not in present:
                continue
            if f == "config":
                self._config(name, f"{rel}/config")
            else:
                self.copy_file(f"{rel}/{f}")
        for f in entries:
            if f in DEVICE_LINKS or (f.startswith("virtfn") and f[6:].isdigit()):
                self.copy_link(f"{rel}/{f}")

    def _config(self, name: str, rel: str) -> None:
        got = self.tree.read(rel)
        if got is None:
            return
        data, size = got
        # sysfs config is 256 or 4096 bytes; a non-root read stops at 64 (CardBus: 128).
        if len(data) < max(size, 256):
            self.report.partial_config += 1
            self.report.partial_config_devices.append(name)
        if not self.include_serials:
            data, n = zero_serials(data)
            if n:
                self.report.serials_zeroed += 1
        self.add_file(rel, data)

    def collect(self, live: bool) -> None:
        t = self.tree
        names = t.listdir("sys/bus/pci/devices")
        if names is None:
            raise SourceError("no PCI device list here (sys/bus/pci/devices)", path=t.abs("sys/bus/pci/devices"))
        self.add_dir("sys/bus/pci/devices")
        for name in names:
            if is_address(name):
                self.device(name)
        # Host bridges are also named by their directories, with or without functions below.
        for name in t.listdir("sys/devices") or []:
            if _HOSTBRIDGE_RE.match(name) and t.is_dir(f"sys/devices/{name}"):
                self.add_dir(f"sys/devices/{name}")
        slots = t.listdir("sys/bus/pci/slots")
        if slots is not None:
            self.add_dir("sys/bus/pci/slots")
            for s in slots:
                if t.is_dir(f"sys/bus/pci/slots/{s}"):
                    self.copy_file(f"sys/bus/pci/slots/{s}/address")
                    # Linux 6.1: which hotplug driver registered the slot
                    self.copy_link(f"sys/bus/pci/slots/{s}/module")
        self._port_services_and_iommus()
        groups = t.listdir("sys/kernel/iommu_groups")
        if groups is not None:
            self.add_dir("sys/kernel/iommu_groups")
            for g in groups:
                gdir = f"sys/kernel/iommu_groups/{g}"
                if not t.is_dir(gdir):
                    continue
                self.add_dir(gdir)
                self.copy_file(f"{gdir}/type")
                members = t.listdir(f"{gdir}/devices")
                if members is not None:
                    self.add_dir(f"{gdir}/devices")
                    for m in members:
                        self.copy_link(f"{gdir}/devices/{m}")
        self._thunderbolt()
        from .mdev import capture_mdev

        self.mdev_known = capture_mdev(self, live)  # mediated devices (sources/mdev.py)
        for rel in _PROC_FILES:
            self.copy_file(rel)
        self._dmi()
        if live:
            u = os.uname()
            self.add_file("meta/uname.txt", f"{u.sysname} {u.nodename} {u.release} {u.version} {u.machine}\n".encode())
            lines = self._kmsg_root_bus_lines(everything=True)
        else:
            self.copy_file("meta/uname.txt")
            got = t.read("dmesg.txt")
            text = got[0].decode("utf-8", "replace") if got else ""
            lines = text.splitlines()
        if lines:
            self.add_file("dmesg.txt", ("\n".join(lines) + "\n").encode())
        self._drop_escaping_links()

    def _thunderbolt(self) -> None:
        """``sys/bus/thunderbolt/devices``: each entry's link and the files sysfs.read_thunderbolt reads."""
        from .sysfs import THUNDERBOLT_FILES

        t = self.tree
        base = "sys/bus/thunderbolt/devices"
        names = t.listdir(base)
        if names is None:
            return
        self.add_dir(base)
        for name in names:
            link = f"{base}/{name}"
            rel = t.resolve(link)
            if rel is None or not t.is_dir(rel) or not self.copy_link(link):
                continue
            self.add_dir(rel)
            for f in THUNDERBOLT_FILES:
                self.copy_file(f"{rel}/{f}")

    def _dmi(self) -> None:
        """The DMI BIOS facts: ``sys/class/dmi/id`` is a link to the DMI device's directory
        on a live system; store the link and the few files read through it."""
        t = self.tree
        d = t.resolve(DMI_DIR)
        if d is None or not t.is_dir(d):
            return
        if d != DMI_DIR and not self.copy_link(DMI_DIR):
            return
        for name in DMI_FILES:
            self.copy_file(f"{d}/{name}")


    def _port_services_and_iommus(self) -> None:
        """Linux 6.12's slot drivers (PCIe port service devices and their ``driver`` links) and
        the IOMMU units (``sys/class/iommu``): links only, as the context reader needs them."""
        t = self.tree
        services = t.listdir("sys/bus/pci_express/devices")
        if services is not None:
            self.add_dir("sys/bus/pci_express/devices")
            for s in services:
                link = f"sys/bus/pci_express/devices/{s}"
                rel = t.resolve(link)
                if rel is None or not t.is_dir(rel) or not self.copy_link(link):
                    continue
                self.add_dir(rel)
                self.copy_link(f"{rel}/driver")
        units = t.listdir("sys/class/iommu")
        if units is not None:
            self.add_dir("sys/class/iommu")
            for u in units:
                link = f"sys/class/iommu/{u}"
                if self.copy_link(link):
                    rel = t.resolve(link)
                    if rel is not None and t.is_dir(rel):
                        self.add_dir(rel)

    def _kmsg_root_bus_lines(self, everything: bool = False) -> list[str]:
        """The kernel log's root-bus lines (bus ranges of host bridges), read from /dev/kmsg;
        with ``everything``, the whole log that is readable (kept as ``dmesg.txt``)."""
        rel = "dev/kmsg"
        try:
            fd = os.open(self.tree.abs(rel), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return []
        except OSError as e:
            self.tree.skip(rel, f"kernel log not readable: {e.strerror or e}")
            return []
        lines = []
        try:
            if not stat.S_ISCHR(os.fstat(fd).st_mode):
                return []
            for _ in range(1_000_000):
                try:
                    rec = os.read(fd, 8192)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno in (errno.EPIPE, errno.EINVAL):
                        continue  # overwritten while reading / one record too long
                    self.tree.skip(rel, e.strerror or str(e))
                    break
                if not rec:
                    break
                head, _, msg = rec.decode("utf-8", "replace").partition(";")
                msg = msg.split("\n", 1)[0]
                if everything or _ROOT_BUS_MARK in msg:
                    fields = head.split(",")
                    usec = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 0
                    lines.append(f"[{usec // 1_000_000:5d}.{usec % 1_000_000:06d}] {msg}")
        finally:
            os.close(fd)
        return lines

    def _drop_escaping_links(self) -> None:
        """Leave out links that load_snapshot would refuse (targets leaving the archive)."""
        while True:
            bad = {}
            for rel, target in self.links.items():
                try:
                    _resolve(f"{posixpath.dirname(rel)}/{target}", self.links.get, absolute_from_root=False)
                except _Unresolvable as e:
                    bad[rel] = str(e)
            if not bad:
                return
            for rel, why in bad.items():
                self.tree.skip(rel, f"link target {self.links.pop(rel)} {why}")


def _write_tar(fileobj: BinaryIO, col: _Collector, meta: dict[str, object]) -> None:
    mtime = int(time.time())
    files = dict(col.files)
    files[_CAPTURE_META] = (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode()
    dirs = set(col.dirs) | {"meta"}
    entries: list[tuple[tuple[str, ...], str, str]] = [((), "", "dir")]
    entries += [(tuple(d.split("/")), d, "dir") for d in dirs]
    entries += [(tuple(f.split("/")), f, "file") for f in files]
    entries += [(tuple(link.split("/")), link, "link") for link in col.links]
    entries.sort()  # a directory sorts before everything below it
    with gzip.GzipFile(filename="", mode="wb", fileobj=fileobj, mtime=mtime) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for _, rel, kind in entries:
                ti = tarfile.TarInfo("./" + rel if rel else ".")
                ti.mtime = mtime
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                if kind == "dir":
                    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                    tf.addfile(ti)
                elif kind == "link":
                    ti.type, ti.mode, ti.linkname = tarfile.SYMTYPE, 0o777, col.links[rel]
                    tf.addfile(ti)
                else:
                    data = files[rel]
                    ti.type, ti.mode, ti.size = tarfile.REGTYPE, 0o644, len(data)
                    tf.addfile(ti, io.BytesIO(data))


def capture(
    root: str | Path = "/",
    out: str | Path | None = None,
    *,
    include_serials: bool = False,
    overwrite: bool = False,
) -> CaptureReport:
    """Write the PCI sysfs tree under ``root`` to the archive ``out`` (see the module doc).

    Reads only; never writes below ``root`` and never follows a link out of it. The archive
    is written to a temporary file beside ``out`` and renamed into place; an existing
    ``out`` is left alone (SnapshotExists) unless ``overwrite``. Raises SourceError when
    ``root`` has no ``sys/bus/pci/devices``.
    """
    if out is None:
        raise TypeError("capture() needs out, the archive to write")
    out_path = Path(out)
    if not overwrite and os.path.lexists(out_path):
        raise SnapshotExists(out_path)
    directory = out_path.parent if str(out_path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such directory", str(directory))

    report = CaptureReport(path=out_path, include_serials=include_serials)
    tree = _Tree(root, report)
    col = _Collector(tree, include_serials)
    col.collect(live=tree.root == "/")
    report.files = len(col.files) + 1  # + meta/capture.json
    report.links = len(col.links)
    report.dirs = len(col.dirs | {"meta"}) + 1
    report.content_bytes = sum(len(d) for d in col.files.values())
    meta: dict[str, object] = {
        "format": 1,
        "tool": "pci-explorer",
        "serial_numbers": "kept" if include_serials else "zeroed",
        "serials_zeroed": report.serials_zeroed,
        "partial_config": report.partial_config_devices,
        "skipped": [f"{p}: {why}" for p, why in report.skipped],
        # Mediated devices were captured from a tree that shows them: none in the archive
        # then means none on the machine.
        "mdev": bool(getattr(col, "mdev_known", False)),
    }

    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_tar(f, col, meta)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~umask())
            os.fsync(f.fileno())
            report.archive_bytes = os.fstat(f.fileno()).st_size
        try:
            # never over a name that appeared meanwhile, nor over a non-regular file (fileio)
            commit(tmp, Path(out_path), overwrite)
        except OutputExists:
            raise SnapshotExists(out_path) from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return report


# ---- load ---------------------------------------------------------------------------------


class _TooBig(Exception):
    pass


class _CappedReader:
    """A read/seek/tell view of the uncompressed tar stream that refuses to go past a limit."""

    def __init__(self, f: BinaryIO, limit: int) -> None:
        self._f = f
        self._limit = limit

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._f.tell()
        elif whence != 0:
            raise OSError(errno.ESPIPE, "cannot seek from the end")
        if pos > self._limit:
            raise _TooBig(f"the archive unpacks to more than {self._limit} bytes")
        return self._f.seek(pos)

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            n = MAX_RECORD
        if n > MAX_RECORD:
            raise _TooBig(f"a header or record of {n} bytes (more than {MAX_RECORD})")
        room = self._limit - self._f.tell()
        if n > room:
            data = self._f.read(max(room, 0) + 1)
            if len(data) > room:
                raise _TooBig(f"the archive unpacks to more than {self._limit} bytes")
            return data
        return self._f.read(n)


def _q(name: str) -> str:
    """A member name for a one-line message."""
    return repr(name) if any(c < " " or c == "\x7f" for c in name) or not name else name


@dataclass
class _Plan:
    members: list[tuple[tarfile.TarInfo, str]] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # rel -> dir/file/link/hardlink
    sizes: dict[str, int] = field(default_factory=dict)  # regular files
    links: dict[str, str] = field(default_factory=dict)
    hard: dict[str, str] = field(default_factory=dict)
    #: Regular files (and hard links) the loader never reads: not unpacked.
    skip: set[str] = field(default_factory=set)
    end: int = 0


def _norm_member(name: str) -> tuple[str | None, str]:
    """(root-relative name, '') or (None, why it is refused)."""
    if name.startswith("/"):
        return None, "absolute path"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, "'..' in path"
    return "/".join(parts), ""


_DEVICES_DIR = "sys/bus/pci/devices"
#: Files the loader reads outside ``sys/`` (others are never unpacked), with their caps.
_MEMBER_CAPS = {**FILE_CAPS, "proc/sys/kernel/osrelease": ATTR_CAP, "meta/uname.txt": ATTR_CAP,
                _CAPTURE_META: 16 * 1024 * 1024}


_DEVICE_FILE_SET = frozenset(DEVICE_FILES)
#: Other attribute files the readers take: Thunderbolt authorization (sysfs.THUNDERBOLT_FILES)
#: and the DMI BIOS facts (sysfs.DMI_FILES); an mdev type's files (sources/mdev.py).
_OTHER_READ_FILES = frozenset(THUNDERBOLT_FILES + DMI_FILES)
_MDEV_TYPE_FILES = frozenset(("name", "description", "device_api", "available_instances"))
#: Directories whose entries are links the readers follow (context, mdev, Thunderbolt, IOMMU
#: units), and link names read anywhere: a slot's hotplug ``module``, an mdev's ``mdev_type``.
_LINK_DIRS = frozenset((
    "sys/bus/thunderbolt/devices", "sys/bus/pci_express/devices", "sys/class/iommu",
    "sys/class/mdev_bus", "sys/bus/mdev/devices",
))
_OTHER_LINKS = frozenset(("module", "mdev_type"))
#: Members the loader never reads (not unpacked) allowed in one archive: a capture by
#: another tool may hold a few extra files; a bomb holds millions.
MAX_UNREAD = 1 << 14


_TOPS = ("sys", "proc", "meta", "dmesg.txt")


def _inner(rel: str) -> str:
    """``rel`` inside the capture: an archive may hold it below one top directory."""
    top, sep, rest = rel.partition("/")
    return rest if sep and top not in _TOPS else rel


def member_cap(rel: str) -> int | None:
    """The most bytes the loader reads of member ``rel``; None: it never reads it (not unpacked)."""
    rel = _inner(rel)
    if rel.startswith("sys/"):
        base = posixpath.basename(rel)
        if base == "config":
            return CONFIG_CAP
        if base in _DEVICE_FILE_SET or (base == "address" and rel.startswith("sys/bus/pci/slots/")) or (
            base == "type" and rel.startswith("sys/kernel/iommu_groups/")
        ) or base in _OTHER_READ_FILES or (
            base in _MDEV_TYPE_FILES and "/mdev_supported_types/" in rel
        ) or (base == "ecap" and "/intel-iommu/" in rel):
            return ATTR_CAP
        return None
    return _MEMBER_CAPS.get(rel)


def _useful_link(rel: str) -> bool:
    """A symlink the loader follows or reads."""
    rel = _inner(rel)
    parent, base = posixpath.split(rel)
    if parent == _DEVICES_DIR or parent.startswith("sys/kernel/iommu_groups/") or parent in _LINK_DIRS:
        return True
    if rel == "sys/class/dmi/id" or (parent.endswith("/devices") and "/mdev_supported_types/" in parent):
        return True
    return rel.startswith("sys/") and (base in DEVICE_LINKS or base in _OTHER_LINKS or (base.startswith("virtfn") and base[6:].isdigit()))


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _prescan(raw: BinaryIO, spath: str) -> None:
    """A fast first pass over the tar headers (no TarInfo objects, data skipped unread where
    possible): refuses too many members, and files larger than the loader reads, before the
    slow, careful pass of tarfile. ``raw`` is rewound afterwards."""
    head = raw.read(2)
    raw.seek(0)
    stream: BinaryIO = gzip.GzipFile(filename="", fileobj=raw, mode="rb") if head == GZIP_MAGIC else raw  # type: ignore[assignment]
    buf = b""
    members = 0
    long_name: str | None = None
    consumed = 0
    device_dirs: dict[str, str] = {}
    unread = 0
    dirs: set[str] = set()
    needed: set[str] = set()

    def count_unread(name: str) -> None:
        nonlocal unread
        unread += 1
        if unread > MAX_UNREAD:
            raise SourceError(f"refused: more than {MAX_UNREAD} members the loader never reads "
                              f"(at {_q(name)}): not a pci-explorer snapshot", path=spath)
    try:
        while True:
            while len(buf) < 512:
                more = stream.read(_CHUNK)
                if not more:
                    return  # truncated or ended: the careful pass says which
                buf += more
            block, buf = buf[:512], buf[512:]
            consumed += 512
            if consumed > MAX_STREAM:
                raise SourceError(f"refused: the archive unpacks to more than {MAX_STREAM} bytes", path=spath)
            if not any(block):
                break
            try:
                size = _octal(block[124:136])
            except ValueError:
                return  # not tar: the careful pass says so
            kind = block[156:157]
            data_len = (size + 511) // 512 * 512
            if kind in (b"x", b"g", b"L"):
                if size > MAX_RECORD:
                    raise SourceError(f"refused: a header or record of {size} bytes (more than {MAX_RECORD})", path=spath)
                while len(buf) < data_len:
                    more = stream.read(_CHUNK)
                    if not more:
                        return
                    buf += more
                data, buf = buf[:size], buf[data_len:]
                consumed += data_len
                if kind == b"L":
                    long_name = data.split(b"\0", 1)[0].decode("utf-8", "replace")
                elif kind == b"x":
                    for rec in data.split(b"\n"):
                        _, _, kv = rec.partition(b" ")
                        if kv.startswith(b"path="):
                            long_name = kv[5:].decode("utf-8", "replace")
                continue
            members += 1
            if members > MAX_MEMBERS:
                raise SourceError(f"refused: more than {MAX_MEMBERS} members", path=spath)
            name = long_name
            long_name = None
            if name is None:
                name = block[0:100].split(b"\0", 1)[0].decode("utf-8", "replace")
                prefix = block[345:500].split(b"\0", 1)[0] if block[257:262] == b"ustar" else b""
                if prefix:
                    name = prefix.decode("utf-8", "replace") + "/" + name
            rel, _ = _norm_member(name)
            if rel is not None:
                if kind == b"5":
                    dirs.add(rel)
                elif (kind == b"2" and _useful_link(rel)) or (kind in (b"0", b"\0", b"7", b"1") and member_cap(rel) is not None):
                    needed.add(posixpath.dirname(rel))
                else:
                    count_unread(name)
            if kind == b"2":
                if rel is not None and posixpath.dirname(_inner(rel)) == _DEVICES_DIR:
                    # Each function has its own directory: many links to one are a bomb.
                    target = block[157:257].split(b"\0", 1)[0].decode("utf-8", "replace")
                    dest = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
                    other = device_dirs.setdefault(dest, rel)
                    if other != rel:
                        raise SourceError(f"refused: members {_q(other)} and {_q(rel)} lead to the same device directory", path=spath)
            if kind in (b"0", b"\0", b"7"):
                cap = member_cap(rel) if rel is not None else None
                if cap is not None and size > cap:
                    raise SourceError(f"refused: member {_q(name)}: {size} bytes, more than the {cap} "
                                      "the loader reads of it", path=spath)
            # Skip the data.
            if data_len <= len(buf):
                buf = buf[data_len:]
            else:
                left = data_len - len(buf)
                buf = b""
                while left > 0:
                    chunk = stream.read(min(_CHUNK, left))
                    if not chunk:
                        return
                    left -= len(chunk)
            consumed += data_len
        # Directories holding nothing the loader reads count as unread members too.
        ancestors: set[str] = set()
        for d in needed:
            while d and d not in ancestors:
                ancestors.add(d)
                d = posixpath.dirname(d)
        for d in sorted(dirs - ancestors):
            count_unread(d)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile):
        return  # the careful pass reports it in one line
    finally:
        raw.seek(0)


def _check_members(tf: tarfile.TarFile, spath: str) -> _Plan:
    def refuse(member: str, why: str) -> SourceError:
        return SourceError(f"refused: member {_q(member)}: {why}", path=spath)

    plan = _Plan()
    total = 0
    for m in tf:
        if len(plan.members) >= MAX_MEMBERS:
            raise SourceError(f"refused: more than {MAX_MEMBERS} members", path=spath)
        rel, why = _norm_member(m.name)
        if rel is None:
            raise refuse(m.name, why)
        if m.issparse():
            raise refuse(m.name, "sparse file")
        if m.isdir():
            kind = "dir"
        elif m.isreg():
            kind = "file"
        elif m.issym():
            kind = "link"
        elif m.islnk():
            kind = "hardlink"
        elif m.ischr():
            raise refuse(m.name, "character device")
        elif m.isblk():
            raise refuse(m.name, "block device")
        elif m.isfifo():
            raise refuse(m.name, "FIFO")
        else:
            raise refuse(m.name, f"unsupported member type {m.type!r}")
        if rel == "":
            if kind != "dir":
                raise refuse(m.name, "the archive root is not a directory")
            continue
        prev = plan.kinds.get(rel)
        if prev is not None and not (prev == kind == "dir"):
            raise refuse(m.name, "appears twice")
        if kind == "file":
            cap = member_cap(rel)
            if cap is not None and m.size > cap:
                raise refuse(m.name, f"{m.size} bytes, more than the {cap} the loader reads of it")
            if cap is None:
                plan.skip.add(rel)  # never read: not unpacked
            else:
                total += m.size
            plan.sizes[rel] = m.size
            plan.end = max(plan.end, m.offset_data + m.size)
        elif kind == "link":
            target = m.linkname
            if not target:
                raise refuse(m.name, "symlink with an empty target")
            if target.startswith("/"):
                raise refuse(m.name, f"symlink to an absolute path ({_q(target)})")
            plan.links[rel] = target
        elif kind == "hardlink":
            src, why = _norm_member(m.linkname)
            if src is None:
                raise refuse(m.name, f"hard link to {_q(m.linkname)}: {why}")
            if plan.kinds.get(src) != "file":
                raise refuse(m.name, f"hard link to {_q(m.linkname)}, not an earlier regular file of the archive")
            cap = member_cap(rel)
            if cap is not None and plan.sizes[src] > cap:
                raise refuse(m.name, f"{plan.sizes[src]} bytes, more than the {cap} the loader reads of it")
            if cap is None or src in plan.skip:
                plan.skip.add(rel)
            else:
                total += plan.sizes[src]
            plan.hard[rel] = src
        if total > MAX_TOTAL_SIZE:
            raise SourceError(f"refused: unpacks to more than {MAX_TOTAL_SIZE} bytes (at member {_q(m.name)})", path=spath)
        plan.kinds[rel] = kind
        plan.members.append((m, rel))

    # Symlinks must stay inside the archive, resolved through the archive's own links.
    device_dirs: dict[str, str] = {}
    for m, rel in plan.members:
        if rel in plan.links:
            target = plan.links[rel]
            try:
                dest = _resolve(f"{posixpath.dirname(rel)}/{target}", plan.links.get, absolute_from_root=False)
            except _Unresolvable as e:
                raise refuse(m.name, f"symlink target {_q(target)} {e}") from None
            if posixpath.dirname(_inner(rel)) == _DEVICES_DIR:
                other = device_dirs.setdefault(dest, rel)
                if other != rel:
                    raise refuse(m.name, f"leads to the same device directory as {_q(other)}")
    # Nothing may lie below a non-directory (writes would go wherever a link points).
    for m, rel in plan.members:
        parent = posixpath.dirname(rel)
        while parent:
            k = plan.kinds.get(parent)
            if k is not None and k != "dir":
                raise refuse(m.name, f"lies below {_q(parent)}, which is a {'symlink' if k == 'link' else 'file'}")
            parent = posixpath.dirname(parent)
    return plan


def _drain(reader: _CappedReader) -> int:
    """Read to the end (gzip checks its CRC and length there); returns the stream length."""
    while reader.read(min(_CHUNK, MAX_RECORD)):
        pass
    return reader.tell()


def _unpack(tf: tarfile.TarFile, plan: _Plan, dest: str, spath: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for m, rel in plan.members:
        if rel in plan.skip:
            continue
        path = os.path.join(dest, rel)
        kind = plan.kinds[rel]
        if kind == "dir":
            os.makedirs(path, mode=0o700, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        if kind == "link":
            os.symlink(plan.links[rel], path)
        elif kind == "hardlink":
            os.link(os.path.join(dest, plan.hard[rel]), path, follow_symlinks=False)
        else:
            src = tf.extractfile(m)
            if src is None:  # pragma: no cover - isreg() members always have data
                raise SourceError(f"member {_q(m.name)}: no data", path=spath)
            fd = os.open(path, flags, 0o600)
            with os.fdopen(fd, "wb") as f:
                left = m.size
                while left > 0:
                    chunk = src.read(min(_CHUNK, left))
                    if not chunk:
                        raise SourceError(f"truncated: member {_q(m.name)} ends early", path=spath)
                    f.write(chunk)
                    left -= len(chunk)


def _extract(path: str | Path, dest: str) -> None:
    spath = str(path)
    try:
        raw = open(path, "rb")
    except OSError as e:
        raise SourceError(f"cannot read: {e.strerror or e}", path=spath) from None
    with raw:
        _prescan(raw, spath)
        head = raw.read(2)
        raw.seek(0)
        stream: BinaryIO = gzip.GzipFile(filename="", fileobj=raw, mode="rb") if head == GZIP_MAGIC else raw  # type: ignore[assignment]
        reader = _CappedReader(stream, MAX_STREAM)
        what = "gzip-compressed tar" if head == GZIP_MAGIC else "tar"
        try:
            try:
                tf = tarfile.open(fileobj=reader, mode="r:")  # type: ignore[call-overload]
            except tarfile.ReadError as e:
                raise SourceError(f"not a snapshot: not a {what} archive ({e})", path=spath) from None
            with tf:
                plan = _check_members(tf, spath)
                end = _drain(reader)
                if plan.end > end:
                    raise SourceError("truncated: the archive ends inside a member", path=spath)
                try:
                    _unpack(tf, plan, dest, spath)
                except OSError as e:
                    raise SourceError(f"cannot unpack: {e.strerror or e}", path=spath) from None
        except _TooBig as e:
            raise SourceError(f"refused: {e}", path=spath) from None
        except EOFError:
            raise SourceError("truncated: the compressed data ends early", path=spath) from None
        except (zlib.error, gzip.BadGzipFile) as e:
            raise SourceError(f"corrupt gzip data ({e})", path=spath) from None
        except tarfile.TarError as e:
            raise SourceError(f"corrupt tar archive ({e})", path=spath) from None
        except OSError as e:
            raise SourceError(f"cannot read: {e.strerror or e}", path=spath) from None


def _find_root(tmp: str) -> str | None:
    """The directory holding sys/bus/pci/devices: the top, or one directory level down."""
    if os.path.isdir(os.path.join(tmp, "sys/bus/pci/devices")):
        return tmp
    try:
        tops = [e for e in os.scandir(tmp) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return None
    if len(tops) == 1 and os.path.isdir(os.path.join(tops[0].path, "sys/bus/pci/devices")):
        return tops[0].path
    return None


def _capture_notes(root: str) -> list[str]:
    try:
        with open(os.path.join(root, _CAPTURE_META), "rb") as f:
            meta = json.loads(f.read(1024 * 1024))
    except (OSError, ValueError):
        return []
    if not isinstance(meta, dict):
        return []
    notes = []
    n = meta.get("serials_zeroed")
    if meta.get("serial_numbers") == "zeroed" and isinstance(n, int) and n > 0:
        notes.append(
            f"serial numbers of {n} devices were zeroed when the snapshot was taken "
            "(their DSN reads 00-00-00-00-00-00-00-00)"
        )
    partial = meta.get("partial_config")
    if isinstance(partial, list) and partial:
        notes.append(
            f"config space of {len(partial)} devices was only partly readable when the snapshot "
            "was taken (not run as root): their capabilities are unknown"
        )
    return notes


def _captured_mdev(root: str) -> bool:
    """Whether the capture looked for mediated devices (older captures did not)."""
    try:
        with open(os.path.join(root, _CAPTURE_META), "rb") as f:
            meta = json.loads(f.read(1024 * 1024))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("mdev") is True


def load_snapshot(path: str | Path, *, leave_out: frozenset[str] = frozenset()) -> Topology:
    """Load a snapshot archive (``.tar.gz`` or plain ``.tar``) taken by :func:`capture`.

    Every member is checked before anything is written; the archive is unpacked into a
    private temporary directory that is removed afterwards. Raises SourceError (one line,
    naming the archive and the offending member) for anything unsafe or unreadable.
    ``leave_out``: facts not to read, as for :func:`explorer.sources.sysfs.load_sysfs`.
    """
    spath = str(path)
    tmp = tempfile.mkdtemp(prefix="pci-explorer-snapshot-")
    try:
        _extract(path, tmp)
        root = _find_root(tmp)
        if root is None:
            raise SourceError("not a snapshot: the archive has no sys/bus/pci/devices", path=spath)
        try:
            topo = load_sysfs(root, kind="snapshot", location=spath, leave_out=leave_out)
        except SourceError as e:
            raise SourceError(f"not a snapshot: {e.message}", path=spath) from None
        if topo.mdev is None and _captured_mdev(root):
            from .mdev import read_mdev
            from .sysfs import _Root

            topo = replace(topo, mdev=read_mdev(root, _Root(root).resolve_link, live=True,
                                                cmdline=topo.source.kernel_cmdline))
        notes = _capture_notes(root)
        if notes:
            topo = replace(topo, source=replace(topo.source, warnings=topo.source.warnings + tuple(notes)))
        return topo
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def is_snapshot(path: str | Path) -> bool:
    """Cheap sniff: a gzip file, or a tar archive (ustar magic or a valid v7 header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    if head[:2] == GZIP_MAGIC:
        return True
    if len(head) < 512 or not any(head):
        return False
    if head[257:262] == b"ustar":
        return True
    try:
        want = int(head[148:156].replace(b"\x00", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    return want == sum(head[:148]) + 256 + sum(head[156:])
