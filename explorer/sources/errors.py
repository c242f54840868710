"""The one error type every source raises for bad input."""

from __future__ import annotations

from ..model.errors import LocatedError


class SourceError(LocatedError):
    """Bad or unreadable input; str() is one line naming file, line, column and field."""
