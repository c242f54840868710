"""PCI addresses: domain, bus, device, function.

Always printed with the domain, in lowercase hex: ``0000:00:1f.3``.  VMD domains
(``0x10000`` and up) print with five or more digits, as the kernel's ``%04x`` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering

_BDF_RE = re.compile(
    r"^(?:(?P<domain>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{1,2}):(?P<dev>[0-9a-fA-F]{1,2})\.(?P<fn>[0-7])$"
)


_HEX = frozenset("0123456789abcdefABCDEF")


class AddressError(ValueError):
    """A string that is not a PCI address."""


@total_ordering
@dataclass(frozen=True, slots=True)
class Address:
    domain: int
    bus: int
    device: int
    function: int
    #: The text and the hash, made on first use (a big machine's addresses are printed and
    #: looked up again and again); not part of the value.
    _text: str = field(default="", init=False, repr=False, compare=False)
    _hash: int = field(default=-1, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        h = self._hash
        if h == -1:  # the same value the dataclass hash gives: sets and dicts order as before
            h = hash((self.domain, self.bus, self.device, self.function))
            object.__setattr__(self, "_hash", h)
        return h

    def __post_init__(self) -> None:
        if not 0 <= self.domain <= 0xFFFFFFFF:
            raise AddressError(f"domain {self.domain:#x} out of range")
        if not 0 <= self.bus <= 0xFF:
            raise AddressError(f"bus {self.bus:#x} out of range")
        if not 0 <= self.device <= 0x1F:
            raise AddressError(f"device {self.device:#x} out of range (0-1f)")
        if not 0 <= self.function <= 7:
            raise AddressError(f"function {self.function} out of range (0-7)")

    @classmethod
    def parse(cls, text: str) -> "Address":
        """Parse ``[dddd:]bb:dd.f``; a missing domain means domain 0."""
        # Fast path for the canonical sysfs form "dddd:bb:dd.f" (a load parses ~4 per device).
        if (
            len(text) == 12 and text[4] == ":" and text[7] == ":" and text[10] == "."
            and text[11] in "01234567" and _HEX.issuperset(text[0:4] + text[5:7] + text[8:10])
        ):
            dev = int(text[8:10], 16)
            if dev <= 0x1F:
                return cls(int(text[0:4], 16), int(text[5:7], 16), dev, int(text[11]))
        m = _BDF_RE.match(text.strip())
        if not m:
            raise AddressError(f"not a PCI address: {text!r} (expected [dddd:]bb:dd.f)")
        dom = m.group("domain")
        return cls(
            int(dom, 16) if dom else 0,
            int(m.group("bus"), 16),
            int(m.group("dev"), 16),
            int(m.group("fn")),
        )

    @classmethod
    def from_rid(cls, domain: int, bus: int, devfn: int) -> "Address":
        return cls(domain, bus, devfn >> 3, devfn & 7)

    @property
    def devfn(self) -> int:
        return (self.device << 3) | self.function

    @property
    def slot(self) -> tuple[int, int, int]:
        """(domain, bus, device): the functions of one slot share it."""
        return (self.domain, self.bus, self.device)

    def _key(self) -> tuple[int, int, int, int]:
        return (self.domain, self.bus, self.device, self.function)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Address):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        text = self._text
        if not text:
            text = f"{self.domain:04x}:{self.bus:02x}:{self.device:02x}.{self.function:x}"
            object.__setattr__(self, "_text", text)
        return text

    def __repr__(self) -> str:
        return f"Address('{self}')"


def is_address(text: str) -> bool:
    return bool(_BDF_RE.match(text.strip()))
