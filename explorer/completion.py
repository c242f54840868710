"""Shell completion: the scripts ``pci-explorer completion bash|zsh|fish`` prints, and the
candidates the hidden ``pci-explorer __complete`` helper gives them.

The scripts stay small: each asks the helper, which reads the same argparse parser the
command runs with, so subcommands and options never drift from the real ones. It
completes subcommands, options, the choices of an option, ``builtin:NAME`` sources, and
device addresses (BDFs) once a SOURCE is on the line. ``__files__`` in the answer asks the
shell to add file names.
"""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Iterable

from .cli_parser import subparsers_action

FILES = "__files__"

#: Options whose value is a device address of the SOURCE on the line.
BDF_OPTIONS = {"--port", "--sriov", "--assume-acs", "--vfio-ids"}
#: Options whose value is a file name (or a SOURCE, which is usually one).
FILE_OPTIONS = {"-o", "--output", "--plan", "--root", "--out", "--source", "--from"}
#: Positionals that are a SOURCE.
SOURCE_DESTS = {"source"}


def words_from_line(line: str, point: int | None) -> tuple[list[str], int]:
    """Bash's COMP_LINE up to COMP_POINT as words (colons kept inside words), and the index
    of the word being completed (an empty last word when the line ends in a space)."""
    text = line if point is None else line[:point]
    try:
        words = shlex.split(text)
    except ValueError:  # an open quote: complete the unquoted rest
        words = shlex.split(text + '"') if text.count('"') % 2 else text.split()
    if not text or text[-1].isspace():
        words.append("")
    return words, len(words) - 1


def _walk(parser: argparse.ArgumentParser, words: list[str]) -> tuple[argparse.ArgumentParser, list[str], list[str]]:
    """(innermost parser, its positional words so far, the subcommand path) for ``words``."""
    path: list[str] = []
    positionals: list[str] = []
    skip = False
    cur = parser
    for w in words:
        if skip:
            skip = False
            continue
        if w.startswith("-"):
            act = _option(cur, w.split("=", 1)[0])
            if act is not None and act.nargs != 0 and "=" not in w:
                skip = True
            continue
        sub = subparsers_action(cur)
        if sub is not None and not positionals and w in sub.choices:
            cur = sub.choices[w]
            path.append(w)
            continue
        positionals.append(w)
    return cur, positionals, path


def _option(parser: argparse.ArgumentParser, opt: str) -> argparse.Action | None:
    for a in parser._actions:
        if opt in a.option_strings:
            return a
    return None


def _positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


def _bdfs(source: str | None) -> list[str]:
    from .sources import load_source

    if source is None:
        try:
            return sorted(os.listdir("/sys/bus/pci/devices"))
        except OSError:
            return []
    try:
        t = load_source(source)
    except Exception:  # noqa: BLE001 - completion must never fail loudly
        return []
    return [fn.bdf for fn in t]


def _sources() -> list[str]:
    from .sources import builtin_names

    return [f"builtin:{n}" for n in builtin_names()]


def candidates(parser: argparse.ArgumentParser, words: list[str], cword: int, *, shell: str = "bash") -> list[str]:
    """What may stand at ``words[cword]`` (``words[0]`` is the program)."""
    words = list(words[: cword + 1]) or [""]
    cur = words[-1] if len(words) > 1 else ""
    before = words[1:-1] if len(words) > 1 else []
    p, positionals, path = _walk(parser, before)
    out: list[str] = []
    prev = before[-1] if before else ""
    prev_act = _option(p, prev) if prev.startswith("-") else None
    source = _source_on_line(p, positionals, before)
    if prev_act is not None and prev_act.nargs != 0:
        if prev_act.choices:
            out = [str(c) for c in prev_act.choices]
        elif prev in BDF_OPTIONS:
            out = _bdfs(source)
        elif prev in FILE_OPTIONS:
            out = (_sources() if prev in ("--source", "--from") else []) + [FILES]
        return _filter(out, cur, shell)
    if cur.startswith("-"):
        return _filter([s for a in p._actions if a.help is not argparse.SUPPRESS for s in a.option_strings], cur, shell)
    sub = subparsers_action(p)
    if sub is not None and not positionals:
        hidden = {n for n in sub.choices if n.startswith("_")}
        return _filter([n for n in sub.choices if n not in hidden], cur, shell)
    pos = _positionals(p)
    if len(positionals) < len(pos):
        act = pos[len(positionals)]
        if act.choices:
            out = [str(c) for c in act.choices]
        elif act.dest in SOURCE_DESTS:
            out = _sources() + [FILES]
            if path and path[-1] == "show" and positionals == []:
                out = out + _bdfs(None)  # `show BDF` on this machine
        elif act.dest == "bdf":
            out = _bdfs(source)
        elif act.dest == "name" and path == ["walkthrough"]:
            from .ui.walkthrough import walkthrough_names

            out = list(walkthrough_names())
        elif act.dest == "plan":
            out = [FILES]
    return _filter(out, cur, shell)


