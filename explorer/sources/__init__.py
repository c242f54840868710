"""Layer 2: sources. Every source fills the one model (explorer.model).

``load_source(spec)`` detects the kind of a SOURCE from its content:

* no spec / ``/``          the live machine (sysfs under ``/``, read only)
* a directory               a sysfs root (it holds ``sys/bus/pci/devices``)
* a ``.tar.gz`` (by magic)  a snapshot taken with ``pci-explorer snapshot``
* ``builtin:NAME``          ``topologies/NAME.yaml`` shipped with the tool
* a text file               a YAML topology, or ``lspci -vvnn`` / ``lspci -xxxx`` output
"""

from __future__ import annotations

import os
from pathlib import Path

from ..model import Topology
from .errors import SourceError

__all__ = ["SourceError", "load_source", "preview_source", "detect_kind", "builtin_dir", "builtin_descriptions", "builtin_names", "live_root"]

_SNIFF_BYTES = 64 * 1024


def builtin_dir() -> Path:
    """Where the bundled topologies live (installed package data, else the source tree)."""
    pkg = Path(__file__).resolve().parent.parent
    installed = pkg / "_topologies"
    if installed.is_dir():
        return installed
    return pkg.parent / "topologies"


def builtin_names() -> list[str]:
    d = builtin_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.yaml"))


def builtin_descriptions() -> list[tuple[str, str]]:
    """The bundled machines (``builtin:NAME``) with the one-line ``description:`` of each."""
    import yaml

    out = []
    for name in builtin_names():
        desc = ""
        try:
            with open(builtin_dir() / f"{name}.yaml", encoding="utf-8") as f:
                for line in f:
                    if line.startswith("description:"):
                        try:
                            desc = str(yaml.safe_load(line)["description"])
                        except (yaml.YAMLError, KeyError, TypeError):
                            desc = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        out.append((name, desc))
    return out


def live_root() -> str:
    """The root the live machine is read from (``PCI_EXPLORER_ROOT`` overrides ``/``)."""
    return os.environ.get("PCI_EXPLORER_ROOT", "/")


