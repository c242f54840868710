"""The one JSON envelope every ``--json`` output and the JSON plan export share.

Every document is an object::

    {"format": "pci-explorer/<kind>/<version>", "source": {...}, "context": {...}, ...payload keys...}

``format`` names the kind of document and the version of its schema
(``docs/schema/<kind>.schema.json``); ``source`` says which machine the answer is about
(the same object ``tree --json`` has always carried); ``context``, when the answer is about
a loaded machine, is the kernel context every prediction read (kernel release and rule set,
command line, IOMMU, slot hotplug drivers), each fact with where it came from. The
payload's own keys follow.
A version is raised only when a key changes meaning or disappears; new keys do not
raise it. The kinds and their versions live here and nowhere else (docs/json.md).
"""

from __future__ import annotations

from typing import Any, Mapping

from ..model import SourceInfo, Topology

#: kind -> current version. docs/json.md and docs/schema/ describe each one.
VERSIONS: dict[str, int] = {
    "tree": 1,          # tree --json
    "device": 1,        # show --json
    "groups": 2,        # groups --json (2: "source" became the envelope's, the view moved to "view")
    "resources": 1,     # resources --json
    "fit": 1,           # fit --port ... --json
    "sriov-fit": 1,     # fit --sriov ... --json
    "check": 1,         # check --json
    "trust": 1,         # trust --json
    "plan": 1,          # plan show --json
    "plan-export": 2,   # export --to json (2: one "format" string instead of "format" + "version")
    "boot": 1,          # boot --json
    "diff": 1,          # diff --json
}

PREFIX = "pci-explorer/"


def format_id(kind: str) -> str:
    """``pci-explorer/<kind>/<version>`` for a known kind; KeyError names an unknown one."""
    return f"{PREFIX}{kind}/{VERSIONS[kind]}"


def source_json(source: SourceInfo | Topology | Mapping[str, Any] | str | None) -> dict[str, Any]:
    """The ``source`` object: where the answer came from.

    A topology or its ``SourceInfo`` gives every fact the source recorded; a plain string
    (a plan's recorded SOURCE spec, when no topology was loaded) gives only its location.
    """
    if isinstance(source, Topology):
        source = source.source
    if isinstance(source, SourceInfo):
        return {
            "kind": source.kind,
            "location": source.location,
            "description": source.description,
            "kernel_release": source.kernel_release,
            "kernel_cmdline": source.kernel_cmdline,
            "iommu_present": source.iommu_present,
            "warnings": list(source.warnings),
        }
    if isinstance(source, Mapping):
        doc = dict(source)
        doc.setdefault("kind", None)
        doc.setdefault("location", None)
        return doc
    return {"kind": None, "location": source or None}


def envelope(kind: str, source: SourceInfo | Topology | Mapping[str, Any] | str | None, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The document for ``kind``: format and source first, then the payload's keys.

    A payload may carry its own ``format`` (renderers used on their own do); it must then be
    this kind's. A payload never carries ``source``: that key is the envelope's.
    """
    fmt = format_id(kind)
    own = payload.get("format")
    if own is not None and own != fmt:
        raise ValueError(f"payload says format {own!r}, envelope {fmt!r}")
    if "source" in payload:
        raise ValueError(f"payload of {kind!r} has a 'source' key: that key belongs to the envelope")
    doc: dict[str, Any] = {"format": fmt, "source": source_json(source)}
    if isinstance(source, Topology) and "context" not in payload:
        # The kernel context every prediction read (explorer.kernel.context), with provenance.
        from ..kernel.context import source_context

        doc["context"] = source_context(source).to_dict()
    doc.update((k, v) for k, v in payload.items() if k != "format")
    return doc


__all__ = ["PREFIX", "VERSIONS", "envelope", "format_id", "source_json"]
