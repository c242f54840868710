"""The YAML topology source and writer: round trips on real captures, the documented
format, the three-way unknown/absent/present distinction, and one-line errors."""

from __future__ import annotations

import re
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import capture_names
from explorer.model import (
    ABSENT,
    AcsCap,
    Address,
    AerCap,
    AriCap,
    AtsCap,
    Bar,
    BarKind,
    BridgeInfo,
    Capabilities,
    Function,
    HostBridge,
    LinkInfo,
    PasidCap,
    PcieType,
    PriCap,
    RcecCap,
    SlotInfo,
    SourceInfo,
    SriovCap,
    Topology,
    Window,
    WindowKind,
    present,
)
from explorer.sources.errors import SourceError
from explorer.sources.sysfs import has_pci, load_sysfs
from explorer.sources.yaml_topology import (
    dump_yaml,
    load_yaml,
    load_yaml_text,
    looks_like_yaml_topology,
    parse_size,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "topologies" / "example-small.yaml"
DOC = REPO / "docs" / "yaml-format.md"
CAPTURES = capture_names()


def roundtrip(t: Topology) -> Topology:
    return load_yaml_text(dump_yaml(t), "roundtrip.yaml")


def assert_same(a: Topology, b: Topology) -> None:
    for addr, fn in a.functions.items():
        assert b.functions.get(addr) == fn, addr
    assert set(b.functions) == set(a.functions)
    assert b.functions == a.functions
    assert b.host_bridges == a.host_bridges


# ---- real captures ----------------------------------------------------------------------


def test_there_are_captures():
    assert len(CAPTURES) >= 20


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_roundtrip(name, unpacked):
    t = load_sysfs(unpacked(name))
    text = dump_yaml(t)
    back = load_yaml_text(text, f"{name}.yaml")
    assert_same(t, back)
    # Deterministic, and a fixed point: writing what was read gives the same text.
    assert dump_yaml(t) == text
    assert dump_yaml(back) == text
    # The machine facts of SourceInfo survive; the kind and location are the YAML file's.
    for attr in ("description", "kernel_release", "kernel_cmdline", "iommu_present", "group_types"):
        assert getattr(back.source, attr) == getattr(t.source, attr), attr
    assert back.source.kind == "yaml" and back.source.location == f"{name}.yaml"
    assert back.source.warnings == ()
    assert looks_like_yaml_topology(text)
    assert_both_emitters_agree(t)


def assert_both_emitters_agree(t: Topology) -> None:
    """The C emitter plus _indent_sequences writes exactly what the Python emitter writes."""
    from explorer.sources import yaml_topology as yt

    if not yt._HAVE_C_DUMPER:
        return
    doc = yt._Writer(t).document()
    fast, slow = yt._emit(doc, fast=True), yt._emit(doc, fast=False)
    if fast == slow:
        return
    # The emitters may spell a scalar differently (characters beyond U+FFFF; an empty key,
    # which the Python one writes as "? ''"), never the layout.
    indents = [[len(line) - len(line.lstrip(" ")) for line in text.splitlines()] for text in (fast, slow)]
    # Either emitter may fall back to the explicit "? key" form for an odd key (a lone "\r").
    if not any("\n? " in x or x.startswith("? ") or "  ? " in x for x in (fast, slow)):
        assert indents[0] == indents[1]
    a, b = load_yaml_text(fast), load_yaml_text(slow)
    assert a.functions == b.functions and a.host_bridges == b.host_bridges
    assert replace(a.source, warnings=()) == replace(b.source, warnings=())


def test_capture_sriov_vfs_nest_under_pf(unpacked):
    t = load_sysfs(unpacked("sriov-nvme"))
    text = dump_yaml(t)
    pf = t["0000:01:00.0"]
    assert len(pf.virtfns) == 3
    # The VFs are written under the PF, in virtfn order, and get their links back.
    block = text[text.index('address: "0000:01:00.0"'):]
    assert "vfs:" in block
    positions = [block.index(f'address: "{v}"') for v in pf.virtfns]
    assert positions == sorted(positions)
    back = load_yaml_text(text)
    assert back["0000:01:00.0"].virtfns == pf.virtfns
    for v in pf.virtfns:
        assert back[v].physfn == pf.address
        assert back[v].is_virtfn is True
        assert back[v].parent == pf.parent


def test_capture_text_is_readable(unpacked):
    text = dump_yaml(load_sysfs(unpacked("switch")))
    assert text.splitlines()[1] == "pci-explorer: topology/1"
    assert "\n  - root-bus: \"0000:00\"\n" in text  # block style, indented lists
    assert re.search(r'^\s+ids: "[0-9a-f]{4}:[0-9a-f]{4}"$', text, re.M)  # hex quoted
    assert re.search(r'^\s+class: "[0-9a-f]{6}"$', text, re.M)
    assert "children:" in text
    assert "!!" not in text  # no Python-specific tags
    for line in text.splitlines():
        assert len(line) < 400


def test_capture_bus_ranges_of_hot_added_bridges_roundtrip(unpacked):
    # The ACPI hot-add of a bridge below a port with no spare bus: real, odd numbering.
    for name in ("hotplug-acpi-bridge-bus3", "hotplug-acpi-shpc-bridge-bus0", "hotplug-native-bridge-bus0"):
        t = load_sysfs(unpacked(name))
        assert_same(t, roundtrip(t))


HWLOC = sorted((REPO / "tests" / "fixtures" / "hwloc").glob("*.tar.bz2"))


@pytest.mark.parametrize("archive", HWLOC, ids=[p.name for p in HWLOC])
def test_hwloc_machine_roundtrip(archive, tmp_path):
    """Other real machines' sysfs (read without root: capabilities unknown)."""
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path, filter="tar")
    (top,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    t = load_sysfs(top)
    text = dump_yaml(t)
    assert_same(t, load_yaml_text(text))
    assert dump_yaml(load_yaml_text(text)) == text
    assert_both_emitters_agree(t)


def test_sysfs_vmd_domain_nests_under_its_endpoint(unpacked, tmp_path):
    """A VMD endpoint with its domain's root bus below it in sysfs (as vmd.c lays it out)."""
    root = tmp_path / "root"
    shutil.copytree(unpacked("base"), root, symlinks=True)
    top = root / "sys/devices/pci0000:00"
    vmd = top / "0000:00:0e.0"
    shutil.copytree(top / "0000:00:1f.2", vmd, symlinks=True)
    (vmd / "domain").symlink_to("pci10000:e0/pci_bus/10000:e0")
    nested = vmd / "pci10000:e0" / "10000:e0:17.0"
    shutil.copytree(top / "0000:00:1f.2", nested, symlinks=True)
    bus = root / "sys/bus/pci/devices"
    (bus / "0000:00:0e.0").symlink_to("../../../devices/pci0000:00/0000:00:0e.0")
    (bus / "10000:e0:17.0").symlink_to("../../../devices/pci0000:00/0000:00:0e.0/pci10000:e0/10000:e0:17.0")
    t = load_sysfs(root)
    assert t.host_bridge(0x10000, 0xE0).vmd_owner == Address.parse("0000:00:0e.0")
    assert t["0000:00:0e.0"].vmd_domain in (None, 0x10000)  # depends on how sysfs.py reads the link
    text = dump_yaml(t)
    block = text[text.index('address: "0000:00:0e.0"'):]
    assert re.search(r'vmd:\n(\s+domain: "10000"\n)?\s+root-bus: "10000:e0"\n\s+devices:\n\s+- address: "10000:e0:17.0"', block)
    assert "vmd-owner" not in text
    assert_same(t, load_yaml_text(text))


LSPCI = sorted((REPO / "tests" / "fixtures" / "lspci").glob("*.txt"))


@pytest.mark.parametrize("path", LSPCI, ids=[p.stem for p in LSPCI])
def test_lspci_machine_roundtrip(path):
    """Real machines as lspci -vvnn saw them: names, partial facts, VMD domains, Thunderbolt."""
    lspci = pytest.importorskip("explorer.sources.lspci")
    t = lspci.load_lspci(path)
    text = dump_yaml(t)
    back = load_yaml_text(text)
    assert_same(t, back)
    assert dump_yaml(back) == text


def test_synthetic_machine_roundtrip():
    """A large synthetic server: several domains and host bridges, VMD domains, RCECs, switches,
    SR-IOV NICs with many VFs on buses past their PF's."""
    synthetic = pytest.importorskip("explorer.sources.synthetic")
    t = synthetic.generate(600, 5)
    text = dump_yaml(t)
    assert "&id" not in text and "*id" not in text  # no anchors/aliases, even for shared values
    back = load_yaml_text(text)
    assert_same(t, back)
    assert dump_yaml(back) == text
    assert back.source.warnings == ()
    assert_both_emitters_agree(t)
    if t.vmd_domains:
        assert "vmd:" in text


@pytest.mark.skipif(not has_pci("/"), reason="this machine shows no PCI devices")
def test_live_machine_roundtrip():
    t = load_sysfs("/")
    text = dump_yaml(t)
    assert_same(t, load_yaml_text(text))
    assert dump_yaml(t) == text


# ---- the example machine and the documentation -----------------------------------------


def test_example_loads():
    t = load_yaml(EXAMPLE)
    assert t.source.kind == "yaml" and t.source.location == str(EXAMPLE)
    assert t.source.warnings == ()
    assert len(t) == 14
    assert t.source.description and t.source.iommu_present is True
    # SR-IOV: two VFs under PF0, links both ways.
    pf = t["0000:01:00.0"]
    assert pf.virtfns == (Address.parse("0000:01:10.0"), Address.parse("0000:01:10.4"))
    assert t["0000:01:10.4"].physfn == pf.address and t["0000:01:10.4"].is_virtfn is True
    assert t["0000:01:10.4"].parent == Address.parse("0000:00:06.0")
    assert t["0000:01:10.4"].driver_override == "vfio-pci"
    assert t["0000:01:00.1"].virtfns == () and t["0000:01:00.1"].is_virtfn is False
    assert pf.caps.sriov.num_vfs == 2 and pf.caps.sriov.vf_device == 0x1520
    assert pf.vf_bars[0] == Bar(0, BarKind.PREF64, 0x6000000000, 16 << 10, total_size=128 << 10)
    assert pf.rom == Bar(6, BarKind.MEM32, 0x84280000, 512 << 10, disabled=True)
    assert t["0000:01:00.1"].rom == Bar(6, BarKind.MEM32, None, 512 << 10, unassigned=True)
    # ACS ctrl defaults to what Linux enables.
    assert pf.caps.acs == AcsCap(cap=0x0C, ctrl=0x0C)
    # VMD: the endpoint owns domain 10000, whose root bus e0 has no parent bridge.
    vmd = t["0000:00:0e.0"]
    assert vmd.vmd_domain == 0x10000
    assert t.vmd_domains == {0x10000: vmd.address}
    hb = t.host_bridge(0x10000, 0xE0)
    assert hb == HostBridge(0x10000, 0xE0, (0xE0, 0xFF), (Window(WindowKind.MEM, 0x82000000, 0x83FFFFFF),), vmd.address)
    assert t["10000:e0:1d.0"].parent is None
    assert t["10000:e1:00.0"].parent == Address.parse("10000:e0:1d.0")
    # Thunderbolt port.
    tb = t["0000:00:07.0"]
    assert tb.external_facing is True and tb.slot == SlotInfo("4", 4, True, True)
    assert tb.bridge.io_window is ABSENT and tb.bridge.bus_range == (0x02, 0x2B)
    # iGPU capabilities.
    gpu = t["0000:00:02.0"]
    assert gpu.caps.ats == AtsCap(32, True, 0) and gpu.caps.pasid.max_width == 20
    assert gpu.caps.acs is ABSENT and gpu.caps.eetlp_prefix is False
    # Defaults applied; the entry's own value wins.
    assert gpu.boot_vga is True and t["0000:00:1f.3"].boot_vga is False
    assert t["0000:00:00.0"].config_size == 256 and gpu.config_size == 4096
    assert_same(t, roundtrip(t))


def test_example_bars_sit_inside_their_windows():
    t = load_yaml(EXAMPLE)
    for fn in t:
        if fn.parent is None:
            windows = list(t.host_bridge(fn.address.domain, fn.address.bus).windows)
        else:
            br = t[fn.parent].bridge
            windows = [w for w in (br.io_window, br.mem_window, br.pref_window) if present(w)]
        bars = list(fn.bars or ()) + list(fn.vf_bars or ()) + ([fn.rom] if present(fn.rom) else [])
        for b in bars:
            if b.start is None:
                continue
            size = b.total_size or b.size
            assert any(
                w.start <= b.start and b.start + size - 1 <= w.end and (w.kind is WindowKind.IO) == b.kind.is_io
                for w in windows
            ), (fn.bdf, b)


def test_example_is_sniffed_as_yaml():
    assert looks_like_yaml_topology(EXAMPLE.read_text())


def _doc_blocks() -> list[tuple[int, str, str]]:
    text = DOC.read_text()
    out = []
    for m in re.finditer(r"^```(yaml[^\n]*)\n(.*?)^```", text, re.M | re.S):
        out.append((text[: m.start()].count("\n") + 1, m.group(1).strip(), m.group(2)))
    return out


def test_doc_has_examples():
    blocks = [b for b in _doc_blocks() if b[1] == "yaml"]
    assert len(blocks) >= 15


@pytest.mark.parametrize("line,info,body", _doc_blocks(), ids=lambda v: str(v) if isinstance(v, int) else "")
def test_doc_example_loads(line, info, body):
    if info != "yaml":
        pytest.skip(f"{info} block")
    t = load_yaml_text(body, f"yaml-format.md:{line}")
    assert len(t) >= 1
    assert_same(t, roundtrip(t))


def test_doc_mentions_every_function_key():
    from explorer.sources import yaml_topology as yt

    doc = DOC.read_text()
    for key in yt._FN_KEYS + yt._HB_KEYS + yt._TOP_KEYS + yt._CAP_KEYS + yt._BAR_KEYS + yt._BRIDGE_KEYS:
        assert f"`{key}`" in doc or f"{key}:" in doc, key


# ---- unknown, absent, present -----------------------------------------------------------

THREE_WAY = """
pci-explorer: topology/1
devices:
  - address: "0000:00:01.0"
    ids: "8086:1234"
    bridge:
      io: none
      mem: "0xfe000000-0xfe0fffff"
    caps:
      acs: none
      ats: {}
      pri: {enabled: true}
    slot: none
    driver: none
    driver-override: "none"
    iommu-group: none
    bars: none
    reset-methods: none
  - address: "0000:00:02.0"
    ids: "8086:5678"
"""


def test_unknown_absent_present():
    t = load_yaml_text(THREE_WAY)
    a, b = t["0000:00:01.0"], t["0000:00:02.0"]
    assert a.bridge.io_window is ABSENT
    assert a.bridge.mem_window == Window(WindowKind.MEM, 0xFE000000, 0xFE0FFFFF)
    assert a.bridge.pref_window is None
    assert a.caps.acs is ABSENT and a.caps.ats == AtsCap() and a.caps.pri == PriCap(enabled=True)
    assert a.caps.pasid is None and a.caps.sriov is None and a.caps.eetlp_prefix is None
    assert a.slot is ABSENT and a.driver is ABSENT and a.iommu_group is ABSENT
    assert a.driver_override == "none"  # quoted: the text "none", not ABSENT
    assert a.bars == () and a.reset_methods == ()
    # Nothing said: everything unknown.
    assert b == Function(Address.parse("0000:00:02.0"), vendor_id=0x8086, device_id=0x5678)
    # And it survives a round trip, in the same three states.
    back = roundtrip(t)
    assert_same(t, back)
    text = dump_yaml(t)
    assert "driver: none" in text and 'driver-override: "none"' in text
    assert "pasid" not in text  # unknown is left out


def test_false_is_accepted_for_absent_and_null_for_unknown():
    t = load_yaml_text(
        """
devices:
  - address: "00:01.0"
    ids: "8086:1234"
    rom: false
    caps: {acs: false, ats: ~, others: none}
    driver: null
"""
    )
    f = t["0000:00:01.0"]
    assert f.rom is ABSENT and f.caps.acs is ABSENT and f.caps.ats is None and f.caps.pri is ABSENT
    assert f.driver is None and f.caps.ari_forwarding is False


def test_caps_none_and_others():
    t = load_yaml_text(
        """
devices:
  - {address: "00:01.0", ids: "8086:1234", caps: none}
  - {address: "00:02.0", ids: "8086:1234", caps: {aer: {version: 2}, eetlp-prefix: true, others: none}}
"""
    )
    none = t["0000:00:01.0"].caps
    assert all(getattr(none, a) is ABSENT for a in ("acs", "ats", "pri", "pasid", "sriov", "ari", "aer", "rcec", "dsn"))
    assert none.eetlp_prefix is False and none.ari_forwarding is False
    c = t["0000:00:02.0"].caps
    assert c.aer == AerCap(2) and c.eetlp_prefix is True and c.acs is ABSENT and c.ari_forwarding is False


def test_defaults_and_null_override():
    t = load_yaml_text(
        """
defaults:
  numa-node: 0
  driver: none
  is-virtfn: false
  caps: none
devices:
  - {address: "00:01.0", ids: "8086:1234"}
  - {address: "00:02.0", ids: "8086:1234", numa-node: null, driver: e1000e, caps: null}
  - {address: "00:03.0", ids: "8086:1234", physfn: "00:01.0"}
"""
    )
    assert t["0000:00:01.0"].numa_node == 0 and t["0000:00:01.0"].driver is ABSENT
    assert t["0000:00:02.0"].numa_node is None and t["0000:00:02.0"].driver == "e1000e"
    assert t["0000:00:01.0"].caps.acs is ABSENT
    assert t["0000:00:02.0"].caps == Capabilities()  # unknown capabilities, despite the default
    assert t["0000:00:01.0"].is_virtfn is False and t["0000:00:03.0"].is_virtfn is True


# ---- hand-writing conveniences ------------------------------------------------------------


def test_plain_scalars_mean_what_they_say():
    # Unquoted, YAML 1.1 would read 01:00.0 as a base-60 float and 020000 as an octal int.
    t = load_yaml_text(
        """
host-bridges:
  - root-bus: 0000:00
    devices:
      - address: 00:1c.0
        ids: 8086:7ab8
        revision: 10
        bridge: {bus-range: 01-01, primary: 00}
        children:
          - address: 01:00.0
            ids: 8086:10d3
            class: 020000
            subsystem: 1028:0001
"""
    )
    nic = t["0000:01:00.0"]
    assert nic.class_code == 0x020000 and nic.subsystem_vendor_id == 0x1028
    assert nic.parent == Address.parse("0000:00:1c.0")
    assert t["0000:00:1c.0"].revision == 0x10


@pytest.mark.parametrize(
    "text,value",
    [("4096", 4096), ("0x1000", 4096), ("4K", 4096), ("256M", 256 << 20), ("4G", 4 << 30),
     ("1GiB", 1 << 30), ("16 KB", 16 << 10), ("1_024", 1024), (512, 512)],
)
def test_sizes(text, value):
    assert parse_size(text) == value


def test_sizes_in_file_accept_ints_and_units():
    t = load_yaml_text(
        """
devices:
  - address: "00:02.0"
    ids: "8086:1234"
    bars:
      0: {kind: mem64, start: 4G, size: 256M}
      2: {kind: mem32, start: 0xfe000000, size: "0x1000"}
      4: {kind: io, start: 0xc000, size: 32}
"""
    )
    bars = t["0000:00:02.0"].bars
    assert bars == (
        Bar(0, BarKind.MEM64, 4 << 30, 256 << 20),
        Bar(2, BarKind.MEM32, 0xFE000000, 0x1000),
        Bar(4, BarKind.IO, 0xC000, 32),
    )


def test_vmd_addresses_take_the_domain():
    t = load_yaml_text(
        """
host-bridges:
  - root-bus: "00"
    devices:
      - address: "00:0e.0"
        ids: "8086:9a0b"
        vmd:
          domain: "10000"
          root-bus: "e0"
          devices:
            - address: "e0:1d.0"
              ids: "8086:a0b0"
              bridge: {bus-range: e1-e1}
              children:
                - {address: "e1:00.0", ids: "144d:a809"}
"""
    )
    assert set(map(str, t.functions)) == {"0000:00:0e.0", "10000:e0:1d.0", "10000:e1:00.0"}
    assert t.host_bridges[1] == HostBridge(0x10000, 0xE0, None, None, Address.parse("0000:00:0e.0"))
    assert t["10000:e0:1d.0"].parent is None


def test_vf_forms_give_the_same_model():
    nested = load_yaml_text(
        """
devices:
  - address: "00:04.0"
    ids: "15b3:101d"
    vfs:
      - {address: "00:04.2", ids: "15b3:101e"}
      - {address: "00:04.1", ids: "15b3:101e"}
"""
    )
    siblings = load_yaml_text(
        """
devices:
  - {address: "00:04.0", ids: "15b3:101d", virtfns: ["00:04.2", "00:04.1"]}
  - {address: "00:04.1", ids: "15b3:101e", physfn: "00:04.0"}
  - {address: "00:04.2", ids: "15b3:101e", physfn: "00:04.0"}
"""
    )
    assert nested.functions == siblings.functions
    assert nested["0000:00:04.0"].virtfns == (Address.parse("0000:00:04.2"), Address.parse("0000:00:04.1"))


def test_merge_keys_and_anchors():
    t = load_yaml_text(
        """
devices:
  - &nic {address: "00:01.0", ids: "8086:10d3", driver: e1000e, numa-node: 0}
  - <<: *nic
    address: "00:02.0"
"""
    )
    assert t["0000:00:02.0"] == replace(t["0000:00:01.0"], address=Address.parse("0000:00:02.0"))


def test_out_of_range_child_is_a_warning():
    t = load_yaml_text(
        """
host-bridges:
  - root-bus: "0000:00"
    devices:
      - address: "00:01.0"
        ids: "8086:1234"
        bridge: {bus-range: "01-02"}
        children:
          - {address: "05:00.0", ids: "8086:10d3"}
""",
        "w.yaml",
    )
    assert t["0000:05:00.0"].parent == Address.parse("0000:00:01.0")
    assert len(t.source.warnings) == 1
    w = t.source.warnings[0]
    assert w.startswith("w.yaml:9:") and "0000:05:00.0" in w and "01-02" in w


def test_sniffing():
    assert looks_like_yaml_topology("pci-explorer: topology/1\n")
    assert looks_like_yaml_topology("# comment\ndevices:\n  - address: x\n")
    assert looks_like_yaml_topology("host-bridges:   # the roots\n")
    assert not looks_like_yaml_topology("00:00.0 Host bridge [0600]: Intel Corporation Device [8086:29c0]\n")
    assert not looks_like_yaml_topology("foo: bar\n  devices:\n")


def test_load_yaml_file_errors(tmp_path):
    with pytest.raises(SourceError) as e:
        load_yaml(tmp_path / "missing.yaml")
    assert "cannot read" in str(e.value)
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"devices:\n  - address: \xff\n")
    with pytest.raises(SourceError) as e:
        load_yaml(bad)
    assert str(e.value).startswith(f"{bad}:2") and "UTF-8" in str(e.value)


