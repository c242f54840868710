"""Load a topology from a sysfs tree: the live ``/`` or an unpacked snapshot.

Read only: this module opens files for reading and follows links by string
arithmetic inside ``root``; it never writes, and never resolves a link to a
place outside ``root``.

What it reads (and so what ``snapshot`` stores), relative to ``root``:
``sys/bus/pci/devices/*`` and the device directories they link to under
``sys/devices/pci*``, ``sys/bus/pci/slots/*/address`` (and, in :mod:`.context`, the slots'
``module`` links, ``sys/bus/pci_express/devices`` and ``sys/class/iommu``), ``sys/kernel/iommu_groups``,
``proc/iomem``, ``proc/ioports``, ``proc/cmdline``, the kernel release, the DMI
BIOS vendor, version and date (``sys/class/dmi/id/bios_*``), (snapshots only) ``dmesg.txt``
for the root buses' bus ranges, and mediated devices (``sys/class/mdev_bus``,
``mdev_supported_types``, ``sys/bus/mdev``: sources/mdev.py).
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
import sys
from itertools import islice
from dataclasses import replace
from pathlib import Path

from .. import gcpause
from ..model import (
    ABSENT,
    Address,
    AddressError,
    Bar,
    BarKind,
    BridgeInfo,
    Capabilities,
    Function,
    HostBridge,
    LinkInfo,
    SlotInfo,
    SourceInfo,
    SriovCap,
    Topology,
    Window,
    WindowKind,
    is_address,
    present,
)
from .config import decode_config
from .errors import SourceError

# include/linux/ioport.h
IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_MEM_64 = 0x100000
IORESOURCE_DISABLED = 0x10000000
IORESOURCE_UNSET = 0x20000000

#: Per-device attributes read (besides the links ``driver``, ``iommu_group``, ``physfn``,
#: ``virtfn*`` and ``domain``). ``snapshot`` stores exactly these.
DEVICE_FILES = (
    "vendor", "device", "subsystem_vendor", "subsystem_device", "class", "revision", "config",
    "resource", "driver_override", "numa_node", "boot_vga", "reset_method",
    "secondary_bus_number", "subordinate_bus_number", "current_link_speed", "current_link_width",
    "max_link_speed", "max_link_width", "removable", "sriov_totalvfs", "sriov_numvfs",
    "sriov_offset", "sriov_stride", "sriov_vf_device", "sriov_drivers_autoprobe",
)
DEVICE_LINKS = ("driver", "iommu_group", "physfn", "domain")

_HOSTBRIDGE_RE = re.compile(r"^pci([0-9a-f]{4,8}):([0-9a-f]{2})$")
_IOMEM_RE = re.compile(r"^(\s*)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$")
_BUS_NAME_RE = re.compile(r"^([0-9a-f]{4,8}):([0-9a-f]{2})$")
# "root bus resource [bus 00-ff]", or "[bus 00]" for a single bus number.
_ROOT_BUS_RE = re.compile(r"pci_bus ([0-9a-f]{4,8}):([0-9a-f]{2}): root bus resource \[bus ([0-9a-f]{2})(?:-([0-9a-f]{2}))?\]")


# ---- bounded, jailed reading (every file and link this module reads goes through these) ----

#: The most bytes read from one file. Config space is at most 4 KiB (PCI_CFG_SPACE_EXP_SIZE);
#: a sysfs attribute is at most one page (64 KiB on the largest pages); /proc/iomem of the
#: largest machines is some 100 KiB. A file past its cap is refused, not truncated.
CONFIG_CAP = 4096
ATTR_CAP = 64 * 1024
FILE_CAPS = {
    "proc/iomem": 8 * 1024 * 1024,
    "proc/ioports": 1024 * 1024,
    "proc/cmdline": ATTR_CAP,
    "proc/version": ATTR_CAP,
    "dmesg.txt": 8 * 1024 * 1024,
}
#: The most entries read from one directory listing, devices loaded, and entries of one
#: device directory (a PF may have 65535 ``virtfn`` links). The benchmarks go to 10^5
#: functions; a real machine has a few thousand.
MAX_DIR_ENTRIES = 1 << 18
MAX_DEVICES = 1 << 17
MAX_DEVDIR_ENTRIES = 1 << 17
#: Links followed while resolving one path (the kernel's MAXSYMLINKS).
MAX_HOPS = 40

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def _read_capped(fd: int, cap: int, label: str, size: int = 0, first: bytes | None = None) -> bytes:
    """Read ``fd`` to its end, linearly; SourceError when it holds more than ``cap`` bytes.

    One read when it returns ``size`` bytes or more (a sysfs attribute, a regular file of
    that size); procfs files (size 0) hand out a page or so a read, so those loop.
    ``first``: what a first read of at most ``cap + 1`` bytes already gave."""
    if first is None:
        first = os.read(fd, cap + 1)
    if len(first) > cap:
        raise SourceError(f"more than {cap} bytes: not a sysfs or procfs file (refused)", path=label)
    if not first or (size and len(first) >= size):
        return first
    chunks = [first]
    total = len(first)
    while True:  # procfs hands out a page or so a read
        part = os.read(fd, cap + 1 - total)
        if not part:
            break
        chunks.append(part)
        total += len(part)
        if total > cap:
            raise SourceError(f"more than {cap} bytes: not a sysfs or procfs file (refused)", path=label)
    return b"".join(chunks)


def read_file(path: str, cap: int = ATTR_CAP, *, dir_fd: int | None = None, label: str | None = None,
              single: bool = False) -> bytes | None:
    """At most ``cap`` bytes of the file ``path`` (relative to ``dir_fd`` if given).

    Never follows a symlink in the last component (callers resolve links inside the root
    first), never blocks (a FIFO reads as empty), never reads more than ``cap + 1`` bytes
    (a file past ``cap`` raises SourceError naming ``label``). None when it cannot be read.
    ``single``: one read, for sysfs attributes (their whole value comes in the first read).
    """
    try:
        fd = os.open(path, _READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if single:
            data = os.read(fd, cap + 1)
            if len(data) > cap:
                raise SourceError(f"more than {cap} bytes: not a sysfs attribute (refused)", path=label or path)
            return data
        return _read_capped(fd, cap, label or path)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_file_sized(path: str, cap: int, *, dir_fd: int | None = None, label: str | None = None,
                    whole_from: int | None = None) -> tuple[bytes, int] | None:
    """:func:`read_file` of a regular file, with its size (st_size); a larger file is refused
    before it is read; anything but a regular file reads as None (a device is not even opened).

    ``whole_from``: the file is read first, and a read of at least that many bytes (and at
    most ``cap``) is taken as the whole file, its length as its size, with no fstat; a
    shorter one is checked and sized as above."""
    if dir_fd is None:
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return None
        except OSError:
            return None
    try:
        fd = os.open(path, _READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        first = None
        if whole_from is not None:
            first = os.read(fd, cap + 1)
            if whole_from <= len(first) <= cap:
                return first, len(first)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > cap:
            raise SourceError(f"{st.st_size} bytes, more than {cap}: not a sysfs file (refused)", path=label or path)
        return _read_capped(fd, cap, label or path, st.st_size, first), st.st_size
    except OSError:
        return None
    finally:
        os.close(fd)


def _listing(path: str | None, label: str, limit: int = MAX_DIR_ENTRIES) -> list[str] | None:
    """The names in a directory (None when missing), refusing more than ``limit``."""
    if path is None:
        return None
    try:
        it = os.scandir(path)
    except OSError:
        return None
    with it:
        names = [e.name for e in islice(it, limit + 1)]  # never more than one past the limit
    if len(names) > limit:
        raise SourceError(f"more than {limit} entries: not a sysfs tree (refused)", path=label)
    return names


def _has_entry(path: str) -> bool:
    """Whether the directory ``path`` holds anything (reading one entry of it)."""
    try:
        with os.scandir(path) as it:
            return next(it, None) is not None
    except OSError:
        return False


def has_pci(root: str | Path) -> bool:
    d = Path(root) / "sys/bus/pci/devices"
    try:
        return any(is_address(e.name) for e in os.scandir(d))
    except OSError:
        return False


class _Root:
    """Path helpers that keep every lookup inside ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = os.path.abspath(str(root))

        #: root-relative path -> its link target (None: not a link); each asked once.
        self._links: dict[str, str | None] = {}

    def abs(self, rel: str) -> str:
        """The absolute path of an already resolved root-relative path."""
        return os.path.join(self.root, rel.lstrip("/"))

    def _readlink(self, rel: str) -> str | None:
        try:
            return self._links[rel]
        except KeyError:
            pass
        try:
            target: str | None = os.readlink(os.path.join(self.root, rel))
        except OSError:
            target = None
        if len(self._links) < 4 * MAX_DEVICES:
            self._links[rel] = target
        return target

    def resolve_in_root(self, rel: str) -> str | None:
        """``rel`` with every symlink in it expanded inside the root, one component at a time.

        The root is a jail: an absolute target restarts at the root (``proc/cmdline ->
        /etc/shadow`` is the root's ``etc/shadow``, not this machine's), ``..`` never goes
        above it (None), and more than MAX_HOPS links is a loop (None). Missing components
        count as plain names. Returns the root-relative path.
        """
        pending = rel.split("/")
        pending.reverse()
        done: list[str] = []
        hops = 0
        while pending:
            comp = pending.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if not done:
                    return None
                done.pop()
                continue
            done.append(comp)
            target = self._readlink("/".join(done))
            if target is None:
                continue
            hops += 1
            if hops > MAX_HOPS or not target:
                return None
            done.pop()
            if target.startswith("/"):
                done = []
            parts = target.split("/")
            parts.reverse()
            pending.extend(parts)
        return "/".join(done)

    def jailed(self, rel: str) -> str | None:
        """The absolute path of root-relative ``rel`` resolved inside the root (None: it leaves)."""
        res = self.resolve_in_root(rel)
        return None if res is None else self.abs(res)

    def resolve_link(self, rel_link: str) -> str | None:
        """Resolve a link (relative to root) to a root-relative path that exists, inside the root."""
        res = self.resolve_in_root(rel_link)
        if res is None or not os.path.lexists(self.abs(res)):
            return None
        return res

    def read_text(self, rel: str, cap: int | None = None) -> str | None:
        path = self.jailed(rel)
        if path is None:
            return None
        got = read_file_sized(path, cap if cap is not None else FILE_CAPS.get(rel, ATTR_CAP), label=path)
        return None if got is None else got[0].decode("utf-8", "replace").strip()


