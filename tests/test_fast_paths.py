"""The fast paths give the plain paths' results: JSON written by explorer.jsonout (C encoder,
streamed lists) against json.dumps of the whole document, and the commands' --json output
against the documents built the plain way. No timings here (those live in bench/)."""

from __future__ import annotations

import io
import os
import json

import pytest

from explorer import jsonout
from explorer.cli import main
from explorer.export.groups import _reported_label, groups_json
from explorer.export.resources import report_json
from explorer.export.topology import topology_json
from explorer.kernel.groups import predict_groups
from explorer.kernel.resources import account
from explorer.sources import load_source

CAPTURES = ["base", "switch", "sriov-nvme"]


def _documents(root: str) -> dict[str, object]:
    t = load_source(root)
    pred = predict_groups(t)
    return {
        "tree": topology_json(t),
        "groups": groups_json(t, pred, which="reported" if t.reported_groups else "predicted"),
        "resources": report_json(account(t)),
    }


@pytest.mark.parametrize("name", CAPTURES)
def test_encodings_equal_json_dumps(unpacked, name):
    for kind, doc in _documents(str(unpacked(name))).items():
        assert jsonout.dumps(doc, pretty=True) == json.dumps(doc, indent=2), kind
        compact = jsonout.dumps(doc)
        assert compact == json.dumps(doc, separators=(",", ":")), kind
        assert json.loads(compact) == doc
        assert "\n" not in compact


def test_compact_encoder_writes_what_json_dumps_writes():
    """orjson where it gives json.dumps's bytes, the json module where it would not."""
    jsonout.compact([])
    assert jsonout._orjson, "orjson is a dependency: the fast encoder is not in use"
    every_ascii = "".join(chr(i) for i in range(128))
    names = ["Intel Corporation", "Realtek Semiconductor Co., Ltd.", "Müller GmbH", "\x1b]0;title\x07", "\x9b2J", "\u2028"]
    docs = [
        {"s": every_ascii, every_ascii: [every_ascii]},
        {"names": names, "nested": [{"a": [1, None, True, False, -5, 2**63, 2**64 - 1]}]},
        {"big": 2**64, "neg": -(2**63) - 1},  # beyond 64 bits: orjson refuses, json writes
        {1: "int key", "x": (1, 2)},  # a key not a string: orjson refuses, json converts
        [], {}, "", 0, None,
    ]
    for doc in docs:
        assert jsonout.compact(doc) == json.dumps(doc, separators=(",", ":")), doc
    for name in names:
        assert jsonout.compact([name]) == json.dumps([name], separators=(",", ":"))


@pytest.mark.parametrize("name", CAPTURES)
def test_streamed_tree_document_is_byte_identical(unpacked, name, monkeypatch):
    t = load_source(str(unpacked(name)))
    whole = topology_json(t)
    assert isinstance(whole["devices"], list) and len(whole["devices"]) > 3
    monkeypatch.setattr(jsonout, "BATCH", 2)  # several batches even on a small machine
    for pretty in (False, True):
        buf = io.StringIO()
        jsonout.write_json(topology_json(t, stream=True), buf, pretty=pretty)
        plain = json.dumps(whole, indent=2) if pretty else json.dumps(whole, separators=(",", ":"))
        assert buf.getvalue() == plain + "\n"


@pytest.mark.parametrize("name", CAPTURES)
def test_streamed_groups_document_is_byte_identical(unpacked, name, monkeypatch):
    t = load_source(str(unpacked(name)))
    pred = predict_groups(t)
    for which in ("reported", "predicted"):
        whole = groups_json(t, pred, which=which)
        assert isinstance(whole["groups"], list) and whole["groups"]
        monkeypatch.setattr(jsonout, "BATCH", 2)
        for pretty in (False, True):
            buf = io.StringIO()
            jsonout.write_json(groups_json(t, pred, which=which, stream=True), buf, pretty=pretty)
            plain = json.dumps(whole, indent=2) if pretty else json.dumps(whole, separators=(",", ":"))
            assert buf.getvalue() == plain + "\n"


