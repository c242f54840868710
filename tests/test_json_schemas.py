"""Every --json output is one envelope ({"format": "pci-explorer/<kind>/<version>", "source", ...})
and validates against its published schema, docs/schema/<kind>.schema.json (docs/json.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from explorer.cli import build_parser, main
from explorer.cli_parser import subparsers_action
from explorer.export.envelope import VERSIONS, envelope, format_id

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "docs" / "schema"
QEMU = REPO / "tests" / "fixtures" / "qemu"


def _registry():
    from referencing import Registry, Resource

    resources = []
    for p in SCHEMAS.glob("*.schema.json"):
        doc = json.loads(p.read_text())
        resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


REGISTRY = _registry()


def validate(doc: dict) -> str:
    """Validate ``doc`` against the schema its format names; return the kind."""
    m = re.fullmatch(r"pci-explorer/([a-z-]+)/(\d+)", doc.get("format", ""))
    assert m, f"no envelope format: {doc.get('format')!r}"
    kind, version = m.group(1), int(m.group(2))
    assert VERSIONS[kind] == version
    assert isinstance(doc.get("source"), dict) and "kind" in doc["source"] and "location" in doc["source"]
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    jsonschema.Draft202012Validator(schema, registry=REGISTRY).validate(doc)
    return kind


def run_json(capsys, *argv: str, ok=(0, 1)) -> dict:
    rc = main(list(argv))
    out = capsys.readouterr().out
    assert rc in ok, (argv, rc)
    return json.loads(out)


def test_every_kind_has_a_schema_and_a_section():
    text = (REPO / "docs" / "json.md").read_text()
    for kind in VERSIONS:
        schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["properties"]["format"] == {"const": format_id(kind)}
        assert f"`{format_id(kind)}`" in text, kind
        assert f"schema/{kind}.schema.json" in text, kind


def test_format_strings_live_only_in_the_envelope_module():
    """One place: no other module spells a format string."""
    for p in (REPO / "explorer").rglob("*.py"):
        if p.name == "envelope.py":
            continue
        for line in p.read_text().splitlines():
            code = line.split("#", 1)[0]
            assert not re.search(r"[\"']pci-explorer/[a-z-]+/\d", code), f"{p}: {line.strip()}"


def test_envelope_refuses_a_payload_that_claims_the_source_or_another_format():
    with pytest.raises(ValueError):
        envelope("tree", None, {"source": "x"})
    with pytest.raises(ValueError):
        envelope("tree", None, {"format": format_id("groups")})


SOURCES = ["builtin:tb4-laptop-egpu", "builtin:amd-laptop-shared-gpu-group", "builtin:vmd-nvme-laptop",
           "builtin:sriov-nic-server", "builtin:intel-ich10-desktop", "builtin:dsa-siov"]


@pytest.mark.parametrize("source", SOURCES)
def test_topology_outputs_validate(source, capsys):
    kinds = set()
    tree = run_json(capsys, "tree", source, "--json")
    kinds.add(validate(tree))
    for d in tree["devices"][:3] + tree["devices"][-2:]:
        kinds.add(validate(run_json(capsys, "show", source, d["bdf"], "--json")))
    for extra in ([], ["--predict"]):
        kinds.add(validate(run_json(capsys, "groups", source, *extra, "--json")))
    rc = main(["groups", source, "--compare", "--json"])
    out = capsys.readouterr().out
    if rc != 2:
        doc = json.loads(out)
        assert doc["view"] == "compare" and isinstance(doc["equal"], bool)
        validate(doc)
    kinds.add(validate(run_json(capsys, "resources", source, "--json")))
    kinds.add(validate(run_json(capsys, "trust", source, "--json")))
    assert kinds == {"tree", "device", "groups", "resources", "trust"}


def test_capture_outputs_validate(unpacked, capsys):
    """A real kernel's sysfs capture: tree, groups (reported), trust, resources and a hot-add fit."""
    root = str(unpacked("hotplug-acpi-default-1g.pre"))
    for argv in (["tree", root], ["groups", root], ["groups", root, "--compare"], ["trust", root], ["resources", root]):
        validate(run_json(capsys, *argv, "--json"))
    port = json.loads((QEMU / "hotplug-acpi-default-1g.outcome.json").read_text())["port"]
    doc = run_json(capsys, "fit", root, "--port", port, "--bar", "pref64:1G", "--hotplug", "acpi", "--json")
    assert validate(doc) == "fit"


def test_sriov_fit_validates(capsys):
    tree = run_json(capsys, "tree", "builtin:sriov-nic-server", "--json")
    pf = next(d["bdf"] for d in tree["devices"] if d["caps"]["sriov"] and not d["is_virtfn"])
    doc = run_json(capsys, "fit", "builtin:sriov-nic-server", "--sriov", pf, "--vfs", "2", "--json")
    assert validate(doc) == "sriov-fit"


def test_plan_outputs_validate(tmp_path, capsys):
    plan = str(tmp_path / "gpu.yaml")
    assert main(["plan", "new", "builtin:tb4-laptop-egpu", "-o", plan]) == 0
    assert main(["plan", "add", plan, "assign", "0000:04:00.0", "--vm", "win", "--group"]) == 0
    capsys.readouterr()
    assert validate(run_json(capsys, "plan", "show", plan, "--json", ok=(0,))) == "plan"
    assert validate(run_json(capsys, "check", plan, "--json", ok=(0,))) == "check"
    assert validate(run_json(capsys, "export", plan, "--to", "json", ok=(0,))) == "plan-export"


def _has_command(name: str) -> bool:
    return name in subparsers_action(build_parser()).choices


def test_boot_output_validates(unpacked, capsys):
    if not _has_command("boot"):
        pytest.skip("this build has no boot command (its schema is published: docs/schema/boot.schema.json)")
    root = str(unpacked("base"))
    assert validate(run_json(capsys, "boot", root, "--json")) == "boot"


def test_diff_output_validates(unpacked, capsys):
    if not _has_command("diff"):
        pytest.skip("this build has no diff command (its schema is published: docs/schema/diff.schema.json)")
    old = str(unpacked("hotplug-acpi-default-1g.pre"))
    new = str(unpacked("hotplug-acpi-default-1g"))
    assert validate(run_json(capsys, "diff", old, new, "--json")) == "diff"