def detect_kind(spec: str) -> str:
    """One of: sysfs, snapshot, builtin, yaml, lspci. Raises SourceError when unknown."""
    if spec.startswith("builtin:"):
        return "builtin"
    p = Path(spec)
    if p.is_dir():
        if (p / "sys" / "bus" / "pci").exists():
            return "sysfs"
        raise SourceError("directory has no sys/bus/pci: not a sysfs root or unpacked snapshot", path=spec)
    if not p.exists():
        raise SourceError("no such file or directory", path=spec)
    import stat as _stat

    try:
        st = os.stat(p)
    except OSError as e:
        raise SourceError(f"cannot read: {e.strerror or e}", path=spec) from None
    if not _stat.S_ISREG(st.st_mode):
        # A FIFO would block the read forever; a device may have effects when opened.
        raise SourceError("not a regular file or a directory (a FIFO, device or socket): refused", path=spec)
    try:
        with open(p, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as e:
        raise SourceError(f"cannot read: {e.strerror or e}", path=spec) from None
    if head[:2] == b"\x1f\x8b" or (len(head) > 262 and head[257:262] == b"ustar"):
        return "snapshot"
    if b"\x00" in head:
        raise SourceError("binary file that is neither a snapshot (.tar.gz) nor text", path=spec)
    from ..model.limits import MAX_TEXT_SOURCE

    if st.st_size > MAX_TEXT_SOURCE:
        raise SourceError(f"{st.st_size} bytes of text, more than a topology or lspci output can be "
                          f"({MAX_TEXT_SOURCE}): refused", path=spec)
    text = head.decode("utf-8", "replace")
    from .yaml_topology import looks_like_yaml_topology

    if looks_like_yaml_topology(text):
        return "yaml"
    from .lspci import looks_like_lspci

    if looks_like_lspci(text):
        return "lspci"
    raise SourceError(
        "cannot tell what this is: expected a YAML topology, lspci -vvnn or lspci -xxxx output, "
        "a snapshot .tar.gz or a sysfs directory",
        path=spec,
    )


def load_source(spec: str | None = None, *, leave_out: frozenset[str] = frozenset()) -> Topology:
    """Load any SOURCE (see module doc). Raises SourceError with a one-line message.

    Every topology is checked for consistency (parent and physfn cycles, dangling links,
    devices outside their bridge's bus range) and has control characters in its text
    escaped (sources/consistency.py) before it is returned.

    ``leave_out`` names facts a command does not show (see sysfs.LEAVE_OUT): a sysfs tree or
    snapshot then does not read them and they stay unknown. Text sources hold everything
    already and ignore it.
    """
    from ..model.topology import TopologyError
    from .consistency import check_topology, scrub_text

    try:
        t = _load_source(spec, leave_out)
    except TopologyError as e:
        raise SourceError(str(e), path=spec or live_root()) from None
    return scrub_text(check_topology(t))


#: Functions a preview reads: more rows than the tallest terminal shows.
PREVIEW_FUNCTIONS = 256
#: Below this many functions the whole machine loads about as fast as a preview: no preview.
PREVIEW_FROM = 3000


def preview_source(spec: str | None, functions: int = PREVIEW_FUNCTIONS) -> tuple[Topology, int] | None:
    """The first ``functions`` functions of a large sysfs SOURCE (live or a directory) and how
    many it has in all, for a first screen while the whole loads (sysfs.preview_sysfs); None
    when the source is small or not a sysfs tree (the others are read whole at once).
    Raises SourceError as :func:`load_source` would."""
    from ..model.topology import TopologyError
    from .consistency import check_topology, scrub_text
    from .sysfs import preview_sysfs

    if spec is None or spec == "":
        root = live_root()
        location = "this machine" if root == "/" else root
    elif detect_kind(spec) == "sysfs":
        root = location = spec
    else:
        return None
    try:
        t, total = preview_sysfs(root, functions, location=location)
    except TopologyError as e:
        raise SourceError(str(e), path=root) from None
    if total < PREVIEW_FROM:
        return None
    return scrub_text(check_topology(t)), total


def _load_source(spec: str | None, leave_out: frozenset[str] = frozenset()) -> Topology:
    if spec is None or spec == "":
        from .sysfs import load_sysfs

        root = live_root()
        return load_sysfs(root, kind="sysfs", location="this machine" if root == "/" else root, leave_out=leave_out)
    kind = detect_kind(spec)
    if kind == "builtin":
        name = spec[len("builtin:"):]
        path = builtin_dir() / f"{name}.yaml"
        if not name or not path.is_file():
            known = ", ".join(builtin_names()) or "none"
            raise SourceError(f"no bundled topology {name!r} (bundled: {known})", path=spec)
        from dataclasses import replace

        from .yaml_topology import load_yaml

        t = load_yaml(path)
        # Name a bundled machine by its builtin name, not by where it is installed.
        return Topology(t.functions, t.host_bridges, replace(t.source, location=spec), t.mdev)
    if kind == "sysfs":
        from .sysfs import load_sysfs

        return _with_kernel_log(spec, load_sysfs(spec, kind="sysfs", location=spec, leave_out=leave_out))
    if kind == "snapshot":
        from .snapshot import load_snapshot

        return _with_kernel_log(spec, load_snapshot(spec, leave_out=leave_out))
    if kind == "yaml":
        from .yaml_topology import load_yaml

        return load_yaml(spec)
    from .lspci import load_lspci

    return load_lspci(spec)


def _with_kernel_log(spec: str, t: Topology) -> Topology:
    """Attach the kernel log kept with the source (the firmware's assignment; explorer.sources.dmesg)."""
    if os.path.isdir(spec) and not os.path.isfile(os.path.join(spec, "dmesg.txt")):
        return t  # no log kept (most sysfs trees): spare the parser's import
    from ..model.firmware import attach_firmware
    from .dmesg import load_dmesg

    try:
        fw = load_dmesg(spec)
    except SourceError:
        return t
    if fw is not None:
        attach_firmware(t, fw)
    return t