class _DevDir:
    """One device directory, opened once: its listing and files read relative to it.

    Reading through a directory descriptor with os.open/os.read costs three system calls
    a file (openat, read, close) and no path building: what lets a big tree load about as
    fast as pciutils reads it.
    """

    __slots__ = ("error", "fd", "names", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.error = 0
        try:
            self.fd: int | None = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            self.fd = None
            self.error = e.errno or -1
            self.names: frozenset[str] = frozenset()
            return
        try:
            self.names = frozenset(os.listdir(self.fd))
        except OSError:
            self.names = frozenset()
        if len(self.names) > MAX_DEVDIR_ENTRIES:
            self.close()
            raise SourceError(f"more than {MAX_DEVDIR_ENTRIES} entries in a device directory: not a sysfs tree (refused)", path=path)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def raw(self, name: str, limit: int = ATTR_CAP) -> bytes | None:
        # read_file(name, limit, dir_fd=self.fd, single=True), inlined: a big tree reads
        # some 60,000 attributes, and the call costs as much as the system calls.
        if name not in self.names or self.fd is None:
            return None
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=self.fd)
        except OSError:
            return None
        try:
            data = os.read(fd, limit + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(data) > limit:
            raise SourceError(f"more than {limit} bytes: not a sysfs attribute (refused)", path=f"{self.path}/{name}")
        return data

    def text(self, name: str) -> str | None:
        data = self.raw(name)
        return None if data is None else data.decode("utf-8", "replace").strip()

    def config(self) -> tuple[bytes, int] | None:
        """The config space as readable, and the file's full size (st_size); None when it
        cannot be read.

        When the space is readable whole (as root, or a snapshot's regular file), one read
        gives all of it, 256 bytes or more: its size. A user who is not root reads the first
        64 bytes of a larger space, so for less the size is asked (fstat), and what is not a
        regular file is refused, as read_file_sized does."""
        if self.fd is None or "config" not in self.names:
            return None
        return read_file_sized("config", CONFIG_CAP, dir_fd=self.fd, label=f"{self.path}/config", whole_from=256)

    def link(self, name: str) -> str | None:
        if self.fd is None or name not in self.names:
            return None
        try:
            return os.readlink(name, dir_fd=self.fd).rstrip("/").rpartition("/")[2]  # its basename
        except OSError:
            return None


def _int(text: str | bytes | None, base: int = 0) -> int | None:
    """An attribute's number, from its text or straight from its bytes (``int`` skips the
    whitespace and a ``0x`` the kernel prints); None when missing, empty or not a number."""
    if not text:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def _speed(text: str | None) -> str | None:
    if not text or text.lower().startswith("unknown"):
        return None
    return text.replace(" PCIe", "").strip()


_ZERO_ROW = "0x0000000000000000 0x0000000000000000 0x0000000000000000"
#: Parent directory name -> Address; devices share parents, so each is parsed once.
_PARENTS: dict[str, Address] = {}


def parse_resource(text: str) -> tuple[list[tuple[int, int, int]], str | None]:
    """Parse a sysfs ``resource`` file into (start, end, flags) lines."""
    rows = []
    zero = (0, 0, 0)
    for n, line in enumerate(text.splitlines(), 1):
        if line == _ZERO_ROW:  # most rows: an absent BAR or window
            rows.append(zero)
            continue
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            return rows, f"line {n}: expected 3 fields"
        try:
            rows.append((int(parts[0], 16), int(parts[1], 16), int(parts[2], 16)))
        except ValueError:
            return rows, f"line {n}: not hex"
    return rows, None


def _kind_from_flags(flags: int) -> BarKind | None:
    if flags & IORESOURCE_IO:
        return BarKind.IO
    if flags & IORESOURCE_MEM:
        return BarKind.of(False, bool(flags & IORESOURCE_MEM_64), bool(flags & IORESOURCE_PREFETCH))
    return None


def _bar_from_row(index: int, row: tuple[int, int, int]) -> Bar | None:
    start, end, flags = row
    if not flags:  # most rows: no BAR there (no IO or MEM flag)
        return None
    kind = _kind_from_flags(flags)
    if kind is None:
        return None
    if start == 0 and end == 0:
        return Bar(index, kind, None, None, unassigned=True)
    size = end - start + 1
    unset = bool(flags & IORESOURCE_UNSET) or start == 0
    return Bar(index, kind, None if unset else start, size, unassigned=unset, disabled=bool(flags & IORESOURCE_DISABLED) or None)


def _window_from_row(kind: WindowKind, row: tuple[int, int, int]) -> Window | object:
    start, end, flags = row
    if flags == 0 or (start == 0 and end == 0) or flags & (IORESOURCE_UNSET | IORESOURCE_DISABLED) or end < start:
        return ABSENT
    is64 = bool(flags & IORESOURCE_MEM_64) if kind is WindowKind.PREF else (False if kind is WindowKind.MEM else None)
    return Window(kind, start, end, is64)


def _layout(nrows: int) -> tuple[range | None, int | None]:
    """(IOV BAR indices, first bridge window index) for a resource file of n lines."""
    if nrows >= 17:
        return range(7, 13), 13
    if nrows == 13:
        return range(7, 13), None
    if nrows == 11:
        return None, 7
    return None, None


def _read_iomem(r: _Root, rel: str, kind: WindowKind) -> tuple[dict[tuple[int, int], list[Window]], bool]:
    """Top-level ``PCI Bus dddd:bb`` ranges: the host bridges' windows."""
    text = r.read_text(rel)
    out: dict[tuple[int, int], list[Window]] = {}
    if text is None:
        return out, False
    zeroed = True
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        m = _IOMEM_RE.match(line)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        start, end, name = int(m.group(2), 16), int(m.group(3), 16), m.group(4).strip()
        if start or end:
            zeroed = False
        while stack and stack[-1][0] >= depth:
            stack.pop()
        inside = [n for _, n in stack]
        stack.append((depth, name))
        if not name.startswith("PCI Bus "):
            continue
        if any(n.startswith("PCI Bus ") or n.startswith("PCI ECAM") or n.startswith("PCI MMCONFIG") for n in inside):
            continue
        bus = name[len("PCI Bus "):]
        try:
            dom_s, bus_s = bus.split(":")
            key = (int(dom_s, 16), int(bus_s, 16))
        except ValueError:
            continue
        out.setdefault(key, []).append(Window(kind, start, end, None))
    return out, not zeroed


def kernel_release(r: _Root) -> str | None:
    rel = r.read_text("proc/sys/kernel/osrelease")
    if rel:
        return rel
    uname = r.read_text("meta/uname.txt")
    if uname:
        parts = uname.split()
        if len(parts) >= 3:
            return parts[2]
    version = r.read_text("proc/version")
    if version:
        parts = version.split()
        if len(parts) >= 3:
            return parts[2]
    return None


#: The DMI firmware facts read (``/sys/class/dmi/id/NAME``); ``snapshot`` stores them too.
DMI_FILES = ("bios_vendor", "bios_version", "bios_date")
DMI_DIR = "sys/class/dmi/id"


def firmware(r: _Root) -> tuple[tuple[str, str], ...]:
    """(name, value) of each DMI BIOS fact the tree holds (the link to the DMI device is
    followed inside the root only)."""
    d = r.resolve_link(DMI_DIR)
    if d is None:
        return ()
    out = []
    for name in DMI_FILES:
        value = r.read_text(f"{d}/{name}")
        if value:
            out.append((name, value))
    return tuple(out)


def _version_at_least(release: str | None, want: tuple[int, int]) -> bool | None:
    if not release:
        return None
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2))) >= want


