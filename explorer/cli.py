"""The ``pci-explorer`` command: ties sources, kernel rules, plans, exports and the UI together.

Exit codes: 0 success, 1 a check did not pass (e.g. a device not found), 2 bad input
or arguments. Bad input prints one line naming the file (and line and field where
there is one); never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Sequence

from . import __version__, gcpause
from .cli_parser import Parser
from .export.envelope import envelope
from .fileio import OutputExists, write_atomic, write_many_atomic, write_tree_atomic
from .model.safe_text import clean, one_line
from .model import Address, AddressError, Topology
from .sources import SourceError, live_root, load_source

PROG = "pci-explorer"
#: Largest machine `generate` makes (the benchmarks go to 10^5).
MAX_GENERATE = 200_000
#: --hotplug spellings: the path's name or the driver's (explorer.kernel.context.HOTPLUG_ALIASES)
HOTPLUG_CHOICES = ("native", "acpi", "pciehp", "acpiphp", "shpchp")
KERNEL_CHOICES = ("6.1", "6.12")
FALLBACK_TOPOLOGY = "example-small"

JSON_HELP = "print one JSON document instead (format and schema: docs/json.md)"
EXPORT_TARGETS = ("shell", "undo", "libvirt", "proxmox", "driverctl", "mdevctl", "qemu", "cmdline", "json")

SOURCE_HELP = (
    "a sysfs root directory, a snapshot .tar.gz, a YAML topology, lspci -vvnn or -xxxx output, "
    "or builtin:NAME; omitted: this machine"
)


class CliError(Exception):
    """A usage problem; message printed as one line, exit 2."""


def _load(spec: str | None, leave_out: frozenset[str] = frozenset()) -> Topology:
    # The topology is many small immutable objects and no cycles: the cyclic collector is
    # kept off while it is built (it would scan them all as they pile up), and they are then
    # moved out of its reach (freeze), so the command's own allocations never rescan them.
    with gcpause.paused():
        t = load_source(spec, leave_out=leave_out)
        gc.freeze()
    return t


#: --pretty: indent JSON even when standard output is not a terminal (None: only on a terminal).
_JSON_PRETTY: bool | None = None
PRETTY_HELP = "indent the JSON (the default on a terminal; compact otherwise)"


def _print_json(obj: object) -> None:
    """One JSON document on standard output (C encoder; an iterator value is streamed)."""
    from .jsonout import write_json

    # The JSON encoder escapes every control character (ensure_ascii), so the document goes to
    # the raw stream: nothing for the control-character filter to do, and no cost per chunk.
    out = sys.stdout
    write_json(obj, out.raw if isinstance(out, _CleanStream) else out, pretty=_JSON_PRETTY)


class _CleanStream:
    """A text stream whose writes have control characters escaped (explorer.model.safe_text):
    every text the CLI prints goes through one, so a device name holding ``\x1b]0;...`` is
    shown, never obeyed. Documents (exports, YAML to ``-o -``) go to ``raw`` unchanged."""

    def __init__(self, raw) -> None:  # type: ignore[no-untyped-def]
        self.raw = raw

    def write(self, text: str) -> int:
        return self.raw.write(clean(text))

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.raw, name)


def _write_document(text: str) -> None:
    """A document (export, YAML) to standard output, byte for byte."""
    out = sys.stdout
    (out.raw if isinstance(out, _CleanStream) else out).write(text)


def _write_output(path: str, text: str, force: bool, *, executable: bool = False) -> bool:
    """Write ``text`` to ``path`` atomically, or to standard output for ``-``; True for a file."""
    if path == "-":
        _write_document(text)
        return False
    write_atomic(path, text, overwrite=force, executable=executable)
    return True


# ---- commands ------------------------------------------------------------------------


_TREE_TEXT_LEAVES_OUT = frozenset({"resources", "attributes", "group_types"})
_GROUPS_LEAVE_OUT = frozenset({"resources", "attributes"})
_RESOURCES_LEAVE_OUT = frozenset({"attributes"})


def cmd_tree(args: argparse.Namespace) -> int:
    from .export.topology import render_tree, topology_json

    # The text tree shows no BARs, windows, per-function attributes or group types: a
    # sysfs source need not read them (sources/sysfs.LEAVE_OUT).
    t = _load(args.source, frozenset() if args.json else _TREE_TEXT_LEAVES_OUT)
    if args.json:
        with gcpause.paused():
            _print_json(topology_json(t, stream=True))
    else:
        print(render_tree(t))
        for w in t.source.warnings:
            print(f"warning: {w}", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .export.topology import render_device, show_json

    source, bdf = args.source, args.bdf
    if bdf is None:  # `show BDF` on this machine
        source, bdf = None, source
    try:
        addr = Address.parse(bdf)
    except AddressError as e:
        raise CliError(str(e)) from None
    t = _load(source)
    fn = t.get(addr)
    if fn is None:
        print(f"{PROG}: {addr}: no such device in {t.source.location}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(show_json(t, fn))
    else:
        print(render_device(t, fn))
    return 0


def _addr(text: str) -> Address:
    try:
        return Address.parse(text)
    except AddressError as e:
        raise CliError(str(e)) from None


def cmd_groups(args: argparse.Namespace) -> int:
    from .export.groups import compare_text, groups_json, list_text, no_iommu_text
    from .kernel.groups import predict_groups

    # Groups come from config space, links and IDs: no BARs, windows or per-function
    # attributes are shown, except by -v (reset methods), --vfio-ids and --move.
    whole = args.verbose or args.vfio_ids or args.move
    t = _load(args.source, frozenset() if whole else _GROUPS_LEAVE_OUT)
    if args.vfio_ids:
        return _groups_vfio_ids(t, args.vfio_ids)
    assume = [_addr(a) for a in args.assume_acs]
    for a in assume:
        if a not in t.functions:
            raise CliError(f"--assume-acs {a}: no such device in {t.source.location}")
    moved_note = None
    if args.move:
        from .kernel.groups import move_device

        dev_s, _, port_s = args.move.partition("=")
        if not port_s:
            raise CliError("--move takes BDF=PORT (the device, and the port whose slot it moves to)")
        try:
            t, mapping = move_device(t, _addr(dev_s), _addr(port_s))
        except ValueError as e:
            raise CliError(f"--move: {e}") from None
        moved_note = "what-if: moved " + ", ".join(f"{a} -> {b}" for a, b in sorted(mapping.items()) if a != b)
    try:
        pred = predict_groups(t, assume_acs=assume, acs_override=args.acs_override)
    except ValueError as e:
        raise CliError(str(e)) from None
    if moved_note:
        pred.hypothetical = True
        pred.assumptions.insert(0, moved_note)
    has_reported = bool(t.reported_groups)
    if args.compare:
        if not has_reported:
            print(f"{PROG}: {t.source.location} reports no IOMMU groups to compare with", file=sys.stderr)
            return 2
        equal = not pred.compare(t.reported_groups)
        if args.json:
            with gcpause.paused():
                _print_json(groups_json(t, pred, which="predicted", equal=equal, stream=True))
        else:
            print(compare_text(t, pred))
        return 0 if equal else 1
    what_if = bool(assume or args.acs_override or args.move)
    if args.reported and not has_reported:
        raise CliError(f"{t.source.location} reports no IOMMU groups (use --predict)")
    which = "reported" if (args.reported or (has_reported and not args.predict and not what_if)) else "predicted"
    if args.json:
        with gcpause.paused():
            _print_json(groups_json(t, pred, which=which, stream=True))
        return 0
    if t.source.iommu_present is False and which == "predicted" and not (args.predict or what_if):
        # No IOMMU: say why there are no groups and what to set, then what the kernel would form.
        print(no_iommu_text(t))
        print()
    print(list_text(t, pred, which=which, explain=args.explain, verbose=args.verbose))
    return 0


def _groups_vfio_ids(t: Topology, spec: str) -> int:
    """``groups --vfio-ids GROUP|BDF``: the vfio-pci.ids= value and driverctl lines for a group."""
    from .export.groups import vfio_ids_text
    from .kernel.groups import predict_groups

    groups = t.reported_groups
    where = "reported"
    if not groups:
        groups, where = predict_groups(t).groups, "predicted"
    label = spec if spec in groups else None
    if label is None:
        try:
            addr = Address.parse(spec)
        except AddressError:
            raise CliError(f"--vfio-ids {spec}: no IOMMU group {spec!r} and not a device address in {t.source.location}") from None
        label = next((k for k, v in groups.items() if addr in v), None)
        if label is None:
            raise CliError(f"--vfio-ids {spec}: {'no such device' if addr not in t.functions else 'in no IOMMU group'} in {t.source.location}")
    if where == "predicted":
        print(f"# {t.source.location} reports no groups: group {label} is the predicted one")
    print(vfio_ids_text(t, label, groups[label]))
    return 0


def cmd_resources(args: argparse.Namespace) -> int:
    from .export.resources import report_json, report_text
    from .kernel.resources import account

    # Address space and bus numbers: the per-function attributes are not shown.
    t = _load(args.source, _RESOURCES_LEAVE_OUT)
    port = _addr(args.port) if args.port else None
    if port is not None and port not in t.functions:
        raise CliError(f"--port {port}: no such device in {t.source.location}")
    report = account(t, port)
    if args.json:
        with gcpause.paused():
            _print_json(envelope("resources", t, report_json(report)))
    else:
        print(report_text(report, verbose=args.verbose))
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from .export.resources import fit_json, fit_text, sriov_json, sriov_text
    from .kernel.setup import fit_hotadd, fit_sriov, parse_bar_spec

    if bool(args.sriov) == bool(args.port):
        raise CliError("give either --port BDF with --bar KIND:SIZE (hot-add), or --sriov PF --vfs N")
    if args.sriov:
        if args.vfs is None:
            raise CliError("--sriov needs --vfs N")
        pf = _addr(args.sriov)
        t = _load(args.source)
        if pf not in t.functions:
            raise CliError(f"--sriov {pf}: no such device in {t.source.location}")
        try:
            res = fit_sriov(t, pf, args.vfs)
        except (ValueError, KeyError) as e:
            raise CliError(str(e).strip("'\"")) from None
        if args.json:
            _print_json(envelope("sriov-fit", t, sriov_json(res)))
        else:
            print(sriov_text(res))
        return 0 if res.fits else 1
    if not args.bar and not args.buses and not args.bridge:
        raise CliError("--port needs at least one --bar KIND:SIZE (or --buses N for a bridge without BARs)")
    try:
        bars = [parse_bar_spec(b) for b in args.bar]
    except ValueError as e:
        raise CliError(f"--bar: {e}") from None
    port = _addr(args.port)
    t = _load(args.source)
    if port not in t.functions:
        raise CliError(f"--port {port}: no such device in {t.source.location}")
    now, now_port = t, port
    t, port, boot, fw = _fit_after_boot(args, t, port)
    from .kernel.context import resolve_context

    try:
        ctx = resolve_context(t, hotplug=args.hotplug, kernel=args.kernel, kernel_params=args.kernel_param, port=port)
        res = fit_hotadd(t, port, bars, buses=args.buses, bridge=args.bridge, context=ctx)
    except ValueError as e:
        raise CliError(str(e)) from None
    res = _fit_reboot_remedies(args, res, now, now_port, fw, bars, boot)
    if args.json:
        _print_json(envelope("fit", t, _fit_boot_json(fit_json(res), boot)))
    else:
        print(_fit_boot_text(boot) + fit_text(res))
    return 0 if res.fits else 1


def cmd_diff(args: argparse.Namespace) -> int:
    from .export.diff import diff_json, diff_text, differs, parse_only
    from .kernel.diff import diff_topologies

    sections = parse_only(args.only)
    old = _load(args.old)
    new = _load(args.new)
    d = diff_topologies(old, new)
    if args.json:
        _print_json(diff_json(d, sections))
    else:
        print(diff_text(d, sections))
    return 1 if differs(d, sections) else 0


def _pci_words(cmdline: str | None) -> str:
    return " ".join(w for w in (cmdline or "").split() if w.startswith("pci="))


def cmd_boot(args: argparse.Namespace) -> int:
    from .export.boot import boot_json, boot_text
    from .kernel.setup.boot import predict_boot
    from .model.firmware import attached_firmware
    from .sources.dmesg import load_dmesg

    t = _load(args.source)
    fw = load_dmesg(args.source, args.dmesg) if args.dmesg else attached_firmware(t)
    if args.kernel_param:
        params = " ".join(args.kernel_param)
    else:  # the next boot with the same command line: the source itself
        params = _pci_words(t.source.kernel_cmdline or (fw.cmdline if fw is not None else None))
    res = predict_boot(t, fw, kernel_params=params, kernel=args.kernel)
    where = fw.path if fw is not None else None
    if args.json:
        _print_json(boot_json(res, where))
    else:
        print(boot_text(res, where, messages=not args.quiet), end="")
    return 0 if res.firmware_known else 1


def _fit_after_boot(args: argparse.Namespace, t: Topology, port: Address):
    """``fit --after-boot``: the machine after that reboot, and the port's address on it."""
    from .kernel.setup.boot import predict_boot
    from .model.firmware import attached_firmware

    if args.after_boot is None:
        return t, port, None, None
    fw = attached_firmware(t)  # the source's kernel log, read with it
    boot = predict_boot(t, fw, kernel_params=args.after_boot)
    if boot.predicted is None:
        raise CliError(f"--after-boot: {boot.warnings[0] if boot.warnings else 'the firmware state is unknown'}")
    new_port = dict(boot.address_map).get(port)
    if new_port is None:
        raise CliError(f"--after-boot: {port} is not in the kernel log's enumeration")
    return boot.predicted, new_port, boot, fw