# ---- errors ---------------------------------------------------------------------------------

HB = 'pci-explorer: topology/1\nhost-bridges:\n  - root-bus: "0000:00"\n    devices:\n'
DEV = HB + '      - address: "00:01.0"\n        ids: "8086:1234"\n'  # lines 5-6; line 7 is next

ERRORS = [
    # (name, text, line, column or None, field, words in the message)
    ("syntax", "pci-explorer: topology/1\ndevices:\n  - address: \"00:01.0\"\n    ids: 8086:1234: x\n",
     4, 19, "ids", "YAML syntax error"),
    ("unclosed-quote", 'devices:\n  - address: "00:01.0\n    ids: x\n', 4, None, "ids", "YAML syntax error"),
    ("unknown-key", DEV + "        drvier: e1000e\n", 7, 9, "drvier", "did you mean 'driver'"),
    ("unknown-top-key", "pci-explorer: topology/1\nhost-bridge: []\n", 2, 1, "host-bridge", "did you mean 'host-bridges'"),
    ("unknown-bar-key", DEV + "        bars:\n          0: {kind: mem32, sise: 4K}\n", 8, 28, "bars.0.sise", "did you mean 'size'"),
    ("unknown-cap-key", DEV + "        caps: {acs: {cap: SV}, atz: {}}\n", 7, 32, "caps.atz", "did you mean 'ats'"),
    ("duplicate-key", DEV + '        ids: "8086:1234"\n', 7, 9, "ids", "given twice"),
    ("bad-address", HB + '      - address: "00:01.9"\n        ids: "8086:1234"\n', 5, 18, "address", "not a PCI address"),
    ("bad-address-type", HB + '      - address: [1]\n        ids: "8086:1234"\n', 5, 18, "address", "expected a PCI address"),
    ("duplicate-address", DEV + '      - address: "0000:00:01.0"\n        ids: "8086:1234"\n', 7, 18, "address", "duplicate address"),
    ("not-on-root-bus", DEV + '      - address: "05:00.0"\n        ids: "8086:1234"\n', 7, 18, "address", "not on that bus"),
    ("missing-ids", HB + '      - address: "00:01.0"\n        driver: x\n', 5, 9, "ids", "needs ids"),
    ("bad-ids", HB + '      - address: "00:01.0"\n        ids: "8086-1234"\n', 6, 14, "ids", "vendor:device"),
    ("bad-class", DEV + '        class: "0200"\n', 7, 16, "class", "6 hex digits"),
    ("wrong-type-bool", DEV + "        multifunction: maybe\n", 7, 24, "multifunction", "true or false"),
    ("wrong-type-list", DEV + "        bars: [1, 2]\n", 7, 15, "bars", "got a list"),
    ("wrong-type-children", DEV + "        children: {a: 1}\n", 7, 19, "children", "expected a list"),
    ("wrong-type-int", DEV + "        numa-node: one\n", 7, 20, "numa-node", "expected a number"),
    ("invalid-size", DEV + "        bars:\n          2: {kind: mem32, size: 16Q}\n", 8, 34, "bars.2.size", "invalid size '16Q'"),
    ("zero-size", DEV + "        bars:\n          2: {kind: mem32, size: 0}\n", 8, 34, "bars.2.size", "must be positive"),
    ("invalid-window-size", DEV + "        bridge:\n          mem: {start: 0x1000, size: lots}\n", 8, 38, "bridge.mem.size", "invalid size"),
    ("window-backwards", DEV + '        bridge: {mem: "0x2000-0x1000"}\n', 7, 23, "bridge.mem", "before it starts"),
    ("bar-kind", DEV + "        bars: {0: {kind: mem99}}\n", 7, 26, "bars.0.kind", "did you mean 'mem64'"),
    ("bar-no-kind", DEV + "        bars: {0: {size: 4K}}\n", 7, 19, "bars.0.kind", "needs kind"),
    ("bar-index", DEV + "        bars: {7: {kind: io}}\n", 7, 16, "bars", "above 5"),
    ("bar-64bit-overlap", DEV + "        bars:\n          0: {kind: mem64}\n          1: {kind: mem32}\n", 9, 11, "bars.1", "overlaps 64-bit BAR 0"),
    ("acs-flag", DEV + "        caps: {acs: {cap: SV+XX}}\n", 7, 27, "caps.acs.cap", "unknown ACS flag 'XX'"),
    ("pcie-type", DEV + "        pcie-type: rootport\n", 7, 20, "pcie-type", "did you mean 'root-port'"),
    ("parent-nested", DEV + '        parent: "00:00.0"\n', 7, 9, "parent", "only for top-level"),
    ("vfs-and-virtfns", DEV + '        virtfns: ["00:01.1"]\n        vfs: []\n', 7, 9, "virtfns", "not both"),
    ("child-other-domain", DEV + '        children:\n          - {address: "0001:01:00.0", ids: "8086:1234"}\n', 8, 23, "address", "another PCI domain"),
    ("hb-no-root-bus", "host-bridges:\n  - bus-range: 00-ff\n", 2, 5, "host-bridges[0].root-bus", "needs root-bus"),
    ("hb-twice", "host-bridges:\n  - root-bus: 00\n  - root-bus: '0000:00'\n", 3, 15, "host-bridges[1].root-bus", "given twice"),
    ("marker", "pci-explorer: topology/9\ndevices: []\n", 1, 15, "pci-explorer", "unsupported format"),
    ("defaults-structural", "defaults:\n  children: []\ndevices: []\n", 2, 3, "defaults.children", "cannot have a default"),
    ("not-a-mapping", "- 1\n", 1, 1, None, "expected a topology"),
    ("empty", "", 1, None, None, "empty document"),
]


