"""ATS, PRI and PASID: what the kernel would enable, on bundled real machines."""

from __future__ import annotations

from explorer.kernel import ats
from explorer.kernel.trust import assess_all
from explorer.model import Address, present
from explorer.sources import load_source


def test_ats_is_refused_to_untrusted_devices():
    """The iGPU has ATS and is trusted; the same device reported removable loses it."""
    from dataclasses import replace

    from explorer.model import Topology

    t = load_source("builtin:tb4-laptop-egpu")
    igpu = Address.parse("0000:00:02.0")
    assert present(t[igpu].caps.ats)
    f = ats.ats(t, igpu, assess_all(t)[igpu])
    assert f.supported is True
    moved = Topology.build([replace(fn, removable=True) if fn.address == igpu else fn for fn in t], t.host_bridges, t.source)
    tr = assess_all(moved)[igpu]
    assert tr.untrusted is True
    f = ats.ats(moved, igpu, tr)
    assert f.supported is False and "untrusted" in f.reason
    assert ats.pri(moved, igpu, tr).supported is not True


def test_dsa_pasid_and_vmd_subdevice():
    t = load_source("builtin:dsa-siov")
    with_pasid = [a for a, fn in t.functions.items() if present(fn.caps.pasid)]
    assert with_pasid
    for a in with_pasid:
        f = ats.pasid(t, a)
        assert f.supported in (True, False, None) and f.reason
    v = load_source("builtin:vmd-nvme-laptop")
    nvme = Address.parse("10000:e1:00.0")
    assert ats.ats(v, nvme, None).supported in (False, None)


def test_no_capability_means_no():
    t = load_source("builtin:switch-no-acs")
    a = Address.parse("0000:03:00.0")
    feats = {f.name: f for f in ats.features(t, a, None)}
    assert feats["ATS"].supported is False and feats["PASID"].supported is False