def _fit_reboot_remedies(args: argparse.Namespace, res, now: Topology, now_port: Address, fw, bars, boot):
    """After ``--after-boot``, boot-parameter remedies start from the machine as it is now."""
    from .kernel.setup.reboot import with_reboot_remedies

    if res.fits or boot is None:
        return res
    return with_reboot_remedies(res, now, fw, bars, buses=args.buses, port=now_port,
                                base_params=boot.cmdline if boot is not None else None)


def _fit_boot_json(doc: dict, boot) -> dict:
    if boot is not None:
        doc["after_boot"] = {"kernel_params": boot.cmdline, "kernel": boot.kernel, "changes": boot.diff.lines(),
                             "unassigned": list(boot.unassigned)}
    return doc


def _fit_boot_text(boot) -> str:
    if boot is None:
        return ""
    lines = [f"after a reboot with {boot.cmdline or 'no pci= parameters'} (predicted from the kernel log, Linux {boot.kernel}):"]
    lines += [f"  {ln}" for ln in boot.diff.lines()] or ["  the layout does not change"]
    return "\n".join(lines) + "\n"


# ---- plans ---------------------------------------------------------------------------


def _source_spec_for_plan(spec: str | None) -> str:
    """What a plan records as its SOURCE: absolute paths, so the plan works from anywhere."""
    if not spec or spec.startswith("builtin:"):
        return spec or ""
    return os.path.abspath(spec)