@pytest.mark.parametrize("name,text,line,col,field,words", ERRORS, ids=[e[0] for e in ERRORS])
def test_error(name, text, line, col, field, words):
    with pytest.raises(SourceError) as info:
        load_yaml_text(text, "bad.yaml")
    e = info.value
    msg = str(e)
    assert "\n" not in msg
    assert e.path == "bad.yaml" and msg.startswith("bad.yaml:")
    assert e.line == line, msg
    assert msg.startswith(f"bad.yaml:{line}"), msg
    if col is not None:
        assert e.column == col, msg
    assert e.field == field, msg
    if field:
        assert f"[{field}]" in msg
    assert words in msg


def test_error_names_the_device():
    with pytest.raises(SourceError) as info:
        load_yaml_text(DEV + "        children:\n          - {address: '01:00.0', ids: '8086:1234', rom: {size: x}}\n")
    assert "device 0000:01:00.0:" in str(info.value) and info.value.field == "rom.size"


def test_recursive_alias_is_an_error_not_a_traceback():
    with pytest.raises(SourceError):
        load_yaml_text('devices: &a\n  - address: "00:01.0"\n    ids: "8086:1234"\n    children: *a\n')


# ---- every field of the model ---------------------------------------------------------------


def _everything() -> Topology:
    """A topology that sets every field the model has, in unusual combinations."""
    a = Address.parse
    full_caps = Capabilities(
        acs=AcsCap(cap=0x7F, ctrl=0x15),
        ats=AtsCap(queue_depth=32, enabled=False, stu=3),
        pri=PriCap(enabled=True, capacity=512, allocation=16),
        pasid=PasidCap(exec_supported=True, priv_supported=False, max_width=20, enabled=True),
        sriov=SriovCap(4, 8, 2, 1, 2, 0x10ED, False, True, 6, False),
        ari=AriCap(next_function=0),
        aer=AerCap(version=1),
        rcec=RcecCap(bitmap=(1 << 0) | (1 << 31), next_bus=1, last_bus=4),
        dsn="01-23-45-67-89-ab-cd-ef",
        eetlp_prefix=True,
        ari_forwarding=False,
    )
    pf = Function(
        a("0000:00:03.0"), None, 0x8086, 0x1521, 0x1028, None, "Intel", "I350", "Dell NIC", 0x020000, "Ethernet",
        0x01, 0, True, PcieType.RC_INTEGRATED_ENDPOINT, 4096,
        bars=(Bar(0, BarKind.MEM64, 0x4000000000, 1 << 20, disabled=False), Bar(2, BarKind.IO, None, 32, True, True),
              Bar(3, BarKind.PREF32, None, None), Bar(4, BarKind.MEM32, 0xFE000000, 0x1400)),
        rom=Bar(9, BarKind.PREF32, 0xFD000000, 64 << 10, False, True, None),
        vf_bars=(Bar(0, BarKind.PREF64, 0x5000000000, 16 << 10, total_size=128 << 10),),
        bridge=ABSENT, caps=full_caps, slot=SlotInfo("none", 7, False, None),
        link=LinkInfo("8.0 GT/s", 4, None, 8), driver="none", driver_override=ABSENT, iommu_group="grp 7",
        numa_node=-1, virtfns=(a("0000:00:03.2"), a("0000:00:03.1")), is_virtfn=False, boot_vga=True,
        reset_methods=("flr", "bus"), external_facing=False, removable=True, vmd_domain=None,
    )
    vf1 = Function(a("0000:00:03.1"), None, 0x8086, 0x1520, physfn=pf.address, is_virtfn=True, caps=Capabilities(aer=ABSENT))
    vf2 = Function(a("0000:00:03.2"), None, 0x8086, 0x1520, physfn=pf.address, is_virtfn=False, reset_methods=())
    bridge = Function(
        a("0000:00:1c.0"), None, 0x8086, 0x7AB8, header_type=1, pcie_type=PcieType.ROOT_PORT,
        bridge=BridgeInfo(0, 1, None, ABSENT, Window(WindowKind.MEM, 0xFC000000, 0xFC0FFFFF, None),
                          Window(WindowKind.MEM, 0x6000000000, 0x60FFFFFFFF, True)),
        slot=ABSENT, caps=Capabilities(acs=AcsCap(0, 0), eetlp_prefix=False), bars=(), vf_bars=(), rom=None,
    )
    child = Function(a("0000:01:00.0"), bridge.address, None, 0x1234, iommu_group=ABSENT, driver=ABSENT,
                     bridge=BridgeInfo(), slot=SlotInfo(), link=LinkInfo(), caps=Capabilities(dsn=ABSENT))
    # A PF whose VF is elsewhere: explicit physfn/virtfns; a VF pointing at a PF not in the file.
    odd_pf = Function(a("0000:01:00.1"), bridge.address, 0x15B3, 0x1017, virtfns=(a("0000:05:00.7"), a("0000:01:00.2")))
    odd_vf = Function(a("0000:01:00.2"), bridge.address, 0x15B3, 0x1018, physfn=a("0000:09:00.0"), is_virtfn=True)
    # Behind a bridge this topology does not have; a root-bus function without a host bridge.
    orphan = Function(a("0000:05:00.0"), a("0000:04:00.0"), 0x10DE, 0x2484)
    loose = Function(a("0002:00:00.0"), None, 0x1AF4, 0x1041, class_code=0)
    # VMD: a nested domain, plus a second root bus owned by the same endpoint and a domain
    # whose owner is not described.
    vmd = Function(a("0000:00:0e.0"), None, 0x8086, 0x9A0B, vmd_domain=0x10000)
    in_vmd = Function(a("10000:e0:1d.0"), None, 0x8086, 0xA0B0, vmd_domain=None)
    in_vmd2 = Function(a("10000:70:00.0"), None, 0x8086, 0xA0B0)
    vmd_no_domain_owner = Function(a("0000:00:0f.0"), None, 0x8086, 0x9A0B)
    # Parent cycles cannot be nested; they must still round-trip.
    c1 = Function(a("0003:01:00.0"), a("0003:02:00.0"), 1, 2)
    c2 = Function(a("0003:02:00.0"), a("0003:01:00.0"), 1, 3)
    selfp = Function(a("0003:03:00.0"), a("0003:03:00.0"), 1, 4)
    hbs = [
        HostBridge(0, 0, (0, 0x7F), (Window(WindowKind.IO, 0, 0xCF7), Window(WindowKind.MEM, 1 << 38, (1 << 39) - 1, True))),
        HostBridge(0, 0x80, None, ()),
        HostBridge(0x10000, 0xE0, (0xE0, 0xFF), None, vmd.address),
        HostBridge(0x10000, 0x70, None, None, vmd.address),
        HostBridge(0x20000, 0, None, None, a("0000:00:1f.7")),
        HostBridge(0x30000, 0, None, None, vmd_no_domain_owner.address),
    ]
    source = SourceInfo(
        "test", "here", description="none", kernel_release="6.1", kernel_cmdline="  a=b  ",
        iommu_present=False, group_types=(("grp 7", "DMA"), ("1", "identity")),
    )
    fns = [pf, vf1, vf2, bridge, child, odd_pf, odd_vf, orphan, loose, vmd, in_vmd, in_vmd2,
           vmd_no_domain_owner, c1, c2, selfp]
    return Topology.build(fns, hbs, source)