def test_streaming_edge_cases():
    cases = [
        {"a": iter([]), "b": 1},
        {"a": {"b": iter([{"x": [1, 2]}, {"y": {}}]), "c": []}, "d": "é\n\"q\""},
        iter([1, [2, 3], {"k": None}]),
        {"n": iter(range(7)), "m": iter([[], {}])},
    ]
    plain = [
        {"a": [], "b": 1},
        {"a": {"b": [{"x": [1, 2]}, {"y": {}}], "c": []}, "d": "é\n\"q\""},
        [1, [2, 3], {"k": None}],
        {"n": list(range(7)), "m": [[], {}]},
    ]
    for streamed, want in zip(cases, plain):
        text = jsonout.dumps(streamed, pretty=True)
        assert text == json.dumps(want, indent=2)
    for streamed, want in zip(
        [{"a": iter([]), "b": 1}, {"n": iter(range(7)), "m": iter([[], {}])}],
        [{"a": [], "b": 1}, {"n": list(range(7)), "m": [[], {}]}],
    ):
        assert jsonout.dumps(streamed) == json.dumps(want, separators=(",", ":"))


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_indent_on_a_terminal_compact_on_a_pipe():
    doc = {"a": [1, {"b": 2}]}
    tty, pipe = _Tty(), io.StringIO()
    jsonout.write_json(doc, tty)
    jsonout.write_json(doc, pipe)
    assert tty.getvalue() == json.dumps(doc, indent=2) + "\n"
    assert pipe.getvalue() == '{"a":[1,{"b":2}]}\n'
    forced = io.StringIO()
    jsonout.write_json(doc, forced, pretty=True)
    assert forced.getvalue() == tty.getvalue()


@pytest.mark.parametrize(
    "argv",
    [["tree", "{root}", "--json"], ["groups", "{root}", "--json"], ["resources", "{root}", "--json"],
     ["show", "{root}", "01:00.0", "--json"]],
)
def test_cli_json_compact_and_pretty(unpacked, capsys, argv):
    root = str(unpacked("sriov-nvme"))
    args = [a.format(root=root) for a in argv]
    assert main(args) == 0
    compact = capsys.readouterr().out
    assert main(args + ["--pretty"]) == 0
    pretty = capsys.readouterr().out
    doc = json.loads(compact)
    assert json.loads(pretty) == doc
    assert compact.count("\n") == 1 and compact.endswith("\n")
    # --pretty prints exactly what json.dump(doc, indent=2) printed before the fast writer
    assert pretty == json.dumps(doc, indent=2) + "\n"


@pytest.mark.parametrize("name", CAPTURES)
def test_reported_labels_built_once_equal_per_group(unpacked, name):
    t = load_source(str(unpacked(name)))
    pred = predict_groups(t)
    doc = groups_json(t, pred, which="predicted")
    assert t.reported_groups
    for row in doc["predicted"]:
        members = tuple(pred.groups[row["label"]])
        assert row["reported_as"] == _reported_label(t, members)


def test_group_types_read_through_one_descriptor(unpacked):
    from conftest import capture_names

    from explorer.sources.sysfs import _read_group_types, _Root

    seen = 0
    for name in capture_names():
        r = _Root(unpacked(name))
        base = r.abs("sys/kernel/iommu_groups")
        labels = sorted(os.listdir(base)) if os.path.isdir(base) else []
        plain = [(g, t) for g in labels if (t := r.read_text(f"sys/kernel/iommu_groups/{g}/type"))]
        assert _read_group_types(r, labels) == plain, name
        seen += len(plain)
    assert seen > 0


def _same_db(a, b) -> None:
    assert a.vendors == b.vendors and a.classes == b.classes
    # lookups first (they parse one vendor each), then everything
    for key, name in list(a.devices.items())[::97]:
        assert b.devices.get(key) == name and key in b.devices and b.devices[key] == name
    for key, name in list(a.subsystems.items())[::97]:
        assert b.subsystems.get(key) == name
    assert b.devices.get((0xFFFFF, 1)) is None and (0x1234, 0xFFFFF) not in b.devices
    assert dict(b.devices.items()) == a.devices and dict(b.subsystems.items()) == a.subsystems