def _plan_topology(plan, source: str | None) -> Topology:
    spec = source if source is not None else (plan.source.spec or None)
    return _load(spec)


def cmd_plan_new(args: argparse.Namespace) -> int:
    from .plan import new_plan, save_plan

    from .plan import dump_plan, parse_plan

    t = _load(args.source)
    plan = new_plan(t, _source_spec_for_plan(args.source))
    # What we write must read back: check the text exactly as `plan show` will parse it.
    parse_plan(dump_plan(plan), args.output)
    if args.output == "-":
        _write_document(dump_plan(plan))
        return 0
    save_plan(plan, args.output, overwrite=args.force)
    print(f"wrote {args.output}: an empty plan for {t.source.location} ({len(t)} functions)")
    return 0


def cmd_plan_add(args: argparse.Namespace) -> int:
    from .plan import add_action, load_plan, render_plan, save_plan

    if not args.action:
        raise CliError("plan add needs an ACTION (bind, unbind, assign, sriov, mdev, mdev-remove, hot-add, hot-remove, trust, kernel-param)")
    plan = load_plan(args.plan)
    words = list(args.action)
    if words and words[0] == "hot-add" and "--from" in words:
        words = _expand_hot_add_from(words)
    plan = add_action(plan, words)
    _refuse_impossible_mdev(plan)
    save_plan(plan, args.plan, overwrite=True)
    print(render_plan(plan))
    return 0


