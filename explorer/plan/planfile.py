"""The plan document: what it was made from (a fingerprint of every device), and its actions.

``Plan`` is immutable. ``dump_plan``/``save_plan`` write the YAML form (docs/plan-format.md),
``load_plan``/``parse_plan`` read it back; every problem in a file is one ``PlanFileError``
whose ``str()`` is one line, ``file:line:col [field]: message``, taken from the YAML node
marks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from ..model import ABSENT, Address, Function, Maybe, Topology, present
from ..model.errors import LocatedError
from .actions import (
    ACTION_KINDS,
    Action,
    ActionError,
    Assign,
    AssignMdev,
    Bind,
    HotAdd,
    HotRemove,
    Mdev,
    MdevRemove,
    Sriov,
    Trust,
    Unbind,
    check_count,
    check_driver,
    check_bridge_kind,
    check_hotplug_mode,
    check_uuid,
    check_vm,
    _MDEV_TYPE_RE,
    parse_address,
    parse_bar,
    parse_kernel_param,
    MAX_BUSES,
    MAX_VFS,
)

FORMAT_KEY = "pci-explorer-plan"
FORMAT_VERSION = 1


class PlanFileError(LocatedError, ValueError):
    """A bad plan file (or plan text); str() is one line naming file, line, column and field."""

    default_path = "<plan>"


# ---- the document ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceFingerprint:
    """Who a device is (identity) and what it was doing (state) when the plan was made.

    Identity: ``vendor_device``, ``subsystem``, ``class_code`` and ``serial`` (None = the
    source did not say). State, for the preflight and the undo: ``driver`` and
    ``override`` (ABSENT = none, None = unknown) and ``num_vfs`` for a PF.
    """

    address: Address
    vendor_device: str | None = None
    subsystem: str | None = None
    class_code: str | None = None
    serial: str | None = None
    driver: Maybe[str] = None
    override: Maybe[str] = None
    num_vfs: int | None = None
    is_vf: bool = False

    def identity(self) -> tuple[str | None, str | None, str | None, str | None]:
        return (self.vendor_device, self.subsystem, self.class_code, self.serial)


def fingerprint_function(fn: Function) -> DeviceFingerprint:
    sub = None
    if fn.subsystem_vendor_id is not None and fn.subsystem_device_id is not None:
        sub = f"{fn.subsystem_vendor_id:04x}:{fn.subsystem_device_id:04x}"
    sriov = fn.caps.sriov
    return DeviceFingerprint(
        address=fn.address,
        vendor_device=fn.vendor_device,
        subsystem=sub,
        class_code=fn.class_hex,
        serial=fn.caps.dsn if present(fn.caps.dsn) else None,  # type: ignore[arg-type]
        driver=fn.driver,
        override=fn.driver_override,
        num_vfs=sriov.num_vfs if present(sriov) else None,  # type: ignore[union-attr]
        is_vf=bool(fn.is_virtfn),
    )


@dataclass(frozen=True, slots=True)
class SourceRef:
    """The SOURCE a plan was made against."""

    spec: str
    kind: str | None = None
    location: str | None = None
    kernel_release: str | None = None
    kernel_cmdline: str | None = None


@dataclass(frozen=True)
class Plan:
    source: SourceRef
    devices: tuple[DeviceFingerprint, ...]
    actions: tuple[Action, ...] = ()
    version: int = FORMAT_VERSION
    #: Where each action came from (file, line) when loaded from a file; not compared.
    action_lines: tuple[int | None, ...] = field(default=(), compare=False)
    path: str | None = field(default=None, compare=False)

    @cached_property
    def device_map(self) -> dict[Address, DeviceFingerprint]:
        return {d.address: d for d in self.devices}

    def recorded(self, addr: Address) -> DeviceFingerprint | None:
        return self.device_map.get(addr)

    def with_actions(self, actions: tuple[Action, ...]) -> "Plan":
        """A new plan sharing this one's fingerprint (so validation caches stay warm)."""
        lines = tuple(self.action_lines[: len(actions)]) + (None,) * max(0, len(actions) - len(self.action_lines))
        return Plan(self.source, self.devices, actions, self.version, lines, self.path)

    def where(self, index: int) -> str:
        """``file:line`` of action ``index`` when known, else ``action N``."""
        line = self.action_lines[index] if index < len(self.action_lines) else None
        if self.path and line:
            return f"{self.path}:{line}"
        return f"action {index + 1}"