def test_indexed_pci_ids_equal_the_full_parse():
    from explorer.model import names

    text = (
        "# comment\n1234  Vendor A\n\t0001  Dev one\n\t\t1234 0009  Sub\n\t\tnothex  Bad\n"
        "\t\t1234 0009  Sub, the later line\n\t\t1234 000a  Sub two\n\t0002  Dev two\n\t\t1234 0001  Sub of two\n"
        "zzzz  not hex: its lines go to the vendor before\n\t0003  Dev three\n"
        "abcd  Vendor B\n\t00ff  B dev\n1234  Vendor A again\n\t0004  Dev four\n"
        "C 01  Mass storage controller\n\t06  SATA controller\n\t\t01  AHCI 1.0\n"
        "C 02  Network controller\n\t00  Ethernet controller\n"
    )
    _same_db(names.PciIds.parse(text), names.PciIds.parse_indexed(text))
    # A subsystem asked for before anything of its vendor; the later of two equal lines wins.
    lazy = names.PciIds.parse_indexed(text)
    assert lazy.subsystems.get((0x1234, 0x0001, 0x1234, 0x0009)) == "Sub, the later line"
    assert lazy.subsystems[(0x1234, 0x0002, 0x1234, 0x0001)] == "Sub of two"
    assert (0x1234, 0x0001, 0x1234, 0x000A) in lazy.subsystems
    assert dict(lazy.subsystems.items()) == names.PciIds.parse(text).subsystems
    path = names.find_pci_ids()
    if path:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        _same_db(names.PciIds.parse(text), names.PciIds.parse_indexed(text))


def test_long_device_lists_read_in_chunks_equal_the_whole(unpacked, monkeypatch, tmp_path):
    """A plan's device list in the form save writes is read DEVICE_CHUNK lines at a time
    (bounded memory on a 100,000-function machine): the same plan, and for a bad line the
    same one-line error (line and field) as reading the whole document."""
    from explorer.plan import add_action, new_plan, save_plan
    from explorer.plan import planfile
    from explorer.plan.planfile import PlanFileError, parse_plan

    t = load_source(str(unpacked("switch")))
    dev = next(fn for fn in t if fn.class_code is not None and fn.class_code >> 16 == 0x02)
    path = tmp_path / "plan.yaml"
    save_plan(add_action(new_plan(t, "switch"), ["assign", str(dev.address), "--vm", "vm1"]), path)
    text = path.read_text()
    whole = parse_plan(text, str(path))
    assert len(whole.devices) > 7
    monkeypatch.setattr(planfile, "DEVICE_CHUNK", 3)
    assert planfile._split_devices(text) is not None  # the chunked path is taken
    again = parse_plan(text, str(path))
    assert again == whole and again.action_lines == whole.action_lines
    lines = text.split("\n")
    bad = lines.index("devices:") + 8  # a device line in the third chunk
    broken = "\n".join(lines[:bad] + [lines[bad].replace('id: "', 'id: "zz')] + lines[bad + 1:])
    monkeypatch.setattr(planfile, "DEVICE_CHUNK", 10**6)
    with pytest.raises(PlanFileError) as plain:
        parse_plan(broken, str(path))
    monkeypatch.setattr(planfile, "DEVICE_CHUNK", 3)
    with pytest.raises(PlanFileError) as chunked:
        parse_plan(broken, str(path))
    assert str(chunked.value) == str(plain.value) and f":{bad + 1}:" in str(plain.value)