#: Function names exactly as the kernel writes them, one a line (device 00-1f, function 0-7).
_KERNEL_NAMES = re.compile(r"(?:[0-9a-f]{4,8}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]\n)*")


def _device_names(r: "_Root") -> list[str]:
    """The functions ``sys/bus/pci/devices`` lists, in address order."""
    devdir = "sys/bus/pci/devices"
    listed = _listing(r.jailed(devdir), r.abs(devdir))
    if listed is None:
        raise SourceError("no PCI device list here", path=r.abs(devdir))
    if _KERNEL_NAMES.fullmatch("\n".join(listed) + "\n" if listed else ""):
        # All as the kernel writes them (%04x:%02x:%02x.%d), checked in one pass: they sort
        # in address order by length (a wider domain is a bigger one), then as text.
        widths = set(map(len, listed))
        if len(widths) == 1:
            names = sorted(listed)
        else:
            names = [n for width in sorted(widths) for n in sorted(x for x in listed if len(x) == width)]
    else:
        names = [n for n in listed if is_address(n)]
        names.sort(key=_address_key)
    if len(names) > MAX_DEVICES:
        raise SourceError(f"{len(names)} devices, more than {MAX_DEVICES}: refused", path=r.abs(devdir))
    return names


#: Facts a command may leave unread (``leave_out``): each costs files per function and
#: shows only in some outputs; left out, they stay unknown (None) in the model.
#: "resources": the resource file (BARs, ROM, IOV BARs, bridge windows);
#: "attributes": driver_override, reset_method, numa_node;
#: "group_types": sys/kernel/iommu_groups/*/type (the default domain of each group).
LEAVE_OUT = frozenset({"resources", "attributes", "group_types"})