def _refuse_impossible_mdev(plan) -> None:  # noqa: ANN001 - Plan
    """An mdev action the plan's source shows cannot work is refused (plan/mdev_check.py)."""
    from .plan.actions import AssignMdev, Mdev, MdevRemove
    from .plan.mdev_check import refusal

    action = plan.actions[-1]
    if not isinstance(action, (Mdev, MdevRemove, AssignMdev)) or not plan.source.spec:
        return
    try:
        t = _load(plan.source.spec)
    except SourceError:
        return  # the source is not here: check --source tells later
    why = refusal(t, action, plan.actions[:-1])
    if why:
        raise CliError(f"plan add refused: {why}")


def _expand_hot_add_from(words: list[str]) -> list[str]:
    """``hot-add PORT --from SOURCE[#BDF]``: a device described in another source (e.g. a
    YAML card of planned hardware) becomes the words of a hot-add with its BARs and bus needs."""
    from .plan.actions import hot_add_like

    i = words.index("--from")
    if i + 1 >= len(words):
        raise CliError("hot-add --from needs SOURCE[#BDF] (a YAML topology of the device to add)")
    spec = words[i + 1]
    rest = words[:i] + words[i + 2 :]
    src, _, bdf = spec.partition("#")
    t = _load(src)
    if bdf:
        top = t.get(_addr(bdf))
        if top is None:
            raise CliError(f"--from {spec}: no device {bdf} in {t.source.location}")
    else:
        roots = t.roots()
        if len(roots) != 1:
            raise CliError(f"--from {src}: it holds {len(roots)} top-level devices; name one as {src}#BDF")
        top = t.functions[roots[0]]
    if len(rest) < 2:
        raise CliError("hot-add needs the PORT")
    like = hot_add_like(_addr(rest[1]), top).words()
    return like + [w for w in rest[2:]]


def cmd_plan_show(args: argparse.Namespace) -> int:
    from .plan import load_plan, render_plan

    plan = load_plan(args.plan)
    if args.json:
        from .export.plan_json import plan_json

        _print_json(plan_json(plan))
    else:
        print(render_plan(plan))
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    from .export.trust import trust_json, trust_text

    t = _load(args.source)
    if args.json:
        _print_json(trust_json(t))
    else:
        print(trust_text(t))
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    from .completion import script

    sys.stdout.write(script(args.shell))
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    from .completion import candidates, words_from_line

    if args.line is not None:
        words, cur_index = words_from_line(args.line, args.point)
    else:
        words, cur_index = list(args.words), args.cword
    for c in candidates(build_parser(), words, cur_index, shell=args.shell):
        print(c)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .plan import check, has_errors, load_plan, render_findings

    plan = load_plan(args.plan)
    t = _plan_topology(plan, args.source)
    findings = check(plan, t)
    changes = _drift_changes(plan, t, args.source) if any(f.code == "DRIFT" for f in findings) else None
    if changes:
        from dataclasses import replace

        from .export.diff import changes_inline

        detail = changes_inline(changes)
        findings = [replace(f, message=f"{f.message}. What changed for the plan's devices: {detail}")
                    if f.code == "DRIFT" else f for f in findings]
    if args.json:
        from .plan import findings_json

        doc = findings_json(findings, plan)
        if changes is not None:
            doc["changes"] = [{"section": c.section, **c.data, "text": c.text} for c in changes]
        _print_json(envelope("check", t, doc))
    else:
        print(render_findings(findings))
    return 1 if has_errors(findings) else 0


def _drift_changes(plan, t: Topology, source: str | None) -> list:
    """The diff entries, from the machine the plan was made for to ``t``, that touch the
    plan's devices (the plan's own source when it still loads and matches it, else its
    fingerprint)."""
    from .export.diff import plan_drift_changes
    from .plan import drift

    old = None
    if source is not None and plan.source.spec:
        try:
            cand = _load(plan.source.spec)
        except (SourceError, OSError, ValueError):
            cand = None
        if cand is not None and not drift(plan, cand):
            old = cand
    return plan_drift_changes(plan, t, old)[1]


