"""The one error type every source raises for bad input."""

from __future__ import annotations


class SourceError(Exception):
    """Bad or unreadable input; str() is one line naming file, line, column and field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.column = column
        self.field = field

    def __str__(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        fld = f" [{self.field}]" if self.field else ""
        return f"{where}{fld}: {self.message}"