def load_sysfs(root: str | Path = "/", *, kind: str = "sysfs", location: str | None = None,
               leave_out: frozenset[str] = frozenset()) -> Topology:
    """Read the PCI tree under ``root`` (a directory holding ``sys/``).

    ``leave_out`` (a subset of :data:`LEAVE_OUT`) names facts not to read, for a command that
    shows none of them (``tree`` as text)."""
    unknown = set(leave_out) - LEAVE_OUT
    if unknown:
        raise ValueError(f"cannot leave out {', '.join(sorted(unknown))} (known: {', '.join(sorted(LEAVE_OUT))})")
    r = _Root(root)
    return _load_sysfs(r, _device_names(r), kind=kind, location=location, preview=False, leave_out=frozenset(leave_out))


def preview_sysfs(root: str | Path = "/", functions: int = 400, *, location: str | None = None) -> tuple[Topology, int]:
    """The first ``functions`` functions under ``root`` in address order, and how many there
    are in all: a first screen while the whole tree loads.

    A bridge's secondary bus is above its own, so every function of the preview has its
    upstream bridges in it too (a VMD domain sorts after domain 0000, where its VMD device
    is). A PF keeps the VFs the preview read. What costs a pass over the whole machine
    (slot names and drivers, the types of groups not shown, other buses) is left out."""
    r = _Root(root)
    names = _device_names(r)
    return _load_sysfs(r, names[:functions], kind="sysfs", location=location, preview=True), len(names)


def _load_sysfs(r: "_Root", names: list[str], *, kind: str, location: str | None, preview: bool,
                leave_out: frozenset[str] = frozenset()) -> Topology:
    devdir = "sys/bus/pci/devices"
    release = kernel_release(r)
    removable_known = _version_at_least(release, (5, 13))
    reset_known = _version_at_least(release, (5, 15))
    groups_dir = r.jailed("sys/kernel/iommu_groups")
    groups_exist = groups_dir is not None and os.path.isdir(groups_dir)
    if preview:
        # A preview reads the types of the groups it shows, by name: it need not list (and
        # sort) every group of a big machine, only see whether there is any.
        group_labels: list[str] = []
        any_group = groups_exist and _has_entry(groups_dir)  # type: ignore[arg-type]
    else:
        group_labels = sorted(_listing(groups_dir, r.abs("sys/kernel/iommu_groups")) or []) if groups_exist else []
        any_group = bool(group_labels)
    slots_dir = r.jailed("sys/bus/pci/slots")
    slots_exist = slots_dir is not None and os.path.isdir(slots_dir)
    slot_names = _read_slots(r) if not preview else {}
    warnings: list[str] = []

    functions: list[Function] = []
    host_bridges: dict[tuple[int, int], Address | None] = {}
    mdev_dirs: list[str] = []
    # Many small immutable objects and no cycles: the cyclic collector would only rescan them.
    with gcpause.paused():
        _load_all(r, names, devdir, functions, host_bridges, groups_exist, removable_known, reset_known, slots_exist, slot_names, warnings, mdev_dirs, leave_out)

    # Host bridges named as directories under sys/devices (also ones with no function yet).
    for name in _listing(r.jailed("sys/devices"), r.abs("sys/devices")) or []:
        m = _HOSTBRIDGE_RE.match(name)
        if m:
            host_bridges.setdefault((int(m.group(1), 16), int(m.group(2), 16)), None)

    mem, mem_ok = _read_iomem(r, "proc/iomem", WindowKind.MEM)
    io, io_ok = _read_iomem(r, "proc/ioports", WindowKind.IO)
    if r.read_text("proc/iomem") is not None and not mem_ok:
        warnings.append("proc/iomem shows only zero addresses (not read as root): host bridge windows unknown")
    bus_ranges = _root_bus_ranges(r)
    hbs = []
    for (dom, bus), owner in sorted(host_bridges.items()):
        windows: tuple[Window, ...] | None = None
        if owner is None and (mem_ok or io_ok):
            windows = tuple(io.get((dom, bus), [])) + tuple(mem.get((dom, bus), []))
        hbs.append(HostBridge(dom, bus, bus_ranges.get((dom, bus)), windows, owner))

    from .context import read_sysfs_context, release_file

    if preview:
        context_kw: dict = {"iommu_units": None, "provenance": (), "slot_drivers": ()}
    else:
        functions, context_kw = read_sysfs_context(r.root, functions, r.resolve_link)
    provenance = [("kernel_release", release_file(r.root) or "")] if release else []
    if r.read_text("proc/cmdline") is not None:
        provenance.append(("kernel_cmdline", "proc/cmdline"))
    if any_group and "group_types" not in leave_out:
        provenance.append(("group_types", "sys/kernel/iommu_groups/*/type"))
    context_kw["provenance"] = tuple(provenance) + context_kw["provenance"]
    if preview:
        # A preview's PFs keep the VFs it read (a VF may sort after the cut).
        loaded = {fn.address for fn in functions}
        functions = [fn if all(v in loaded for v in fn.virtfns)
                     else replace(fn, virtfns=tuple(v for v in fn.virtfns if v in loaded)) for fn in functions]
        # The types of the groups it shows, nothing more.
        shown = {fn.iommu_group for fn in functions if isinstance(fn.iommu_group, str)}
        group_types = _read_group_types(r, sorted(shown))
    elif "group_types" in leave_out:
        group_types = []
    else:
        group_types = _read_group_types(r, group_labels)
    source = SourceInfo(
        kind=kind,
        location=location or r.root,
        kernel_release=release,
        kernel_cmdline=r.read_text("proc/cmdline"),
        iommu_present=(any_group if groups_exist else None),
        group_types=tuple(group_types),
        warnings=tuple(warnings),
        thunderbolt=read_thunderbolt(r) if not preview else None,
        firmware=firmware(r),
        **context_kw,
    )
    # Mediated devices (sources/mdev.py): parents, their types, active mdevs.
    from .mdev import read_mdev

    mdev = read_mdev(r.root, r.resolve_link, pci_parents=mdev_dirs, live=r.root == "/",
                     groups_exist=groups_exist, cmdline=source.kernel_cmdline)
    explained = {fn.iommu_group for fn in functions if isinstance(fn.iommu_group, str)}
    if len(explained) < len(group_labels) and not preview:
        from .mdev import unexplained_groups

        explained |= set(mdev.group_members()) if mdev is not None else set()
        odd = unexplained_groups(r.root, group_labels, explained)  # type: ignore[arg-type]
        if odd:
            source = replace(source, warnings=source.warnings + tuple(odd))
    return Topology.build(functions, hbs, source, mdev)