def test_every_field_roundtrips():
    t = _everything()
    assert_both_emitters_agree(t)
    text = dump_yaml(t)
    back = load_yaml_text(text)
    assert_same(t, back)
    for attr in ("description", "kernel_release", "kernel_cmdline", "iommu_present", "group_types"):
        assert getattr(back.source, attr) == getattr(t.source, attr), attr
    assert dump_yaml(back) == text
    # The forms chosen: VFs nested, explicit links where nesting cannot say it.
    assert "vfs:" in text and "physfn: \"0000:09:00.0\"" in text and "vmd-owner: \"0000:00:1f.7\"" in text
    assert 'parent: "0000:04:00.0"' in text


@pytest.mark.parametrize(
    "text",
    ["none", "None", "null", "~", "true", "no", "0x10", "010", "1e3", "", " lead", "trail ", "-", "a: b", "#x",
     "'q'", '"', "a\nb", "tab\there", "nel\x85x", "ls\u2028x", "bell\x07", "ünï", "[x]", "{y}", "*a", "&b", "!t", "%", "@"],
)
def test_strings_survive(text):
    fn = Function(Address.parse("0000:00:01.0"), vendor_id=1, device_id=2, vendor_name=text, driver=text,
                  iommu_group=text, slot=SlotInfo(physical_slot=text), link=LinkInfo(current_speed=text),
                  reset_methods=(text, "flr"))
    t = Topology.build([fn], source=SourceInfo("x", "x", description=text, kernel_release=text, kernel_cmdline=text,
                                               group_types=((text, text),)))
    back = roundtrip(t)
    assert back.functions == t.functions
    assert (back.source.description, back.source.kernel_release, back.source.kernel_cmdline) == (text, text, text)
    assert back.source.group_types == ((text, text),)


