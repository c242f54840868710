"""Sizes as people write them: one parser and one compact formatter for every layer."""

from __future__ import annotations

import re

_SIZE_RE = re.compile(r"^(0x[0-9a-f_]+|[0-9][0-9_]*)\s*(?:([kmgtpe])(?:i?b)?|b)?\Z", re.IGNORECASE)
_SHIFT = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
#: Sizes and addresses are at most 64-bit (PCI's widest BAR and window registers).
MAX_VALUE = 1 << 64


def _short(text: object) -> str:
    r = repr(text)
    return r if len(r) <= 60 else r[:50] + "…" + r[-5:]


def parse_size(text: str | int) -> int:
    """``4096``, ``0x1000``, ``4K``, ``16 KB``, ``256M``, ``1GiB``, ``1_024`` -> bytes (binary units).

    Raises ValueError naming the text for anything else (fractions, negatives, other units).
    """
    if isinstance(text, bool):
        raise ValueError(f"bad size {text!r}: expected a number")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"bad size {_short(text)}: must not be negative")
        if text > MAX_VALUE:
            raise ValueError(f"bad size {_short(text)}: larger than 2^64")
        return text
    m = _SIZE_RE.match(text.strip()) if isinstance(text, str) and len(text) <= 200 else None
    if not m:
        raise ValueError(f"bad size {_short(text)}: expected a number (decimal or 0x hex) with an optional K, M, G, T, P or E suffix")
    num = m.group(1).replace("_", "")
    if len(num) > 40:  # no int() of a 100,000-digit number
        raise ValueError(f"bad size {_short(text)}: larger than 2^64")
    value = int(num, 16) if num.lower().startswith("0x") else int(num, 10)
    unit = m.group(2)
    value = value << _SHIFT[unit.lower()] if unit else value
    if value > MAX_VALUE:
        raise ValueError(f"bad size {_short(text)}: larger than 2^64")
    return value


def format_size(n: int | None) -> str:
    """Compact and exact, the way command lines write sizes: ``16K``, ``1G``, ``4097``; None -> ``?``."""
    if n is None:
        return "?"
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= (1 << shift) and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


_UNITS = (("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10))


def human_size(n: int | None) -> str:
    """Sizes as every text output prints them: ``256 B``, ``16 KiB``, ``1 GiB``; a size that
    is not a whole number of its unit keeps two decimals (``3.75 KiB``), marked ``~`` when
    that rounds (``~999.99 MiB``, ``~4 KiB`` for 4097). Hex is for addresses only. None -> ``?``."""
    if n is None:
        return "?"
    if n < 1024:
        return f"{n} B"
    for unit, shift in _UNITS:
        if n >= (1 << shift):
            if n % (1 << shift) == 0:
                return f"{n >> shift} {unit}"
            text = f"{n / (1 << shift):.2f}".rstrip("0").rstrip(".")
            exact = round(float(text) * (1 << shift)) == n
            return f"{'' if exact else '~'}{text} {unit}"
    return f"{n} B"  # pragma: no cover