def test_memoized_config_decode_equals_the_plain_decode(unpacked, monkeypatch):
    """decode_config with a load's memo (whole spaces, the last one, capability regions)
    gives the facts a fresh decode gives, for every config space of every capture, each
    decoded twice in a row and again later, with a memo small enough to start over."""
    from dataclasses import asdict

    from conftest import capture_names

    from explorer.sources import config as cfg

    spaces = []
    for name in capture_names():
        for path in sorted(unpacked(name).glob("sys/devices/**/config")):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                spaces += [(data, path.stat().st_size), (data[:256], 256), (data[:64], None)]
    assert len(spaces) > 100
    order = spaces + [s for s in spaces for _ in (0, 1)] + spaces[::-1]
    for bound in (cfg.MEMO_MAX, 5):
        monkeypatch.setattr(cfg, "MEMO_MAX", bound)
        memo: dict = {}
        for data, size in order:
            assert asdict(cfg.decode_config(data, size, memo)) == asdict(cfg.decode_config(data, size)), (len(data), size)
        assert len(memo) <= bound + 1  # the entries and the last space


def test_scrub_text_finds_a_control_character_in_any_field(unpacked):
    """scrub_text looks at each distinct value once before it copies anything: a clean
    topology comes back as it is, and a control character in any text field of any one
    function (or its slot or link) is escaped."""
    from dataclasses import replace

    from explorer.model import present
    from explorer.model.safe_text import one_line
    from explorer.sources.consistency import scrub_text

    t = load_source(str(unpacked("switch")))
    assert scrub_text(t) is t
    fns = list(t)
    bad = "x\x1b[31my\x07"
    slotted = next(f for f in fns if present(f.slot))
    linked = next(f for f in fns if present(f.link))
    cases = [(fns[-1], {name: bad}) for name in ("vendor_name", "device_name", "subsystem_name", "class_name",
                                                  "driver", "driver_override", "iommu_group")]
    cases += [(fns[0], {"reset_methods": ("flr", bad)}),
              (slotted, {"slot": replace(slotted.slot, physical_slot=bad)}),
              (linked, {"link": replace(linked.link, current_speed=bad)}),
              (linked, {"link": replace(linked.link, max_speed=bad)})]
    for fn, change in cases:
        dirty = type(t).build([replace(fn, **change) if f is fn else f for f in fns], t.host_bridges, t.source, t.mdev)
        clean = scrub_text(dirty).functions[fn.address]
        (name, value), = change.items()
        got = getattr(clean, name)
        if name == "reset_methods":
            assert got == ("flr", one_line(bad))
        elif name in ("slot", "link"):
            assert one_line(bad) in (got.physical_slot if name == "slot" else (got.current_speed, got.max_speed)), name
        else:
            assert got == one_line(bad), name
        assert one_line(bad) != bad


def test_config_read_whole_gives_the_size_fstat_gives(tmp_path):
    """A config space read whole (256 bytes or more) is taken at its length without fstat;
    less asks fstat; what is not a regular file is not config space; too big is refused."""
    from explorer.sources.errors import SourceError
    from explorer.sources.sysfs import CONFIG_CAP, _DevDir, read_file_sized

    for size in (64, 128, 255, 256, 300, 4096):
        dev = tmp_path / f"d{size}"
        dev.mkdir()
        (dev / "config").write_bytes(bytes(range(256)) * 16 if size == 4096 else bytes(size))
        d = _DevDir(str(dev))
        try:
            got = d.config()
            assert got == read_file_sized("config", CONFIG_CAP, dir_fd=d.fd), size
            assert got is not None and got[1] == size and len(got[0]) == size
        finally:
            d.close()
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "config")
    d = _DevDir(str(fifo))
    try:
        assert d.config() is None
    finally:
        d.close()
    big = tmp_path / "big"
    big.mkdir()
    (big / "config").write_bytes(bytes(CONFIG_CAP + 1))
    d = _DevDir(str(big))
    try:
        with pytest.raises(SourceError, match="more than"):
            d.config()
    finally:
        d.close()


def test_collector_paused_and_restored_as_it_was():
    """gcpause.paused() turns the collector off inside, nested or not, and leaves it as it
    found it, also when the block raises."""
    import gc

    from explorer import gcpause

    was = gc.isenabled()
    try:
        gc.enable()
        with gcpause.paused():
            assert not gc.isenabled()
            with gcpause.paused():
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert gc.isenabled()
        with pytest.raises(KeyError):
            with gcpause.paused():
                raise KeyError("x")
        assert gc.isenabled()
        gc.disable()
        with gcpause.paused():
            pass
        assert not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