def test_every_model_field_has_a_key():
    """Guard: a field added to the model must get a place in the format."""
    from dataclasses import fields

    from explorer.sources import yaml_topology as yt

    covered = {a for attrs in yt._KEY_ATTRS.values() for a in attrs}
    covered |= {"address", "parent", "physfn", "virtfns", "vmd_domain"}
    assert {f.name for f in fields(Function)} <= covered
    assert {f.name for f in fields(Capabilities)} == {yt._attr(k) for k in yt._CAP_KEYS if k != "others"}
    assert {f.name for f in fields(Bar)} == {yt._attr(k) for k in yt._ROM_KEYS}
    assert {f.name for f in fields(SlotInfo)} == {yt._attr(k) for k in yt._SLOT_KEYS}
    assert {f.name for f in fields(LinkInfo)} == {yt._attr(k) for k in yt._LINK_KEYS}
    for name, (cls, spec) in yt._CAP_SPECS.items():
        names = {yt._attr(k) for k, kind in spec.items() if kind not in ("devices", "bitmap")}
        if name == "rcec":
            names.add("bitmap")
        assert {f.name for f in fields(cls)} == names, name


# ---- property: any valid topology round-trips --------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_TRICKY = ["none", "None", "NONE", "null", "~", "true", "no", "0x10", "010", "1e3", "", " lead", "trail ",
           "-", "a: b", "#x", "8.0 GT/s", "'q'", '"', "ü", "a\nb", "\t", "[x]", "{y}", "*a", "&b", "!t", "%", "@"]