def _source_on_line(p: argparse.ArgumentParser, positionals: list[str], before: list[str]) -> str | None:
    for i, w in enumerate(before):
        if w in ("--source",) and i + 1 < len(before):
            return before[i + 1]
    pos = _positionals(p)
    for act, value in zip(pos, positionals):
        if act.dest in SOURCE_DESTS:
            return value
    return None


def _filter(items: Iterable[str], cur: str, shell: str) -> list[str]:
    out = []
    for it in items:
        if it == FILES:
            out.append(it)
            continue
        if not it.startswith(cur):
            continue
        if shell == "bash" and ":" in cur:
            # Bash splits words at ':' (COMP_WORDBREAKS): it replaces only what follows the last one.
            it = it[cur.rfind(":") + 1 :]
        out.append(it)
    return out


# ---- the scripts ------------------------------------------------------------------------------

BASH = r'''# bash completion for pci-explorer; load with: source <(pci-explorer completion bash)
_pci_explorer() {
    local cur="${COMP_WORDS[COMP_CWORD]}" line files=0
    local IFS=$'\n'
    COMPREPLY=()
    for line in $(pci-explorer __complete --shell bash --line "$COMP_LINE" --point "$COMP_POINT" 2>/dev/null); do
        if [[ $line == __files__ ]]; then
            files=1
        else
            COMPREPLY+=("$line")
        fi
    done
    if (( files )); then
        [[ $cur == : ]] && cur=""
        mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -f -- "$cur")
    fi
    return 0
}
complete -o filenames -F _pci_explorer pci-explorer
'''

ZSH = r'''#compdef pci-explorer
# zsh completion for pci-explorer; load with: source <(pci-explorer completion zsh)
_pci_explorer() {
    local -a cands
    local c files=0
    cands=("${(@f)$(pci-explorer __complete --shell zsh --cword $((CURRENT - 1)) -- "${words[@]}" 2>/dev/null)}")
    local -a plain
    for c in $cands; do
        if [[ $c == __files__ ]]; then files=1; elif [[ -n $c ]]; then plain+=("$c"); fi
    done
    (( ${#plain} )) && compadd -- "${plain[@]}"
    (( files )) && _files
    return 0
}
if (( $+functions[compdef] )); then
    compdef _pci_explorer pci-explorer
fi
'''

FISH = r'''# fish completion for pci-explorer; load with: pci-explorer completion fish | source
function __pci_explorer_complete
    set -l tokens (commandline -opc) (commandline -ct)
    set -l n (math (count $tokens) - 1)
    for c in (pci-explorer __complete --shell fish --cword $n -- $tokens 2>/dev/null)
        if test "$c" = __files__
            __fish_complete_path (commandline -ct)
        else
            echo $c
        end
    end
end
complete -c pci-explorer -f -a '(__pci_explorer_complete)'
'''


def script(shell: str) -> str:
    return {"bash": BASH, "zsh": ZSH, "fish": FISH}[shell]


__all__ = ["FILES", "candidates", "script", "words_from_line"]