def cmd_export(args: argparse.Namespace) -> int:
    from .export.plan_exports import PlanHasErrors, export, export_files
    from .plan import load_plan, render_findings

    plan = load_plan(args.plan)
    t = _plan_topology(plan, args.source)
    try:
        files = export_files(plan, t, args.to)
        single = export(plan, t, args.to, args.item) if (args.item or len(files) == 1) else None
    except PlanHasErrors as e:
        print(f"{PROG}: refusing to export: the plan has errors", file=sys.stderr)
        print(render_findings([f for f in e.findings if f.severity == "error"]), file=sys.stderr)
        return 1
    if args.output is None or args.output == "-":
        if single is None:
            raise CliError(
                f"this export makes {len(files)} documents ({', '.join(files)}): pick one with --item NAME "
                "or write them all with -o DIRECTORY"
            )
        _write_document(single)
        return 0
    if single is not None and not os.path.isdir(args.output):
        write_atomic(args.output, single, overwrite=args.force, executable=args.to in ("shell", "undo"))
        print(f"wrote {args.output}")
        return 0
    if not files:
        raise CliError(f"nothing to export: the plan makes no {args.to} documents")
    # All or nothing: every target is checked before any is written (fileio.write_many_atomic).
    made = not os.path.lexists(args.output)
    if made:
        os.mkdir(args.output)
    try:
        write_many_atomic(
            [(os.path.join(args.output, name), text, name.endswith(".sh")) for name, text in files.items()],
            overwrite=args.force,
        )
    except BaseException:
        if made:
            try:
                os.rmdir(args.output)
            except OSError:
                pass
        raise
    for name in files:
        print(f"wrote {os.path.join(args.output, name)}")
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    from .fileio import check_target
    from .sources.snapshot import capture

    if args.output == "-":  # the archive to standard output, e.g. piped over ssh
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory(prefix="pci-explorer-capture-") as tmp:
            path = os.path.join(tmp, "snapshot.tar.gz")
            report = capture(args.root, path, include_serials=args.include_serials)
            out = sys.stdout.raw if isinstance(sys.stdout, _CleanStream) else sys.stdout
            out.flush()
            with open(path, "rb") as f:
                shutil.copyfileobj(f, out.buffer)
            out.buffer.flush()
        print(f"wrote the snapshot to standard output: {report.summary()}", file=sys.stderr)
        return 0
    check_target(args.output, overwrite=args.force)  # never over a device, FIFO or link, even with --force
    report = capture(args.root, args.output, include_serials=args.include_serials, overwrite=args.force)
    print(f"wrote {args.output}: {report.summary()}" if hasattr(report, "summary") else f"wrote {args.output}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .sources.yaml_topology import dump_yaml

    t = _load(args.source)
    text = dump_yaml(t)
    if _write_output(args.output, text, args.force):
        print(f"wrote {args.output} ({len(t)} functions)")
    return 0


def cmd_topologies(args: argparse.Namespace) -> int:
    from .sources import builtin_descriptions

    for name, desc in builtin_descriptions():
        print(f"{name:32} {desc}")
    return 0


def cmd_walkthrough(args: argparse.Namespace) -> int:
    from .ui.walkthrough import WalkthroughError, get_walkthrough, walkthrough_names

    try:
        if args.list or not args.name:
            for name in walkthrough_names():
                w = get_walkthrough(name)
                print(f"{name:28} {w.title}: {w.summary}")
            if not args.list and not args.name:
                print("\nstart one with: pci-explorer walkthrough NAME", file=sys.stderr)
            return 0
        w = get_walkthrough(args.name)
    except WalkthroughError as e:
        raise CliError(str(e)) from None
    topology = _load(w.topology)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(f"{w.title} ({len(w.steps)} steps, on {w.topology}): run in a terminal to follow it", file=sys.stderr)
        for i, step in enumerate(w.steps, 1):
            print(f"{i}. {step.title}")
        return 0
    from .ui.app import ExplorerApp

    ExplorerApp(topology, source=w.topology, walkthrough=w).run()
    return 0


def cmd_screenshots(args: argparse.Namespace) -> int:
    from .ui.screenshots import run

    for path in run(args.out, args.source, args.device, args.group_device, args.walkthrough):
        print(f"wrote {path}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .kernel.groups import predict_groups
    from .sources.synthetic import generate

    if not 1 <= args.functions <= MAX_GENERATE:
        raise CliError(f"--functions must be 1 to {MAX_GENERATE}")
    if args.format == "sysfs" and args.output == "-":
        raise CliError("a sysfs tree cannot go to standard output: give a new folder with -o")
    if args.output != "-":
        from .fileio import check_target

        if args.format == "yaml":
            check_target(args.output, overwrite=args.force)  # refuse before the work, not after
        elif os.path.lexists(args.output) and not (os.path.isdir(args.output) and not os.path.islink(args.output)
                                                    and not os.listdir(args.output)):
            if args.force and os.path.isdir(args.output) and not os.path.islink(args.output):
                raise CliError(f"{args.output}: not empty; give a new directory for a sysfs tree")
            check_target(args.output, overwrite=False, directory=True)
            raise OutputExists(args.output)
    t = generate(args.functions, args.seed, label_groups=lambda topo: predict_groups(topo).group_of)
    if args.format == "yaml":
        from .sources.yaml_topology import dump_yaml

        if not _write_output(args.output, dump_yaml(t), args.force):
            return 0
    else:
        from .sources.sysfs_writer import write_sysfs_tree

        # Built beside the target and renamed into place: a killed run leaves no partial tree.
        write_tree_atomic(args.output, lambda tmp: write_sysfs_tree(t, tmp))
    print(f"wrote {args.output}: {len(t)} functions ({args.format}, seed {args.seed})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from textual_serve.server import Server  # noqa: F401  (is the web extra installed?)
    except ImportError:
        raise CliError("serving needs the web extra: pip install 'pci-explorer[web]'") from None
    import shlex

    if args.source is not None:
        _load(args.source)  # a bad SOURCE fails here, in one line, not in every browser tab
    parts = [sys.executable, "-m", "explorer", "tui"] + ([os.path.abspath(args.source) if os.path.exists(args.source) else args.source] if args.source else [])
    command = " ".join(shlex.quote(p) for p in parts)
    print(f"serving pci-explorer on http://{args.host}:{args.port}/ (ctrl+c stops)", file=sys.stderr)
    from .ui.web import make_server  # the page loads its font from this server, not the internet

    make_server(command, args.host, args.port).serve()
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    source = args.source
    notice = None
    plan = None
    compare = _load(args.compare) if getattr(args, "compare", None) else None
    plan_path = getattr(args, "plan", None)
    if plan_path:
        from .plan import load_plan

        plan = load_plan(plan_path)
        if source is None and plan.source.spec:
            source = plan.source.spec
    if source is None and plan is None:
        from .sources.sysfs import has_pci

        if not has_pci(live_root()):
            source = f"builtin:{FALLBACK_TOPOLOGY}"
            notice = f"This machine shows no PCI devices under /sys: opened the bundled topology {FALLBACK_TOPOLOGY!r} instead."
    under_web = "web_driver" in os.environ.get("TEXTUAL_DRIVER", "")
    interactive = under_web or (sys.stdin.isatty() and sys.stdout.isatty())
    if interactive and plan is None:
        # Check what SOURCE is now (one-line errors for a missing or unknown file), then let
        # the app load it in the background with a progress indicator: big machines open
        # at once and fill in.
        if source is not None:
            from .sources import detect_kind

            detect_kind(source)
        # A big sysfs tree's first rows are read while the app's modules load (in a child
        # process where one can be forked: early_preview.py); the app shows them, then loads
        # the rest.
        from .early_preview import EarlyPreview

        early = EarlyPreview(source) if compare is None else None
        from .ui.app import ExplorerApp

        ExplorerApp(source=source, notice=notice, compare=compare, early_preview=early).run()
        return 0
    topology = _load(source)
    if notice:
        print(notice, file=sys.stderr)
    if not interactive:
        from .export.topology import render_tree

        print("(not a terminal: printing the tree; run pci-explorer in a terminal for the interactive app)", file=sys.stderr)
        print(clean(render_tree(topology)))
        if compare is not None:
            from .export.diff import diff_text
            from .kernel.diff import diff_topologies

            print()
            print(clean(diff_text(diff_topologies(compare, topology))))
        return 0
    from .ui.app import ExplorerApp

    if plan is not None:
        from .plan import drift

        stop = drift(plan, topology)
        if stop:
            print(f"{PROG}: warning: {plan_path} does not match this source; the app shows the DRIFT finding", file=sys.stderr)
    ExplorerApp(topology, notice=notice, plan=plan, plan_path=plan_path, source=source, compare=compare).run()
    return 0


# ---- parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=PROG,
        description="Explore a Linux machine's PCI/IOMMU topology and plan changes the kernel will accept.",
    )
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("tui", help="open the interactive explorer (the default)")
    s.add_argument("source", nargs="?", help=SOURCE_HELP)
    s.add_argument("--plan", metavar="PLAN.yaml", help="open with this plan (its source, unless SOURCE is given)")
    s.add_argument("--compare", metavar="OLD", help="mark what changed since OLD (another source of the same machine)")
    s.set_defaults(func=cmd_tui)

    s = sub.add_parser("tree", help="print a machine's PCI tree")
    s.add_argument("source", nargs="?", help=SOURCE_HELP)
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.add_argument("--pretty", action="store_true", help=PRETTY_HELP)
    s.set_defaults(func=cmd_tree)

    s = sub.add_parser("trust", help="external-facing ports, untrusted and removable devices, what that costs, Thunderbolt authorization")
    s.add_argument("source", nargs="?", help=SOURCE_HELP)
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.set_defaults(func=cmd_trust)

    s = sub.add_parser("show", help="every fact about one device")
    s.add_argument("source", help=SOURCE_HELP + " (may be omitted: `show BDF`)")
    s.add_argument("bdf", nargs="?", help="the device, [dddd:]bb:dd.f")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.add_argument("--pretty", action="store_true", help=PRETTY_HELP)
    s.set_defaults(func=cmd_show)

    s = sub.add_parser(
        "groups",
        help="IOMMU groups: as reported, or predicted from the hardware with reasons (--compare: exit 0 equal, 1 differ, 2 none reported)",
    )
    s.add_argument("source", nargs="?", help=SOURCE_HELP)
    which = s.add_mutually_exclusive_group()
    which.add_argument("--predict", action="store_true", help="the groups predicted from the hardware (default when the source reports none)")
    which.add_argument("--reported", action="store_true", help="the groups the kernel reported (default when there are some)")
    which.add_argument("--compare", action="store_true", help="differences between predicted and reported; exit 0 equal, 1 differ, 2 none reported")
    s.add_argument("--explain", action="store_true", help="say why each group is what it is")
    s.add_argument("-v", "--verbose", action="store_true", help="also each function's reset methods")
    s.add_argument("--vfio-ids", metavar="GROUP|BDF", help="print the vfio-pci.ids= value and the driverctl lines for this group (or the group of this device)")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.add_argument("--pretty", action="store_true", help=PRETTY_HELP)
    s.add_argument("--assume-acs", action="append", default=[], metavar="BDF", help="what-if: treat this bridge as ACS-isolated (repeatable)")
    s.add_argument("--acs-override", metavar="SPEC", help="what-if: the out-of-tree pcie_acs_override=SPEC (downstream,multifunction,id:vvvv:dddd)")
    s.add_argument("--move", metavar="BDF=PORT", help="what-if: the device (its slot) plugged into PORT's slot instead")
    s.set_defaults(func=cmd_groups)

    s = sub.add_parser("resources", help="bus numbers and bridge windows: used, free, largest aligned blocks")
    s.add_argument("source", nargs="?", help=SOURCE_HELP)
    s.add_argument("--port", metavar="BDF", help="only this bridge and the bridges above it")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.add_argument("--pretty", action="store_true", help=PRETTY_HELP)
    s.add_argument("-v", "--verbose", action="store_true", help="list every used range")
    s.set_defaults(func=cmd_resources)

    s = sub.add_parser("fit", help="will a hot-added device or N SR-IOV VFs fit? (exit 0 fits, 1 does not)")
    s.add_argument("source", nargs="?", help=SOURCE_HELP)
    s.add_argument("--port", metavar="BDF", help="the hotplug port to add a device below")
    s.add_argument("--bar", action="append", default=[], metavar="[INDEX:]KIND:SIZE", help="a BAR of the new device: KIND io, mem32, mem64, pref32, pref64; SIZE like 256, 16M, 4G (repeatable)")
    s.add_argument("--buses", type=int, default=0, metavar="N", help="bus numbers the device needs below it (a switch or bridge)")
    s.add_argument("--hotplug", choices=HOTPLUG_CHOICES, default=None,
                   help="the slot's hotplug driver: native (pciehp), acpi (acpiphp) or shpchp; default: the one the "
                        "source shows, else every one is computed (overrides what the source shows)")
    s.add_argument("--kernel", choices=KERNEL_CHOICES, default=None,
                   help="the kernel rules to predict with; default: from the source's kernel release, else both")
    s.add_argument("--bridge", choices=("switch", "pci", "shpc"), default=None,
                   help="the hot-added device is a bridge: a PCIe switch upstream port, a PCIe-to-PCI bridge, or one "
                        "with SHPC (implies --buses 1)")
    s.add_argument("--kernel-param", action="append", default=[], metavar="pci=...", help="boot parameters to assume in addition to the source's (repeatable)")
    s.add_argument("--after-boot", metavar="pci=...", help="first reboot with these pci= options (predicted from the source's kernel log), then hot-add")
    s.add_argument("--sriov", metavar="PF", help="the SR-IOV physical function")
    s.add_argument("--vfs", type=int, metavar="N", help="how many VFs to enable")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.add_argument("--pretty", action="store_true", help=PRETTY_HELP)
    s.set_defaults(func=cmd_fit)

    s = sub.add_parser("diff", help="what changed between two sources of one machine (exit 0 none, 1 differences)")
    s.add_argument("old", help="the machine before: " + SOURCE_HELP.split("; omitted")[0])
    s.add_argument("new", help="the machine after (same kinds of SOURCE)")
    s.add_argument("--only", metavar="SECTIONS", help="comma-separated: context, devices, groups, resources, drivers, links, sriov")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.set_defaults(func=cmd_diff)

    s = sub.add_parser("boot", help="the next boot with other kernel parameters: layout, diff and the kernel's messages (exit 1: firmware state unknown)")
    s.add_argument("source", nargs="?", help=SOURCE_HELP + "; its kernel log (a snapshot's dmesg.txt) gives the firmware's state")
    s.add_argument("--kernel-param", action="append", default=[], metavar="pci=...", help="the next boot's pci= options (repeatable); omitted: the source's own, which reproduces the source")
    s.add_argument("--kernel", choices=("6.1", "6.12"), help="the kernel to model (default: the source's)")
    s.add_argument("--dmesg", metavar="FILE", help="the kernel log of the boot SOURCE was taken from (when SOURCE keeps none)")
    s.add_argument("-q", "--quiet", action="store_true", help="leave out the kernel's messages")
    s.add_argument("--json", action="store_true", help="{format, source, topology (tree --json schema), diff, ...}")
    s.set_defaults(func=cmd_boot)

    s = sub.add_parser("plan", help="make and edit a plan: plan new | plan add | plan show")
    psub = s.add_subparsers(dest="plan_command", metavar="PLAN_COMMAND", required=True)
    ps = psub.add_parser("new", help="an empty plan for SOURCE")
    ps.add_argument("source", nargs="?", help=SOURCE_HELP)
    ps.add_argument("-o", "--output", required=True, help="the plan file to write (YAML)")
    ps.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    ps.set_defaults(func=cmd_plan_new)
    ps = psub.add_parser(
        "add",
        help="append an action (saved atomically)",
        description="ACTION is one of: bind BDF --driver NAME | unbind BDF | assign BDF --vm NAME [--group] | "
        "sriov PF --vfs N | mdev PARENT --type TYPE [--count N] [--vm NAME] | mdev-remove UUID | assign MDEV-UUID --vm NAME | hot-add PORT (--bar KIND:SIZE ... [--buses N] | "
        "--from SOURCE[#BDF]) [--hotplug acpi|native|shpchp] | "
        "hot-remove BDF | trust PORT --external|--internal | kernel-param NAME=VALUE. "
        "hot-add without --hotplug uses the slot's hotplug driver the source shows (acpiphp, pciehp); "
        "where the source does not say, check computes each and the worst case counts",
    )
    ps.add_argument("plan", help="the plan file (YAML)")
    ps.add_argument("action", nargs=argparse.REMAINDER, help="the action and its arguments")
    ps.set_defaults(func=cmd_plan_add)
    ps = psub.add_parser("show", help="print a plan")
    ps.add_argument("plan", help="the plan file (YAML)")
    ps.add_argument("--json", action="store_true", help=JSON_HELP)
    ps.set_defaults(func=cmd_plan_show)

    s = sub.add_parser("check", help="validate a plan against the kernel's rules (exit 0 no errors, 1 errors)")
    s.add_argument("plan", help="the plan file (YAML)")
    s.add_argument("--source", help="check against this SOURCE instead of the plan's own")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.add_argument("--pretty", action="store_true", help=PRETTY_HELP)
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("export", help="render a validated plan (refused while errors remain)")
    s.add_argument("plan", help="the plan file (YAML)")
    s.add_argument("--to", required=True, choices=EXPORT_TARGETS, metavar="TARGET",
                   help="one of: " + ", ".join(EXPORT_TARGETS) + " (json: docs/json.md)")
    s.add_argument("-o", "--output", help="file (or directory, for several documents); default standard output")
    s.add_argument("--item", help="for libvirt: the VM; for mdevctl: the mdev UUID")
    s.add_argument("--source", help="export against this SOURCE instead of the plan's own")
    s.add_argument("--force", action="store_true", help="replace existing files")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("snapshot", help="capture this machine's PCI sysfs into a .tar.gz for use elsewhere")
    s.add_argument("-o", "--output", required=True, help="the archive to write (.tar.gz)")
    s.add_argument("--root", default="/", help="capture the tree under this directory instead of / (default: /)")
    s.add_argument("--include-serials", action="store_true", help="keep device serial numbers (left out by default)")
    s.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    s.set_defaults(func=cmd_snapshot)

    s = sub.add_parser("convert", help="write any source as a YAML topology")
    s.add_argument("source", nargs="?", help=SOURCE_HELP)
    s.add_argument("-o", "--output", required=True, help="the YAML file to write, or - for standard output")
    s.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("walkthrough", help="guided, checked lessons in the app (--list to see them)")
    s.add_argument("name", nargs="?", help="the walkthrough to start")
    s.add_argument("--list", action="store_true", help="list the walkthroughs")
    s.set_defaults(func=cmd_walkthrough)

    s = sub.add_parser("serve", help="the same app in a web page (needs the web extra: textual-serve)")
    s.add_argument("source", nargs="?", help=SOURCE_HELP)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="TCP port to listen on (default 8000)")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("generate", help="a synthetic large machine, as a YAML topology or a sysfs tree lspci reads")
    s.add_argument("--functions", type=int, required=True, metavar="N", help="how many PCI functions the machine has")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="random seed: the same seed makes the same machine (default 0)")
    s.add_argument("--format", choices=("sysfs", "yaml"), default="yaml", help="a YAML topology (default) or a sysfs tree")
    s.add_argument("-o", "--output", required=True, help="a YAML file, or a new directory for the sysfs tree")
    s.add_argument("--force", action="store_true", help="replace an existing YAML file")
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("screenshots", help="regenerate the SVG screenshots of the main views (for the README)")
    s.add_argument("--out", default="screenshots", help="directory (default: screenshots)")
    s.add_argument("--source", default="builtin:amd-laptop-dgpu-usb4", help="the machine to show")
    s.add_argument("--device", default="0000:03:00.0", help="the device selected in the topology view")
    s.add_argument("--group-device", default="0000:03:00.0", help="the device whose group is planned")
    s.add_argument("--walkthrough", default="gpu-passthrough", help="also shoot step 1 of this walkthrough")
    s.set_defaults(func=cmd_screenshots)

    s = sub.add_parser("topologies", help="list the bundled topologies (use as builtin:NAME)")
    s.set_defaults(func=cmd_topologies)

    s = sub.add_parser("completion", help="print a shell completion script: bash, zsh or fish (e.g. source <(pci-explorer completion bash))")
    s.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell to complete in")
    s.set_defaults(func=cmd_completion)

    # The shells' completion functions ask this hidden helper for candidates.
    s = sub.add_parser("__complete")
    s.add_argument("--shell", default="bash", help="the shell asking")
    s.add_argument("--line", help="the command line up to the cursor (bash COMP_LINE)")
    s.add_argument("--point", type=int, help="the cursor position in --line (bash COMP_POINT)")
    s.add_argument("--cword", type=int, default=0, help="index of the word being completed")
    s.add_argument("words", nargs="*", help="the words of the command line")
    s.set_defaults(func=cmd_complete)
    _hide_subcommand(sub, "__complete")
    _add_pretty(p)
    return p