_text = st.one_of(st.sampled_from(_TRICKY), st.text(max_size=6))
_addr = st.builds(Address, st.sampled_from([0, 1, 0x10000]), st.integers(0, 3), st.integers(0, 31), st.integers(0, 7))
_u = lambda hi: st.integers(0, hi)  # noqa: E731
_opt = lambda s: st.one_of(st.none(), s)  # noqa: E731
_maybe = lambda s: st.one_of(st.none(), st.just(ABSENT), s)  # noqa: E731


@st.composite
def _window(draw, kind=None):
    start = draw(_u(1 << 40))
    return Window(kind or draw(st.sampled_from(list(WindowKind))), start, start + draw(_u(1 << 32)), draw(_opt(st.booleans())))


@st.composite
def _bar(draw, index):
    return Bar(index, draw(st.sampled_from(list(BarKind))), draw(_opt(_u(1 << 44))), draw(_opt(st.integers(1, 1 << 36))),
               draw(st.booleans()), draw(_opt(st.booleans())), draw(_opt(st.integers(1, 1 << 40))))


@st.composite
def _bars(draw):
    if draw(st.booleans()):
        return draw(st.sampled_from([None, ()]))
    out, i = [], 0
    for i in sorted(draw(st.sets(_u(5), max_size=6))):
        if out and out[-1].kind.is_64bit and out[-1].index + 1 == i:
            continue
        out.append(draw(_bar(i)))
    return tuple(out)