#: Files of /sys/bus/thunderbolt/devices/* that the trust view uses (also what a snapshot keeps).
THUNDERBOLT_FILES = ("authorized", "security", "iommu_dma_protection", "vendor_name", "device_name")


def read_thunderbolt(r: "_Root") -> "tuple[ThunderboltDevice, ...] | None":
    """``/sys/bus/thunderbolt/devices``: routers' authorization, domains' security level.

    None when the tree has no thunderbolt bus (the driver is not loaded, or a capture
    without it): authorization is then unknown, never guessed."""
    from ..model.thunderbolt import ThunderboltDevice

    base = "sys/bus/thunderbolt/devices"
    try:
        names = sorted(os.listdir(r.abs(base)))
    except OSError:
        return None
    out = []
    for name in names:
        rel = r.resolve_link(f"{base}/{name}")
        if rel is None or not os.path.isdir(r.abs(rel)):
            continue
        vals = {f: r.read_text(f"{rel}/{f}") for f in THUNDERBOLT_FILES}
        auth = vals["authorized"]
        dma = vals["iommu_dma_protection"]
        pci = None
        parent = posixpath.basename(posixpath.dirname(rel))
        if name.startswith("domain") and is_address(parent):
            pci = Address.parse(parent)
        out.append(ThunderboltDevice(
            name=name,
            authorized=int(auth) if auth is not None and auth.isdigit() else None,
            security=vals["security"] or None,
            iommu_dma_protection=None if dma is None or dma not in ("0", "1") else dma == "1",
            vendor_name=vals["vendor_name"] or None,
            device_name=vals["device_name"] or None,
            pci_device=pci,
        ))
    return tuple(out)


def _address_key(name: str) -> tuple[int, ...]:
    """Address order of a ``dddd:bb:dd.f`` name (domains of five or more digits included)."""
    a = Address.parse(name)
    return (a.domain, a.bus, a.device, a.function)


def _share(shared: dict, value):
    """``value``, or an equal one met before (immutable values only)."""
    if value is None:
        return None
    try:  # keyed by type too: 1 and True, 0 and 0.0 are equal but not the same value
        return shared.setdefault((value.__class__, value), value)
    except TypeError:  # not hashable
        return value


def _address(shared: dict, name: str) -> Address | None:
    """The Address a ``dddd:bb:dd.f`` name stands for, parsed once a load (VFs name their
    PF, PFs their VFs); None for a name that is no address."""
    try:
        return shared[name]
    except KeyError:
        try:
            a = _share(shared, Address.parse(name))
        except AddressError:
            a = None
        shared[name] = a
        return a


def _device_dirs(r: _Root, devdir: str, name: str, parents: dict[str, str | None]) -> tuple[str | None, bool]:
    """(root-relative directory of device ``name``, whether it still needs the full check).

    The fast path for the kernel's layout (``devices/NAME`` a link to ``.../NAME``): one
    readlink, the directory part resolved inside the root once per parent (``parents``), and
    the last component left to _DevDir's O_NOFOLLOW open, which refuses a link there. Anything
    else (an absolute target, ``..`` after a name, a link named otherwise) takes
    ``resolve_link``, one component at a time."""
    link = f"{devdir}/{name}"
    try:
        target = os.readlink(os.path.join(r.root, link))
    except OSError:
        return r.resolve_link(link), True
    head, _, last = target.rpartition("/")
    if last != name or not head or target.startswith("/"):
        return r.resolve_link(link), True
    try:
        base = parents[head]
    except KeyError:
        base = parents[head] = r.resolve_in_root(f"{devdir}/{head}")
    if base is None:
        return None, True
    return f"{base}/{last}", False


