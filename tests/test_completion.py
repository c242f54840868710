"""Shell completion: the bash script in real bash (complete -p, COMP_WORDS/COMP_LINE as bash sets
them), and the candidates the zsh and fish scripts get from the same helper."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.cli import build_parser, main
from explorer.cli_parser import subparsers_action
from explorer.completion import FILES, candidates, script
from explorer.sources import builtin_names, load_source

REPO = Path(__file__).resolve().parent.parent
BASH = shutil.which("bash")


def bash_complete(tmp_path: Path, lines: list[str]) -> tuple[str, list[list[str]]]:
    """Source the generated script in bash, then complete each line as bash would: COMP_WORDS
    split at blanks and at ':' (COMP_WORDBREAKS), COMP_CWORD the last word, COMP_LINE/POINT."""
    scr = tmp_path / "pci-explorer.bash"
    scr.write_text(script("bash"))
    body = [
        f"pci-explorer() {{ PYTHONPATH={REPO} {sys.executable} -m explorer \"$@\"; }}",
        f"source {scr}",
        "complete -p pci-explorer",
    ]
    for line in lines:
        words = re.findall(r"[^\s:]+|:", line) + ([""] if line.endswith(" ") else [])
        quoted = " ".join("'" + w + "'" for w in words)
        body += [
            f"COMP_WORDS=({quoted}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))",
            f"COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}",
            "_pci_explorer; printf '%s\\n' \"${COMPREPLY[@]}\"; echo '--'",
        ]
    res = subprocess.run([BASH, "--norc", "--noprofile", "-c", "\n".join(body)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    head, _, rest = res.stdout.partition("\n")
    chunks = rest.split("--\n")[: len(lines)]
    return head, [[x for x in c.splitlines() if x] for c in chunks]


@pytest.mark.skipif(BASH is None, reason="bash missing")
def test_bash_completion_in_real_bash(tmp_path):
    t = load_source("builtin:tb4-laptop-egpu")
    gpu_bus = [fn.bdf for fn in t if fn.address.bus == 4]
    lines = [
        "pci-explorer gr",
        "pci-explorer groups --com",
        "pci-explorer groups builtin:tb4-laptop-egpu --vfio",
        "pci-explorer tree builtin:tb4",
        "pci-explorer show builtin:tb4-laptop-egpu 0000:04",
        "pci-explorer export plan.yaml --to li",
        "pci-explorer completion ",
        "pci-explorer trus",
    ]
    head, got = bash_complete(tmp_path, lines)
    assert head == "complete -o filenames -F _pci_explorer pci-explorer"
    assert got[0] == ["groups"]
    assert got[1] == ["--compare"]
    assert got[2] == ["--vfio-ids"]
    # bash replaces only what follows the last ':' of the word
    assert got[3] == ["tb4-laptop-egpu"]
    assert sorted(got[4]) == sorted(b[len("0000:"):] for b in gpu_bus)
    assert got[5] == ["libvirt"]
    assert got[6] == ["bash", "zsh", "fish"]
    assert got[7] == ["trust"]


def test_helper_candidates_for_zsh_and_fish():
    p = build_parser()
    visible = [n for n in subparsers_action(p).choices if not n.startswith("_")]
    assert candidates(p, ["pci-explorer", ""], 1, shell="zsh") == visible
    opts = candidates(p, ["pci-explorer", "fit", "-"], 2, shell="fish")
    assert {"--port", "--bar", "--sriov", "--vfs", "--json", "--kernel-param"} <= set(opts)
    srcs = candidates(p, ["pci-explorer", "tree", "builtin:"], 2, shell="zsh")
    assert [s for s in srcs if s != FILES] == [f"builtin:{n}" for n in builtin_names()]
    assert FILES in candidates(p, ["pci-explorer", "tree", ""], 2, shell="zsh")
    ports = candidates(p, ["pci-explorer", "fit", "builtin:tb4-laptop-egpu", "--port", "0000:00:07"], 4, shell="zsh")
    assert ports == ["0000:00:07.0", "0000:00:07.2"]
    hotplug = next(a for a in subparsers_action(p).choices["fit"]._actions if "--hotplug" in a.option_strings)
    assert candidates(p, ["pci-explorer", "fit", "--hotplug", ""], 3, shell="zsh") == list(hotplug.choices)
    assert {"native", "acpi"} <= set(hotplug.choices)
    assert candidates(p, ["pci-explorer", "plan", "s"], 2, shell="fish") == ["show"]
    # A source that does not load gives no BDFs, and no error.
    assert candidates(p, ["pci-explorer", "show", "/nonexistent", ""], 3, shell="zsh") == []


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_command_prints_each_script(capsys, shell):
    assert main(["completion", shell]) == 0
    out = capsys.readouterr().out
    assert "pci-explorer __complete --shell " + shell in out
    if shell == "bash" and shutil.which("shellcheck"):
        res = subprocess.run(["shellcheck", "-s", "bash", "-"], input=out, capture_output=True, text=True)
        assert res.returncode == 0, res.stdout
    tool = shutil.which(shell)
    if tool and shell != "fish":
        res = subprocess.run([tool, "-n"], input=out, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr


def test_the_helper_is_not_listed_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "__complete" not in capsys.readouterr().out


@pytest.mark.skipif(BASH is None, reason="bash missing")
def test_bash_completes_file_names_where_a_file_goes(tmp_path):
    (tmp_path / "gpu-plan.yaml").write_text("x")
    _, got = bash_complete(tmp_path, ["pci-explorer check gpu-"])
    assert got[0] == ["gpu-plan.yaml"]