_caps = st.builds(
    Capabilities,
    acs=_maybe(st.builds(AcsCap, _u(0x7F), _u(0x7F))),
    ats=_maybe(st.builds(AtsCap, _opt(_u(32)), _opt(st.booleans()), _opt(_u(31)))),
    pri=_maybe(st.builds(PriCap, _opt(st.booleans()), _opt(_u(1 << 32)), _opt(_u(1 << 32)))),
    pasid=_maybe(st.builds(PasidCap, _opt(st.booleans()), _opt(st.booleans()), _opt(_u(20)), _opt(st.booleans()))),
    sriov=_maybe(st.builds(SriovCap, *[_opt(_u(0xFFFF))] * 6, _opt(st.booleans()), _opt(st.booleans()),
                           _opt(_u(0xFFFF)), _opt(st.booleans()))),
    ari=_maybe(st.builds(AriCap, _opt(_u(255)))),
    aer=_maybe(st.builds(AerCap, _opt(_u(15)))),
    rcec=_maybe(st.builds(RcecCap, _u(0xFFFFFFFF), _opt(_u(255)), _opt(_u(255)))),
    dsn=_maybe(st.integers(0, (1 << 64) - 1).map(lambda v: "-".join(f"{(v >> (8 * i)) & 0xFF:02x}" for i in range(7, -1, -1)))),
    eetlp_prefix=_opt(st.booleans()),
    ari_forwarding=_opt(st.booleans()),
)


