"""Bounds every reader shares, so that no input costs more than its size suggests.

A reader that meets an input beyond these refuses it with a one-line error naming the file
(and line); it never hangs and never grows without bound. The numbers are far above any
real machine (the largest real captures have a few thousand functions) and below what
would take more than seconds or hundreds of MB to process.

``yaml_expansion_problem`` walks a composed YAML node graph (PyYAML nodes, by duck typing:
``.value`` is a list of nodes, a list of key/value pairs, or text) once, with memoisation,
and reports an alias bomb: a small file whose aliases and merge keys expand to millions of
nodes (``&a [*b, *b, ...]`` nine levels deep is 10^9 nodes from a few hundred bytes), an
alias that contains itself, or nesting deeper than any real document.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MAX_YAML_DEPTH",
    "MAX_YAML_EXPANSION",
    "MAX_TEXT_SOURCE",
    "yaml_expansion_problem",
]

#: Deepest nesting of lists and mappings in a YAML document (real ones are under 20).
MAX_YAML_DEPTH = 200
#: Nodes that aliases may add on top of the nodes written out: a real document uses aliases
#: for shared defaults, a few per device, so this allows ``4 x written + 100,000``.
MAX_YAML_EXPANSION = 100_000
#: Largest text SOURCE (YAML topology, lspci output) read: 256 MiB (a generated machine of
#: 10^5 functions is some 70 MiB of YAML; the lspci output of a large server a few MiB).
MAX_TEXT_SOURCE = 256 * 1024 * 1024


#: The only tags a document may carry: YAML's own (``!!int``, ``!!str``, ``!!merge``...).
#: ``!!python/name:os.system`` and friends are refused, not merely left unconstructed.
STANDARD_TAG_PREFIX = "tag:yaml.org,2002:"
STANDARD_TAGS = frozenset(
    STANDARD_TAG_PREFIX + t
    for t in ("null", "bool", "int", "float", "str", "binary", "timestamp", "seq", "map", "merge", "omap", "pairs", "set")
)


def yaml_expansion_problem(root: Any, *, max_depth: int = MAX_YAML_DEPTH) -> tuple[str, Any] | None:
    """(message, node) when the graph under ``root`` is an alias bomb, too deep,
    self-containing or carries a tag that is not YAML's own; else None. Linear in the
    number of distinct nodes."""
    if root is None:
        return None
    size: dict[int, int] = {}  # id(node) -> nodes it expands to (itself included)
    distinct = 0
    # Iterative post-order walk: (node, depth, children pushed?)
    stack: list[tuple[Any, int, bool]] = [(root, 1, False)]
    on_path: set[int] = set()
    while stack:
        node, depth, expanded = stack.pop()
        nid = id(node)
        if expanded:
            on_path.discard(nid)
            total = 1
            for child in _children(node):
                total += size[id(child)]
            size[nid] = total
            continue
        if nid in size:
            continue
        if nid in on_path:
            return ("an alias refers to a node that contains it (a recursive alias)", node)
        if depth > max_depth:
            return (f"nested more than {max_depth} levels deep", node)
        distinct += 1
        tag = getattr(node, "tag", None)
        if isinstance(tag, str) and tag not in STANDARD_TAGS:
            return (f"the tag {tag!r} is not allowed (only YAML's own types)", node)
        kids = _children(node)
        if not kids:
            size[nid] = 1
            continue
        on_path.add(nid)
        stack.append((node, depth, True))
        for child in kids:
            cid = id(child)
            if cid in on_path:
                return ("an alias refers to a node that contains it (a recursive alias)", child)
            if cid not in size:
                stack.append((child, depth + 1, False))
    budget = 4 * distinct + MAX_YAML_EXPANSION
    if size[id(root)] > budget:
        return (
            f"aliases expand {distinct} written nodes to {size[id(root)]} (more than {budget}): "
            "refused as an alias bomb",
            root,
        )
    return None


def _children(node: Any) -> list[Any]:
    value = getattr(node, "value", None)
    if not isinstance(value, list) or not value:
        return []
    if isinstance(value[0], tuple):
        out = []
        for k, v in value:
            out.append(k)
            out.append(v)
        return out
    return list(value)