def _open_device(r: _Root, devdir: str, name: str, parents: dict[str, str | None]) -> tuple[str | None, _DevDir | None]:
    """(root-relative directory, its open _DevDir) of device ``name``; (None, None) when the
    link leads nowhere inside the root."""
    rel, checked = _device_dirs(r, devdir, name, parents)
    if rel is None:
        return None, None
    d = _DevDir(r.abs(rel))
    if not checked and d.fd is None and d.error != errno.ENOENT:
        # Not a plain directory (a link, say): resolve it inside the root instead.
        rel = r.resolve_link(f"{devdir}/{name}")
        if rel is None:
            return None, None
        d = _DevDir(r.abs(rel))
    if d.fd is None and d.error == errno.ENOENT:
        return None, None
    return rel, d


def _load_all(r, names, devdir, functions, host_bridges, groups_exist, removable_known, reset_known, slots_exist, slot_names, warnings, mdev_dirs=None, leave_out=frozenset()) -> None:
    resources = "resources" not in leave_out
    attributes = "attributes" not in leave_out
    seen: dict[str, str] = {}
    parents: dict[str, str | None] = {}
    #: PF name -> (vendor, VF device ID) from its config space: what its VFs are.
    pf_ids: dict[str, tuple[int, int]] = {}
    #: Equal immutable values (capabilities, links, driver names...) kept once: a PF's VFs
    #: share most of them, and a 100,000-function machine then fits in far less memory.
    shared: dict = {}
    #: Capability regions decoded so far (config.decode_config's memo).
    cfg_memo: dict = {}
    devdir = r.resolve_in_root(devdir) or devdir
    for name in names:
        addr = _address(shared, name) or Address.parse(name)
        rel, d = _open_device(r, devdir, name, parents)
        if rel is None or d is None:
            warnings.append(f"{devdir}/{name}: link leads nowhere inside the tree; skipped")
            continue
        if rel in seen:
            d.close()
            # The kernel gives every function its own directory.
            raise SourceError(f"{devdir}/{seen[rel]} and {name} lead to the same directory {rel}: refused", path=r.root)
        seen[rel] = name
        try:
            fn, hb = _load_from_dir(d, r, addr, rel, groups_exist, removable_known, reset_known, slots_exist, slot_names, warnings, pf_ids, shared, cfg_memo, resources, attributes)
            sr = fn.caps.sriov
            if present(sr) and sr.vf_device is not None and fn.vendor_id is not None and fn.config_size:  # type: ignore[union-attr]
                pf_ids[name] = (fn.vendor_id, sr.vf_device)  # type: ignore[union-attr]
            if mdev_dirs is not None and "mdev_supported_types" in d.names:
                mdev_dirs.append(rel)
        finally:
            d.close()
        functions.append(fn)
        if hb is not None:
            host_bridges.setdefault(hb[0], hb[1])