def fingerprint_topology(topology: Topology) -> tuple[DeviceFingerprint, ...]:
    return tuple(fingerprint_function(fn) for fn in topology)


# ---- writing ----------------------------------------------------------------------------------


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML): any text stays data."""
    return json.dumps(value)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _q(str(value))


def _state(value: Maybe[str]) -> Any:
    if value is ABSENT:
        return "none"
    return value


def dump_plan(plan: Plan) -> str:
    out: list[str] = [
        "# pci-explorer plan (docs/plan-format.md). Check it with `pci-explorer check`.",
        f"{FORMAT_KEY}: {plan.version}",
        "source:",
    ]
    src = plan.source
    for key, value in (("spec", src.spec), ("kind", src.kind), ("location", src.location),
                       ("kernel", src.kernel_release), ("cmdline", src.kernel_cmdline)):
        if value is not None:
            out.append(f"  {key}: {_q(value)}")
    out.append("devices:" if plan.devices else "devices: []")
    for d in plan.devices:
        parts = [f"bdf: {_q(str(d.address))}"]
        for key, value in (("id", d.vendor_device), ("subsystem", d.subsystem), ("class", d.class_code), ("serial", d.serial)):
            if value is not None:
                parts.append(f"{key}: {_q(value)}")
        if d.driver is not None:
            parts.append(f"driver: {_q(_state(d.driver))}")
        if d.override is not None and d.override is not ABSENT:
            parts.append(f"override: {_q(d.override)}")  # type: ignore[arg-type]
        if d.num_vfs is not None:
            parts.append(f"numvfs: {d.num_vfs}")
        if d.is_vf:
            parts.append("vf: true")
        out.append("  - {" + ", ".join(parts) + "}")
    out.append("actions:" if plan.actions else "actions: []")
    for a in plan.actions:
        items = list(a.to_dict().items())
        first = True
        for key, value in items:
            lead = "  - " if first else "    "
            first = False
            if isinstance(value, list):
                out.append(f"{lead}{key}: [" + ", ".join(_scalar(v) for v in value) + "]")
            else:
                out.append(f"{lead}{key}: {_scalar(value)}")
    return "\n".join(out) + "\n"


def save_plan(plan: Plan, path: str | Path, *, overwrite: bool = False) -> None:
    """Write the plan atomically (never a partial file); OutputExists unless ``overwrite``."""
    from ..fileio import write_atomic

    write_atomic(path, dump_plan(plan), overwrite=overwrite)


# ---- reading ----------------------------------------------------------------------------------


class _Reader:
    def __init__(self, path: str | None) -> None:
        self.path = path

    def err(self, node: yaml.Node | None, fld: str | None, message: str) -> PlanFileError:
        line = col = None
        if node is not None and node.start_mark is not None:
            line, col = node.start_mark.line + 1, node.start_mark.column + 1
        return PlanFileError(message, path=self.path, line=line, column=col, field=fld)

    def mapping(self, node: yaml.Node, fld: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.err(node, fld, f"expected a mapping, got {_node_kind(node)}")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise self.err(k, fld, "a key must be plain text")
            if k.value in out:
                raise self.err(k, f"{fld}.{k.value}" if fld else k.value, "key given twice")
            out[k.value] = (k, v)
        return out

    def scalar(self, node: yaml.Node, fld: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.err(node, fld, f"expected a single value, got {_node_kind(node)}")
        try:
            return _construct(node)
        except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError):
            # !!int "zz", a bad !!timestamp, !!python/name:... (never constructed: SafeLoader)
            raise self.err(node, fld, f"bad value {node.value[:80]!r} for the tag {node.tag}") from None

    def text(self, node: yaml.Node, fld: str) -> str:
        """The scalar as written: ``0000:01:00.0`` unquoted is YAML 1.1 sexagesimal, not text."""
        if not isinstance(node, yaml.ScalarNode):
            raise self.err(node, fld, f"expected text, got {_node_kind(node)}")
        if node.style is None and node.value in ("", "~", "null", "Null", "NULL"):
            raise self.err(node, fld, "expected text, got nothing")
        return node.value

    def sequence(self, node: yaml.Node, fld: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.err(node, fld, f"expected a list, got {_node_kind(node)}")
        return list(node.value)

    def unknown_keys(self, m: dict[str, tuple[yaml.Node, yaml.Node]], allowed: set[str], fld: str) -> None:
        for key, (knode, _) in m.items():
            if key not in allowed:
                where = f"{fld}.{key}" if fld else key
                raise self.err(knode, where, f"unknown key (expected: {', '.join(sorted(allowed))})")


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return repr(node.value)


def _construct(node: yaml.ScalarNode) -> Any:
    # A constructor alone (no reader, scanner or parser to build): a plan for a big machine
    # has tens of thousands of scalars.
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


#: libyaml's parser when PyYAML has it (some 10x faster; nodes keep their marks), else PyYAML's.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


#: Device lines read per YAML document when a plan's device list is in the form ``save``
#: writes (one ``- {bdf: ...}`` line a device): a 100,000-function machine's plan then never
#: holds a node (with its marks) for each of its million scalars at once.
DEVICE_CHUNK = 2000


def _split_devices(text: str) -> tuple[str, int, list[str]] | None:
    """The plan with its device lines blanked (``devices: []``; every other line where it
    was), the index of the first device line, and those lines; None when the list is not
    one flow mapping a line (then the whole document is read as one)."""
    lines = text.split("\n")
    try:
        head = lines.index("devices:")
    except ValueError:
        return None
    end = head + 1
    while end < len(lines) and lines[end].startswith("  - {") and lines[end].rstrip().endswith("}"):
        end += 1
    if end == head + 1 or end - head - 1 < DEVICE_CHUNK or (end < len(lines) and lines[end][:1] in (" ", "-", "\t")):
        return None
    block = lines[head + 1:end]
    lines[head] = "devices: []"
    lines[head + 1:end] = [""] * len(block)
    return "\n".join(lines), head + 1, block


def _read_device_lines(r: _Reader, first_line: int, block: list[str]) -> tuple[DeviceFingerprint, ...]:
    """:func:`_read_devices` over the device lines, DEVICE_CHUNK at a time, each chunk a
    document placed at its own line numbers (marks, and messages, as for the whole file)."""
    from ..model.limits import yaml_expansion_problem

    out: list[DeviceFingerprint] = []
    seen: set[Address] = set()
    for start in range(0, len(block), DEVICE_CHUNK):
        part = "\n" * (first_line + start - 1) + "devices:\n" + "\n".join(block[start:start + DEVICE_CHUNK])
        root = yaml.compose(part, Loader=_Loader)
        problem = yaml_expansion_problem(root)
        if problem is not None:
            raise r.err(problem[1], None, problem[0])
        m = r.mapping(root, "")
        out += _read_devices(r, m["devices"][1], start=start, seen=seen)
    return tuple(out)


def parse_plan(text: str, path: str | None = None) -> Plan:
    """Parse plan YAML text. Raises PlanFileError (one line).

    A long device list in the form ``save`` writes is read a chunk at a time; anything
    that goes wrong that way is read again as one document, so errors and their places
    are always the whole document's."""
    split = _split_devices(text)
    if split is not None:
        try:
            return _parse_plan(split[0], path, (split[1], split[2]))
        except (PlanFileError, yaml.YAMLError, RecursionError, KeyError):
            pass
    return _parse_plan(text, path, None)