@st.composite
def _function(draw, addr, others):
    linked = st.sampled_from(others)
    return Function(
        addr,
        parent=draw(st.one_of(st.none(), linked, _addr)),
        vendor_id=draw(_opt(_u(0xFFFF))), device_id=draw(_opt(_u(0xFFFF))),
        subsystem_vendor_id=draw(_opt(_u(0xFFFF))), subsystem_device_id=draw(_opt(_u(0xFFFF))),
        vendor_name=draw(_opt(_text)), device_name=draw(_opt(_text)), subsystem_name=draw(_opt(_text)),
        class_code=draw(_opt(_u(0xFFFFFF))), class_name=draw(_opt(_text)), revision=draw(_opt(_u(0xFF))),
        header_type=draw(_opt(_u(0x7F))), multifunction=draw(_opt(st.booleans())),
        pcie_type=draw(_opt(st.sampled_from(list(PcieType)))), config_size=draw(_opt(st.sampled_from([64, 256, 4096]))),
        bars=draw(_bars()), rom=draw(_maybe(_bar(6))), vf_bars=draw(_bars()),
        bridge=draw(_maybe(st.builds(BridgeInfo, _opt(_u(255)), _opt(_u(255)), _opt(_u(255)),
                                     _maybe(_window(WindowKind.IO)), _maybe(_window()), _maybe(_window(WindowKind.PREF))))),
        caps=draw(_caps),
        slot=draw(_maybe(st.builds(SlotInfo, _opt(_text), _opt(_u(8191)), _opt(st.booleans()), _opt(st.booleans())))),
        link=draw(_opt(st.builds(LinkInfo, _opt(_text), _opt(_u(32)), _opt(_text), _opt(_u(32))))),
        driver=draw(_maybe(_text)), driver_override=draw(_maybe(_text)), iommu_group=draw(_maybe(_text)),
        numa_node=draw(_opt(st.integers(-1, 7))),
        physfn=draw(st.one_of(st.none(), linked, _addr)),
        virtfns=tuple(draw(st.lists(st.one_of(linked, _addr), max_size=3, unique=True))),
        is_virtfn=draw(_opt(st.booleans())), boot_vga=draw(_opt(st.booleans())),
        reset_methods=draw(_opt(st.lists(_text, max_size=3).map(tuple))),
        external_facing=draw(_opt(st.booleans())), removable=draw(_opt(st.booleans())),
        vmd_domain=draw(_opt(st.sampled_from([0x10000, 0x10001, 1]))),
    )


@st.composite
def _topology(draw):
    addrs = sorted(draw(st.sets(_addr, min_size=1, max_size=8)))
    # A few distinct functions repeated at several addresses, so that values are shared
    # (the writer lifts them into defaults:) and some differ (written, or null).
    pool = [draw(_function(a, addrs)) for a in addrs[: draw(st.integers(1, 3))]]
    fns = []
    linked = st.one_of(st.sampled_from(addrs), _addr)
    for a in addrs:
        base = draw(st.sampled_from(pool))
        fns.append(replace(
            base, address=a, parent=draw(st.one_of(st.none(), linked)), physfn=draw(st.one_of(st.none(), linked)),
            virtfns=tuple(draw(st.lists(linked, max_size=3, unique=True))),
            is_virtfn=draw(st.sampled_from([base.is_virtfn, None, True, False])),
        ))
    keys = draw(st.sets(st.tuples(st.sampled_from([0, 1, 0x10000]), _u(3)), max_size=4))
    hbs = [HostBridge(d, b, draw(_opt(st.tuples(_u(3), st.integers(3, 255)))), draw(_opt(st.lists(_window(), max_size=2).map(tuple))),
                      draw(st.one_of(st.none(), st.sampled_from(addrs), _addr))) for d, b in sorted(keys)]
    labels = draw(st.lists(_text, max_size=3, unique=True))
    source = SourceInfo("gen", "gen", draw(_opt(_text)), draw(_opt(_text)), draw(_opt(_text)), draw(_opt(st.booleans())),
                        tuple((label, draw(_text)) for label in labels))
    return Topology.build(fns, hbs, source)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_topology())
def test_any_valid_topology_roundtrips(t):
    text = dump_yaml(t)
    back = load_yaml_text(text)
    assert back.functions == t.functions
    assert back.host_bridges == t.host_bridges
    for attr in ("description", "kernel_release", "kernel_cmdline", "iommu_present", "group_types"):
        assert getattr(back.source, attr) == getattr(t.source, attr), attr
    assert dump_yaml(back) == text
    assert_both_emitters_agree(t)