def _read_group_types(r: _Root, labels: list[str]) -> list[tuple[str, str]]:
    """(label, ``type``) of each IOMMU group that has a readable, non-empty ``type`` file.

    Read relative to one descriptor of ``sys/kernel/iommu_groups`` with os.open/os.read
    (three system calls a group instead of seven through open()); a machine has about as
    many groups as functions."""
    out: list[tuple[str, str]] = []
    if not labels:
        return out
    try:
        base = os.open(r.abs("sys/kernel/iommu_groups"), os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return out
    try:
        for label in labels:
            try:
                fd = os.open(f"{label}/type", os.O_RDONLY, dir_fd=base)
            except OSError:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:
                continue
            finally:
                os.close(fd)
            text = data.decode("utf-8", "replace").strip()
            if text:
                # Interned: the labels are the functions' group names, the types a handful of words.
                out.append((sys.intern(label), sys.intern(text)))
    finally:
        os.close(base)
    return out


def _read_slots(r: _Root) -> dict[tuple[int, int, int], str]:
    out: dict[tuple[int, int, int], str] = {}
    listed = _listing(r.jailed("sys/bus/pci/slots"), r.abs("sys/bus/pci/slots"))
    if listed is None:
        return out
    entries = sorted(listed)
    for name in entries:
        addr = r.read_text(f"sys/bus/pci/slots/{name}/address")
        if not addr:
            continue
        parts = addr.split(":")
        if len(parts) != 3:
            continue  # placeholder slot: dddd:bb only
        try:
            out.setdefault((int(parts[0], 16), int(parts[1], 16), int(parts[2], 16)), name)
        except ValueError:
            continue
    return out


def _root_bus_ranges(r: _Root) -> dict[tuple[int, int], tuple[int, int]]:
    text = r.read_text("dmesg.txt")
    out: dict[tuple[int, int], tuple[int, int]] = {}
    if not text:
        return out
    for m in _ROOT_BUS_RE.finditer(text):
        first = int(m.group(3), 16)
        out[(int(m.group(1), 16), int(m.group(2), 16))] = (first, int(m.group(4), 16) if m.group(4) else first)
    return out


def _reset_methods(text: str | None, exists: bool, known_absent: bool | None) -> tuple[str, ...] | None:
    """sysfs ``reset_method`` (5.15+) is visible only when the device has some reset method."""
    if text:
        return tuple(text.split())
    if exists or known_absent:
        return ()
    return None


def _load_from_dir(
    d: _DevDir,
    r: _Root,
    addr: Address,
    rel: str,
    groups_exist: bool,
    removable_known: bool | None,
    reset_known: bool | None,
    slots_exist: bool,
    slot_names: dict[tuple[int, int, int], str],
    warnings: list[str],
    pf_ids: dict[str, tuple[int, int]],
    shared: dict,
    cfg_memo: dict | None = None,
    resources: bool = True,
    attributes: bool = True,
) -> tuple[Function, tuple[tuple[int, int], Address | None] | None]:
    present_files = d.names
    text = d.text

    parent_dir = rel.rpartition("/")[0].rpartition("/")[2]  # basename(dirname(rel)): rel is normalized
    parent: Address | None = None
    hb_key: tuple[tuple[int, int], Address | None] | None = None
    parent = _PARENTS.get(parent_dir)
    if parent is None and is_address(parent_dir):
        parent = _PARENTS.setdefault(parent_dir, Address.parse(parent_dir))
    elif parent is None:
        m = _HOSTBRIDGE_RE.match(parent_dir)
        if m:
            owner_dir = posixpath.basename(posixpath.dirname(posixpath.dirname(rel)))
            owner = Address.parse(owner_dir) if is_address(owner_dir) else None
            hb_key = ((int(m.group(1), 16), int(m.group(2), 16)), owner)

    cfg_raw = d.config()
    facts = decode_config(cfg_raw[0], cfg_raw[1], cfg_memo) if cfg_raw else None
    if facts:
        for w in facts.warnings:
            warnings.append(f"{addr}: {w}")

    # The kernel's class (quirks may rewrite it) comes from sysfs; the IDs, revision and
    # subsystem IDs sysfs would print are the same registers, so take them from config
    # space when it was readable and spare a file read each.
    cfg_ok = facts is not None and facts.length >= 64
    class_code = _int(d.raw("class"), 16)
    # A VF's own ID registers read 0xffff: the kernel takes them from its PF (iov.c).
    ids_ok = cfg_ok and "physfn" not in present_files and facts.vendor_id not in (None, 0xFFFF)  # type: ignore[union-attr]
    physfn_name = d.link("physfn")
    vf_ids = pf_ids.get(physfn_name) if physfn_name and not ids_ok and cfg_ok else None
    if ids_ok:
        vendor, device = facts.vendor_id, facts.device_id  # type: ignore[union-attr]
    elif vf_ids is not None:
        # What the kernel gives a VF (iov.c pci_iov_add_virtfn): its PF's vendor and the
        # PF's VF Device ID, read from the PF's config space at enumeration.
        vendor, device = vf_ids
    else:
        vendor, device = _int(text("vendor"), 16), _int(text("device"), 16)
    header_type = facts.header_type if facts else None
    multifunction = facts.multifunction if facts else None

    # BARs, ROM, IOV BARs and windows from the kernel's resource file.
    bars: list[Bar] | None = None
    rom = None
    vf_bars: list[Bar] | None = None
    windows: dict[WindowKind, object] = {}
    res_text = text("resource") if resources else None
    if res_text is not None:
        rows, err = parse_resource(res_text)
        if err:
            warnings.append(f"{addr}: resource {err}")
        iov_range, win_first = _layout(len(rows))
        bars = []
        nbars = 6 if header_type in (0, None) else 2
        for i in range(min(nbars, len(rows))):
            row = rows[i]
            if row[2]:  # most rows: no BAR there
                b = _bar_from_row(i, row)
                if b is not None:
                    bars.append(b)
        if len(rows) > 6:
            rb = _bar_from_row(6, rows[6])
            rom = rb if rb is not None else ABSENT
        if iov_range is not None:
            vf_bars = []
            # The IOV resource spans one VF BAR times TotalVFs (drivers/pci/iov.c sriov_init).
            total = facts.caps.sriov.total_vfs if facts is not None and present(facts.caps.sriov) else None  # type: ignore[union-attr]
            for n, i in enumerate(iov_range):
                if i < len(rows) and rows[i][2]:
                    b = _bar_from_row(n, rows[i])
                    if b is not None:
                        per_vf = b.size // total if b.size is not None and total else None
                        vf_bars.append(replace(b, size=per_vf, total_size=b.size))
        if win_first is not None and len(rows) >= win_first + 3:
            windows = {
                WindowKind.IO: _window_from_row(WindowKind.IO, rows[win_first]),
                WindowKind.MEM: _window_from_row(WindowKind.MEM, rows[win_first + 1]),
                WindowKind.PREF: _window_from_row(WindowKind.PREF, rows[win_first + 2]),
            }
    # BARs the hardware has but the kernel holds no range for (failed assignment).
    if facts is not None and bars is not None:
        have = {b.index for b in bars}
        for raw in facts.bars:
            if raw.index not in have:
                bars.append(Bar(raw.index, raw.kind, None, None, unassigned=True))
        bars.sort(key=lambda b: b.index)
    if facts is not None and vf_bars is not None:
        have = {b.index for b in vf_bars}
        for raw in facts.vf_bars:
            if raw.index not in have:
                vf_bars.append(Bar(raw.index, raw.kind, None, None, unassigned=True))
        vf_bars.sort(key=lambda b: b.index)

    # SR-IOV: config gives the capability; sysfs gives the kernel's counts.
    caps = facts.caps if facts else Capabilities()
    if "sriov_totalvfs" in present_files:
        base = caps.sriov if present(caps.sriov) else SriovCap()
        sr = replace(
            base,  # type: ignore[arg-type]
            driver_total_vfs=_int(text("sriov_totalvfs"), 10),
            num_vfs=_int(text("sriov_numvfs"), 10) if "sriov_numvfs" in present_files else base.num_vfs,  # type: ignore[union-attr]
            vf_offset=_int(text("sriov_offset"), 10) if "sriov_offset" in present_files else base.vf_offset,  # type: ignore[union-attr]
            vf_stride=_int(text("sriov_stride"), 10) if "sriov_stride" in present_files else base.vf_stride,  # type: ignore[union-attr]
            vf_device=_int(text("sriov_vf_device"), 16) if "sriov_vf_device" in present_files else base.vf_device,  # type: ignore[union-attr]
            drivers_autoprobe=(text("sriov_drivers_autoprobe") == "1") if "sriov_drivers_autoprobe" in present_files else None,
        )
        caps = replace(caps, sriov=sr)

    bridge: object = None
    is_bridge_hdr = header_type == 1 or ("secondary_bus_number" in present_files)
    if is_bridge_hdr:
        cfg_br = facts.bridge if facts else None
        # sysfs reads these two live from config space (pci-sysfs.c): same bytes.
        if cfg_ok and cfg_br is not None and cfg_br.secondary is not None:
            sec, sub = cfg_br.secondary, cfg_br.subordinate
        else:
            sec = _int(text("secondary_bus_number"), 10)
            sub = _int(text("subordinate_bus_number"), 10)
        # The kernel lists window rows only for a bridge with a subordinate bus; a bridge
        # it left unconfigured forwards nothing, whatever stale values config space holds.
        no_window = ABSENT if res_text is not None else None
        bridge = BridgeInfo(
            primary=cfg_br.primary if cfg_br else None,
            secondary=sec if sec is not None else (cfg_br.secondary if cfg_br else None),
            subordinate=sub if sub is not None else (cfg_br.subordinate if cfg_br else None),
            io_window=windows.get(WindowKind.IO, no_window),  # type: ignore[arg-type]
            mem_window=windows.get(WindowKind.MEM, no_window),  # type: ignore[arg-type]
            pref_window=windows.get(WindowKind.PREF, no_window),  # type: ignore[arg-type]
        )
    elif header_type is not None:
        bridge = ABSENT

    # Link
    link = None
    if cfg_ok and facts.length >= 256 and facts.sysfs_link is not None and "current_link_speed" in present_files:  # type: ignore[union-attr]
        # The same registers sysfs reads for these four files (no file reads needed).
        link = facts.sysfs_link  # type: ignore[union-attr]
    elif {"current_link_speed", "max_link_speed"} & present_files:
        link = LinkInfo(
            current_speed=_speed(text("current_link_speed")),
            current_width=_int(text("current_link_width"), 10),
            max_speed=_speed(text("max_link_speed")),
            max_width=_int(text("max_link_width"), 10),
        )
    elif facts is not None and facts.link is not None:
        link = facts.link

    # Slot
    phys = slot_names.get(addr.slot)
    slot: object = None
    pcie_type = facts.pcie_type if facts else None
    if facts is not None and facts.slot_implemented:
        slot = SlotInfo(physical_slot=phys, number=facts.slot_number, hotplug=facts.slot_hotplug, surprise=facts.slot_surprise)
    elif phys is not None:
        slot = SlotInfo(physical_slot=phys)
    elif facts is not None and facts.pcie_type is not None and slots_exist:
        slot = ABSENT

    # Driver, group, VF links
    driver_name = d.link("driver")
    driver = driver_name if driver_name else ABSENT
    override = text("driver_override") if attributes else None
    override_v: object = None
    if override is not None:
        override_v = ABSENT if override in ("(null)", "") else override
    group_name = d.link("iommu_group")
    group: object = sys.intern(group_name) if group_name else (ABSENT if groups_exist else None)
    physfn = _address(shared, physfn_name) if physfn_name else None
    virtfns = []
    # Only a PF has virtfnN links (and then sriov_totalvfs too); spare every other device the scan.
    for f in sorted(present_files) if "sriov_totalvfs" in present_files or "virtfn0" in present_files else ():
        if f.startswith("virtfn") and f[6:].isdigit():
            vn = d.link(f)
            va = _address(shared, vn) if vn else None
            if va is not None:
                virtfns.append((int(f[6:]), va))
    virtfns.sort()
    vmd_domain = None
    if "domain" in present_files:
        # vmd.c links "domain" to the VMD root bus's pci_bus device:
        # .../pci10000:e0/pci_bus/10000:e0 (a bare dddd:bb), older layouts name the pci dir.
        dn = d.link("domain") or ""
        m = _HOSTBRIDGE_RE.match(dn) or _BUS_NAME_RE.match(dn)
        if m:
            vmd_domain = int(m.group(1), 16)

    boot_vga: bool | None = None
    if "boot_vga" in present_files:
        boot_vga = text("boot_vga") == "1"
    elif class_code is not None and (class_code >> 8) != 0x0300:
        boot_vga = False
    reset = text("reset_method") if attributes else None
    removable: bool | None
    if "removable" in present_files:
        removable = text("removable") == "removable"
    else:
        removable = False if removable_known else None
    numa = _int(d.raw("numa_node"), 10) if attributes else None

    # Subsystem IDs: a normal header holds them at 0x2c; a bridge's come from its SSVID
    # capability (read by the kernel at probe), else sysfs prints what the kernel stored.
    if cfg_ok and header_type == 0 and facts.subsystem_vendor_id is not None:  # type: ignore[union-attr]
        subsys = (facts.subsystem_vendor_id, facts.subsystem_device_id)  # type: ignore[union-attr]
    elif cfg_ok and facts.length >= 256 and facts.subsystem_vendor_id is not None:  # type: ignore[union-attr]
        subsys = (facts.subsystem_vendor_id, facts.subsystem_device_id)  # type: ignore[union-attr]
    else:
        subsys = (_int(text("subsystem_vendor"), 16), _int(text("subsystem_device"), 16))
        if subsys == (None, None) and facts is not None:
            subsys = (facts.subsystem_vendor_id, facts.subsystem_device_id)

    fn = Function(
        address=addr,
        parent=parent,
        vendor_id=_share(shared, vendor if vendor is not None else (facts.vendor_id if facts else None)),
        device_id=_share(shared, device if device is not None else (facts.device_id if facts else None)),
        subsystem_vendor_id=_share(shared, subsys[0]),
        subsystem_device_id=_share(shared, subsys[1]),
        class_code=_share(shared, class_code if class_code is not None else (facts.class_code if facts else None)),
        revision=facts.revision if cfg_ok else _int(text("revision"), 16),  # type: ignore[union-attr]
        header_type=header_type,
        multifunction=multifunction,
        pcie_type=pcie_type,
        config_size=len(cfg_raw[0]) if cfg_raw else None,
        bars=tuple(bars) if bars is not None else None,
        rom=rom,  # type: ignore[arg-type]
        vf_bars=tuple(vf_bars) if vf_bars is not None else (() if present_files and facts and caps.sriov is ABSENT else None),
        bridge=bridge,  # type: ignore[arg-type]
        caps=_share(shared, caps),
        slot=slot,  # type: ignore[arg-type]
        link=_share(shared, link),
        driver=_share(shared, driver),  # type: ignore[arg-type]
        driver_override=override_v,  # type: ignore[arg-type]
        iommu_group=group,  # type: ignore[arg-type]
        numa_node=numa,
        physfn=physfn,
        virtfns=tuple(a for _, a in virtfns),
        is_virtfn=physfn is not None,
        boot_vga=boot_vga,
        reset_methods=_share(shared, _reset_methods(reset, "reset_method" in present_files, reset_known)) if attributes else None,
        external_facing=None,
        removable=removable,
        vmd_domain=vmd_domain,
    )
    return fn, hb_key
