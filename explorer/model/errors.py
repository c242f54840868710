"""The one-line error every input reader raises: ``file:line:col [field]: message``."""

from __future__ import annotations

from .safe_text import one_line


class LocatedError(Exception):
    """Bad input, located as precisely as the reader can: file, line, column and field."""

    #: Shown when the error has no file (text given directly).
    default_path = "<input>"

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
        where = self.path or self.default_path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        fld = f" [{self.field}]" if self.field else ""
        # One line, whatever the file name or the message quotes from the input.
        text = one_line(f"{where}{fld}: {self.message}")
        return text if len(text) <= 2000 else text[:1990] + " …"