def _add_pretty(parser: argparse.ArgumentParser) -> None:
    """Every command with --json also takes --pretty (indent even when not on a terminal)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in set(action.choices.values()):
                opts = sp._option_string_actions
                if "--json" in opts and "--pretty" not in opts:
                    sp.add_argument("--pretty", action="store_true", help=PRETTY_HELP)
                _add_pretty(sp)


def _hide_subcommand(sub: argparse._SubParsersAction, name: str) -> None:
    """Leave a helper subcommand out of the help listing (it still runs)."""
    sub._choices_actions = [a for a in sub._choices_actions if a.dest != name]


def _on_sigterm(signum, frame):  # type: ignore[no-untyped-def]
    # Unwind like ctrl+c, so temporary files and folders are removed on the way out.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["tui"])
    global _JSON_PRETTY
    _JSON_PRETTY = True if getattr(args, "pretty", False) else None
    old_term = None
    try:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    except (ImportError, ValueError, OSError):  # pragma: no cover - no signals here
        old_term = None
    out, err = sys.stdout, sys.stderr
    if args.command not in ("tui", "walkthrough", "serve", "screenshots"):
        sys.stdout, sys.stderr = _CleanStream(out), _CleanStream(err)
    try:
        return _run(args)
    finally:
        sys.stdout, sys.stderr = out, err
        if old_term is not None:
            import signal

            signal.signal(signal.SIGTERM, old_term)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except SourceError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except (CliError, OutputExists, ValueError) as e:
        # Plan files, action words and exports raise ValueError subclasses with one-line messages.
        print(f"{PROG}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `pci-explorer tree | head`: the reader went away; not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"{PROG}: error: {one_line(where + str(e.strerror or e))}", file=sys.stderr)
        return 2
    except RecursionError:
        print(f"{PROG}: error: input nested too deeply", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{PROG}: error: out of memory (an input far larger than a real machine's?)", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the promise is one line, never a traceback
        if os.environ.get("PCI_EXPLORER_DEBUG"):
            raise
        print(f"{PROG}: error: internal error ({type(e).__name__}: {one_line(str(e))[:300]}); "
              "set PCI_EXPLORER_DEBUG=1 for the traceback and please report it", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