def _parse_plan(text: str, path: str | None, device_lines: tuple[int, list[str]] | None) -> Plan:
    from ..model.limits import yaml_expansion_problem

    r = _Reader(path)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.reader.ReaderError as e:
        line = text[: e.position].count("\n") + 1 if isinstance(e.position, int) else None
        raise PlanFileError(f"not valid YAML: character {_char_name(e.character)} is not allowed", path=path, line=line) from None
    except RecursionError:
        raise PlanFileError("not valid YAML: nested too deeply", path=path) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise PlanFileError(
            f"not valid YAML: {e.problem or e.context}",
            path=path,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as e:
        raise PlanFileError(f"not valid YAML: {e}", path=path) from None
    if root is None:
        raise PlanFileError("empty file: not a plan", path=path)
    problem = yaml_expansion_problem(root)
    if problem is not None:
        raise r.err(problem[1], None, problem[0])
    top = r.mapping(root, "")
    if FORMAT_KEY not in top:
        raise r.err(root, FORMAT_KEY, f"not a pci-explorer plan (no '{FORMAT_KEY}: {FORMAT_VERSION}' line)")
    r.unknown_keys(top, {FORMAT_KEY, "source", "devices", "actions"}, "")
    vnode = top[FORMAT_KEY][1]
    version = r.scalar(vnode, FORMAT_KEY)
    if version != FORMAT_VERSION:
        raise r.err(vnode, FORMAT_KEY, f"unsupported plan format version {vnode.value!r} (this tool reads {FORMAT_VERSION})")

    if "source" not in top:
        raise r.err(root, "source", "missing: the SOURCE the plan was made against")
    source = _read_source(r, top["source"][1])
    devices: tuple[DeviceFingerprint, ...] = ()
    if device_lines is not None:
        devices = _read_device_lines(r, *device_lines)
    elif "devices" in top:
        devices = _read_devices(r, top["devices"][1])
    actions: list[Action] = []
    lines: list[int | None] = []
    if "actions" in top:
        anode = top["actions"][1]
        if not (isinstance(anode, yaml.ScalarNode) and anode.value in ("", "~", "null")):
            for i, node in enumerate(r.sequence(anode, "actions")):
                actions.append(_read_action(r, node, f"actions[{i}]"))
                lines.append(node.start_mark.line + 1 if node.start_mark else None)
    return Plan(source, devices, tuple(actions), FORMAT_VERSION, tuple(lines), path)


#: The largest plan file read (a plan is some 100 bytes a device and an action).
MAX_PLAN_BYTES = 64 * 1024 * 1024


def load_plan(path: str | Path) -> Plan:
    import os
    import stat

    p = str(path)
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            # A FIFO would block the read forever; a device may act when opened.
            raise PlanFileError("not a regular file (a FIFO, device, socket or folder): not a plan", path=p)
        if st.st_size > MAX_PLAN_BYTES:
            raise PlanFileError(f"{st.st_size} bytes, more than a plan can be ({MAX_PLAN_BYTES})", path=p)
        with open(p, encoding="utf-8") as f:
            text = f.read(MAX_PLAN_BYTES + 1)
        if len(text) > MAX_PLAN_BYTES:
            raise PlanFileError(f"more than {MAX_PLAN_BYTES} characters: not a plan", path=p)
    except UnicodeDecodeError:
        raise PlanFileError("not UTF-8 text: not a plan file", path=p) from None
    except OSError as e:
        raise PlanFileError(f"cannot read: {e.strerror or e}", path=p) from None
    return parse_plan(text, p)


def _read_source(r: _Reader, node: yaml.Node) -> SourceRef:
    m = r.mapping(node, "source")
    r.unknown_keys(m, {"spec", "kind", "location", "kernel", "cmdline"}, "source")
    if "spec" not in m:
        raise r.err(node, "source.spec", "missing: the SOURCE given when the plan was made")
    vals = {k: r.text(v, f"source.{k}") for k, (_, v) in m.items()}
    return SourceRef(vals["spec"], vals.get("kind"), vals.get("location"), vals.get("kernel"), vals.get("cmdline"))


def _opt_text(r: _Reader, m: dict[str, tuple[yaml.Node, yaml.Node]], key: str, fld: str) -> str | None:
    if key not in m:
        return None
    return r.text(m[key][1], f"{fld}.{key}")


def _check_pattern(r: _Reader, node: yaml.Node, fld: str, value: str | None, hexlen: tuple[int, ...], what: str) -> None:
    if value is None:
        return
    ok = all(len(p) == n and all(c in "0123456789abcdef" for c in p) for p, n in zip(value.split(":"), hexlen)) and len(value.split(":")) == len(hexlen)
    if not ok:
        raise r.err(node, fld, f"expected {what}, got {value!r}")


def _read_devices(r: _Reader, node: yaml.Node, *, start: int = 0, seen: set[Address] | None = None) -> tuple[DeviceFingerprint, ...]:
    out: list[DeviceFingerprint] = []
    seen = set() if seen is None else seen
    for i, dnode in enumerate(r.sequence(node, "devices"), start):
        fld = f"devices[{i}]"
        m = r.mapping(dnode, fld)
        r.unknown_keys(m, {"bdf", "id", "subsystem", "class", "serial", "driver", "override", "numvfs", "vf"}, fld)
        if "bdf" not in m:
            raise r.err(dnode, f"{fld}.bdf", "missing: the device's address")
        bnode = m["bdf"][1]
        try:
            addr = parse_address(r.text(bnode, f"{fld}.bdf"), "bdf")
        except ActionError as e:
            raise r.err(bnode, f"{fld}.bdf", e.message) from None
        if addr in seen:
            raise r.err(bnode, f"{fld}.bdf", f"{addr} listed twice")
        seen.add(addr)
        vd = _opt_text(r, m, "id", fld)
        _check_pattern(r, m["id"][1] if "id" in m else dnode, f"{fld}.id", vd, (4, 4), "vendor:device in hex (8086:10d3)")
        sub = _opt_text(r, m, "subsystem", fld)
        _check_pattern(r, m["subsystem"][1] if sub else dnode, f"{fld}.subsystem", sub, (4, 4), "vendor:device in hex")
        cls = _opt_text(r, m, "class", fld)
        _check_pattern(r, m["class"][1] if cls else dnode, f"{fld}.class", cls, (6,), "a 6-digit hex class code (020000)")
        serial = _opt_text(r, m, "serial", fld)
        drv_t = _opt_text(r, m, "driver", fld)
        driver: Maybe[str] = None if drv_t is None else (ABSENT if drv_t == "none" else drv_t)
        if isinstance(driver, str):
            try:
                check_driver(driver)
            except ActionError as e:
                raise r.err(m["driver"][1], f"{fld}.driver", e.message) from None
        ovr_t = _opt_text(r, m, "override", fld)
        override: Maybe[str] = ABSENT if ovr_t is None and drv_t is not None else ovr_t
        num_vfs = None
        if "numvfs" in m:
            try:
                num_vfs = check_count(r.scalar(m["numvfs"][1], f"{fld}.numvfs"), "numvfs", low=0, high=MAX_VFS)
            except ActionError as e:
                raise r.err(m["numvfs"][1], f"{fld}.numvfs", e.message) from None
        is_vf = False
        if "vf" in m:
            v = r.scalar(m["vf"][1], f"{fld}.vf")
            if not isinstance(v, bool):
                raise r.err(m["vf"][1], f"{fld}.vf", f"expected true or false, got {m['vf'][1].value!r}")
            is_vf = v
        out.append(DeviceFingerprint(addr, vd, sub, cls, serial, driver, override, num_vfs, is_vf))
    return tuple(out)


_ACTION_KEYS = {
    "bind": ({"device", "driver"}, {"group"}),
    "unbind": ({"device"}, set()),
    "assign": ({"vm"}, {"device", "group", "mdev"}),
    "sriov": ({"pf", "vfs"}, {"driver"}),
    "mdev": ({"parent", "type", "uuids"}, {"vm"}),
    "mdev-remove": ({"uuid"}, set()),
    "hot-add": ({"port"}, {"bars", "buses", "hotplug", "bridge"}),
    "hot-remove": ({"device"}, set()),
    "trust": ({"port", "external"}, set()),
    "kernel-param": ({"param"}, set()),
}


def _read_action(r: _Reader, node: yaml.Node, fld: str) -> Action:
    m = r.mapping(node, fld)
    if "action" not in m:
        raise r.err(node, f"{fld}.action", f"missing: which action (one of {', '.join(ACTION_KINDS)})")
    knode = m["action"][1]
    kind = r.text(knode, f"{fld}.action")
    if kind not in _ACTION_KEYS:
        raise r.err(knode, f"{fld}.action", f"unknown action {kind!r} (one of {', '.join(ACTION_KINDS)})")
    required, optional = _ACTION_KEYS[kind]
    r.unknown_keys(m, required | optional | {"action"}, fld)
    for key in sorted(required):
        if key not in m:
            raise r.err(node, f"{fld}.{key}", f"missing: {kind} needs {key!r}")

    def node_of(key: str) -> yaml.Node:
        return m[key][1]

    def val(key: str) -> Any:
        return r.scalar(node_of(key), f"{fld}.{key}")

    def wrap(key: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ActionError as e:
            raise r.err(node_of(key), f"{fld}.{key}", e.message) from None

    def addr(key: str) -> Address:
        return wrap(key, parse_address, r.text(node_of(key), f"{fld}.{key}"), key)

    def flag(key: str) -> bool:
        if key not in m:
            return False
        v = val(key)
        if not isinstance(v, bool):
            raise r.err(node_of(key), f"{fld}.{key}", f"expected true or false, got {node_of(key).value!r}")
        return v

    if kind == "bind":
        return Bind(addr("device"), wrap("driver", check_driver, r.text(node_of("driver"), f"{fld}.driver")), flag("group"))
    if kind == "unbind":
        return Unbind(addr("device"))
    if kind == "assign" and "mdev" in m:
        if "device" in m or "group" in m:
            raise r.err(node, f"{fld}.mdev", "assign takes either device (with group) or mdev, not both")
        return AssignMdev(wrap("mdev", check_uuid, r.text(node_of("mdev"), f"{fld}.mdev"), "mdev"),
                          wrap("vm", check_vm, r.text(node_of("vm"), f"{fld}.vm")))
    if kind == "assign" and "device" not in m:
        raise r.err(node, f"{fld}.device", "missing: assign needs 'device' (or 'mdev', a UUID)")
    if kind == "mdev-remove":
        return MdevRemove(wrap("uuid", check_uuid, r.text(node_of("uuid"), f"{fld}.uuid"), "uuid"))
    if kind == "assign":
        return Assign(addr("device"), wrap("vm", check_vm, r.text(node_of("vm"), f"{fld}.vm")), flag("group"))
    if kind == "sriov":
        drv = wrap("driver", check_driver, r.text(node_of("driver"), f"{fld}.driver")) if "driver" in m else None
        return Sriov(addr("pf"), _count(r, node_of("vfs"), f"{fld}.vfs", 0, MAX_VFS), drv)
    if kind == "mdev":
        mtype = r.text(node_of("type"), f"{fld}.type")
        if not _MDEV_TYPE_RE.fullmatch(mtype):
            raise r.err(node_of("type"), f"{fld}.type", f"not an mdev type name: {mtype!r}")
        unodes = r.sequence(node_of("uuids"), f"{fld}.uuids")
        if not unodes:
            raise r.err(node_of("uuids"), f"{fld}.uuids", "at least one UUID")
        uuids = []
        for j, un in enumerate(unodes):
            try:
                uuids.append(check_uuid(r.text(un, f"{fld}.uuids[{j}]"), "uuid"))
            except ActionError as e:
                raise r.err(un, f"{fld}.uuids[{j}]", e.message) from None
        if len(set(uuids)) != len(uuids):
            raise r.err(node_of("uuids"), f"{fld}.uuids", "the same UUID twice")
        vm = wrap("vm", check_vm, r.text(node_of("vm"), f"{fld}.vm")) if "vm" in m else None
        return Mdev(addr("parent"), mtype, tuple(uuids), vm)
    if kind == "hot-add":
        bars = []
        if "bars" in m:
            for j, bn in enumerate(r.sequence(node_of("bars"), f"{fld}.bars")):
                try:
                    bars.append(parse_bar(r.text(bn, f"{fld}.bars[{j}]")))
                except ActionError as e:
                    raise r.err(bn, f"{fld}.bars[{j}]", e.message) from None
        buses = _count(r, node_of("buses"), f"{fld}.buses", 0, MAX_BUSES) if "buses" in m else 0
        if not bars and not buses:
            raise r.err(node, f"{fld}.bars", "a hot-add needs BARs and/or buses")
        if len(bars) > 6:
            raise r.err(node_of("bars"), f"{fld}.bars", "a device has at most 6 BARs")
        mode = wrap("hotplug", check_hotplug_mode, r.text(node_of("hotplug"), f"{fld}.hotplug")) if "hotplug" in m else None
        bridge = wrap("bridge", check_bridge_kind, r.text(node_of("bridge"), f"{fld}.bridge")) if "bridge" in m else None
        return HotAdd(addr("port"), tuple(bars), buses, mode, bridge)
    if kind == "hot-remove":
        return HotRemove(addr("device"))
    if kind == "trust":
        v = val("external")
        if not isinstance(v, bool):
            raise r.err(node_of("external"), f"{fld}.external", f"expected true or false, got {node_of('external').value!r}")
        return Trust(addr("port"), v)
    return wrap("param", parse_kernel_param, r.text(node_of("param"), f"{fld}.param"), "param")


def _count(r: _Reader, node: yaml.Node, fld: str, low: int, high: int) -> int:
    try:
        return check_count(r.scalar(node, fld), fld.rsplit(".", 1)[-1], low=low, high=high)
    except ActionError as e:
        raise r.err(node, fld, e.message) from None


__all__ = [
    "DeviceFingerprint", "FORMAT_KEY", "FORMAT_VERSION", "Plan", "PlanFileError", "SourceRef", "dump_plan",
    "fingerprint_function", "fingerprint_topology", "load_plan", "parse_plan", "save_plan",
]


def _char_name(c: object) -> str:
    """U+0001 for a character YAML refuses (ReaderError gives it as a number or a text)."""
    if isinstance(c, str) and len(c) == 1:
        c = ord(c)
    return f"U+{c:04X}" if isinstance(c, int) else repr(c)
