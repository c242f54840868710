"""Write a JSON document to standard output (or any text stream), fast.

``write_json(obj)`` writes compact JSON (no spaces) when the output is not a terminal, and
indents by two spaces on a terminal or when asked (``--pretty``). The indented form is
byte-identical to ``json.dumps(obj, indent=2)``; the compact one to
``json.dumps(obj, separators=(",", ":"))``.

Compact text is encoded by orjson where it is installed and gives those same bytes: when its
output is printable ASCII (the json module escapes every other character, DEL included) and it
accepts the value (it refuses integers beyond 64 bits and keys that are not strings).
Anything else goes to the json module's C encoder. The documents hold no floating-point
numbers, the one type whose text the two encoders write differently (``1e-07`` and ``1e-7``,
``NaN`` and ``null``).

A value may be an iterator (a generator, ``iter(list)``...) instead of a list: its items
are then encoded and written in batches as they are produced, so a 100,000-device document
never exists whole in memory, as objects or as text. The output is the same as for the list.

It does not care what the document is.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import IO, Any

#: The orjson module, imported at the first compact document (it takes some 10 ms, more than
#: a small document's encoding); None when it is not installed.
_orjson: Any = False

_JSON_COMPACT = json.JSONEncoder(separators=(",", ":"))
_PRETTY = json.JSONEncoder(indent=2)
#: Items of a streamed list encoded per write (fewer, larger writes; bounded memory).
BATCH = 512


def compact(v: Any) -> str:
    """``json.dumps(v, separators=(",", ":"))``, byte for byte for a value without floats
    (see the module doc)."""
    global _orjson
    if _orjson is False:
        try:  # several times faster than the json module's C encoder on a big document
            import orjson as _orjson
        except ImportError:  # pragma: no cover - a dependency; the json module still works
            _orjson = None
    if _orjson is not None:
        try:
            data = _orjson.dumps(v)
        except TypeError:  # orjson.JSONEncodeError: a big integer, a key not a string...
            pass
        else:
            if data.isascii() and b"\x7f" not in data:
                return data.decode("ascii")
    return _JSON_COMPACT.encode(v)


def wants_pretty(out: IO[str], pretty: bool | None) -> bool:
    if pretty is not None:
        return pretty
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def write_json(obj: Any, out: IO[str] | None = None, *, pretty: bool | None = None) -> None:
    """Write ``obj`` and a newline. ``pretty``: None = indent only on a terminal."""
    out = sys.stdout if out is None else out
    indent = wants_pretty(out, pretty)
    if not _has_iterator(obj):
        out.write(_PRETTY.encode(obj) if indent else compact(obj))
    else:
        for chunk in _chunks(obj, indent, 0):
            out.write(chunk)
    out.write("\n")


def dumps(obj: Any, *, pretty: bool = False) -> str:
    """The text ``write_json`` writes (without the newline)."""
    if not _has_iterator(obj):
        return _PRETTY.encode(obj) if pretty else compact(obj)
    return "".join(_chunks(obj, pretty, 0))


#: Types that are values, never iterators to stream (checked before the slower ABC test).
_VALUES = frozenset({str, bytes, int, float, bool, type(None), dict, list, tuple})


def _is_iterator(v: Any) -> bool:
    t = type(v)
    return t not in _VALUES and isinstance(v, Iterator) and not isinstance(v, (str, bytes, dict, list, tuple))


def _has_iterator(v: Any, depth: int = 0) -> bool:
    """Whether ``v`` is an iterator or an object holding one among its values, down to
    objects in objects (where documents put their long lists). Items of lists are not
    searched: a list's items are encoded as they are."""
    if _is_iterator(v):
        return True
    if depth < 3 and isinstance(v, dict):
        for x in v.values():
            t = type(x)
            if t is dict:
                # (a dict at the last level searched holds nothing that is searched)
                if depth < 2 and _has_iterator(x, depth + 1):
                    return True
            elif t not in _VALUES and _has_iterator(x, depth + 1):
                return True
    return False


def _encode(v: Any, indent: bool, level: int) -> str:
    if not indent:
        return compact(v)
    text = _PRETTY.encode(v)
    return text.replace("\n", "\n" + "  " * level) if level and "\n" in text else text


def _chunks(v: Any, indent: bool, level: int) -> Iterator[str]:
    """The JSON text of ``v`` in pieces, identical to encoding ``v`` with its iterators
    turned into lists (``v`` is an iterator or an object holding one)."""
    if not _has_iterator(v):
        yield _encode(v, indent, level)
        return
    nl = "\n" + "  " * (level + 1) if indent else ""
    end = "\n" + "  " * level if indent else ""
    sep = "," + nl
    if isinstance(v, dict):
        if not v:
            yield "{}"
            return
        colon = ": " if indent else ":"
        first = True
        for k, x in v.items():
            if not isinstance(k, str):
                raise TypeError("streamed JSON objects need string keys")
            yield ("{" + nl if first else sep) + json.dumps(k) + colon
            first = False
            yield from _chunks(x, indent, level + 1)
        yield end + "}"
        return
    # an iterator: its items are encoded as they come, in batches
    if not indent:
        # Compact: one encoder call a batch ("[a,b]" less its brackets is "a,b").
        items: list[Any] = []
        started = False
        for x in v:
            items.append(x)
            if len(items) >= BATCH:
                yield ("[" if not started else ",") + compact(items)[1:-1]
                started, items = True, []
        if items:
            yield ("[" if not started else ",") + compact(items)[1:-1]
            started = True
        yield "]" if started else "[]"
        return
    batch: list[str] = []
    started = False
    for x in v:
        batch.append(_encode(x, indent, level + 1))
        if len(batch) >= BATCH:
            yield ("[" + nl if not started else sep) + sep.join(batch)
            started, batch = True, []
    if batch:
        yield ("[" + nl if not started else sep) + sep.join(batch)
        started = True
    yield (end + "]") if started else "[]"
