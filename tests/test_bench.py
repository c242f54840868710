"""bench/run at a tiny size, once: the benchmark must keep working (no timing is asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(1200)  # whole processes on a shared machine: about a minute, more under load
def test_bench_runs_at_a_tiny_size(tmp_path):
    p = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run"), "--sizes", "200", "--runs", "1", "--cold-runs", "0",
         "--tmpdir", str(tmp_path), "--out", "-"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=1800,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    report = p.stdout
    assert "## 200 functions" in report and "lspci lists 200 functions" in report
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| ([^|]+?) \| (.+)\|$", report, re.M)}
    for command in ("tree", "tree --json", "groups", "groups --json", "resources --json", "check PLAN", "fit"):
        cells = [c.strip() for c in rows[command].split("|")]
        # wall, CPU, peak RSS, then four ratios, each a number
        assert re.fullmatch(r"[\d.]+ m?s", cells[0]) and re.fullmatch(r"[\d.]+ MB", cells[2]), cells
        assert all(re.fullmatch(r"\d+\.\d\d", c) for c in cells[3:7]), cells
    if "app first screen" in rows:  # needs textual, which the project's environment has
        assert re.fullmatch(r"[\d.]+ m?s", rows["app first screen"].split("|")[0].strip())
    assert "| load_sysfs |" in report
    assert not list(tmp_path.iterdir()), "the tree was not removed"
