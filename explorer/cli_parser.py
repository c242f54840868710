"""argparse, with the errors a new user needs: the usage of the subcommand that was mistyped
(not the top-level one) and "did you mean ...?" for a mistyped option or subcommand."""

from __future__ import annotations

import argparse
import re
from typing import Any, Sequence

from .model.safe_text import one_line

_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


def suggest(word: str, candidates: Sequence[str]) -> str | None:
    """The closest candidate to a mistyped ``word``, if one is close enough."""
    if not word:
        return None
    # A prefix typo (--comp for --compare) and a letter swap (--compre) both count.
    pre = [c for c in candidates if c.startswith(word) and len(word) >= 3]
    if len(pre) == 1:
        return pre[0]
    import difflib  # only for a mistyped word

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors name the subcommand and suggest a correction."""

    def error(self, message: str) -> Any:  # noqa: D401 - argparse's signature
        m = _INVALID_CHOICE.search(message)
        if m:
            choices = [c for c in re.findall(r"'([^']*)'", m.group(2)) if not c.startswith("_")]
            message = f"{message.split(':', 1)[0]}: unknown {m.group(1)!r} (choose from {', '.join(choices)})"
            guess = suggest(m.group(1), choices)
            if guess:
                message += f"; did you mean {guess!r}?"
        # One line (issue: errors are one line, exit 2); the usage is one --help away.
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None) -> argparse.Namespace:  # type: ignore[override]
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            sub = chosen_parser(self, ns)
            opts = option_strings(sub)
            first = extras[0]
            msg = f"unrecognized argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}"
            if first.startswith("-"):
                guess = suggest(first.split("=", 1)[0], opts)
                if guess:
                    msg += f"; did you mean {guess}?"
            sub.error(msg)
        return ns


def subparsers_action(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return a
    return None


def chosen_parser(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost (sub)parser the parsed arguments selected."""
    act = subparsers_action(parser)
    if act is None:
        return parser
    name = getattr(ns, act.dest, None)
    sub = act.choices.get(name) if name else None
    return chosen_parser(sub, ns) if sub is not None else parser


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [s for a in parser._actions for s in a.option_strings if a.help is not argparse.SUPPRESS]


__all__ = ["Parser", "chosen_parser", "option_strings", "subparsers_action", "suggest"]
