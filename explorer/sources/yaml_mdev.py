"""The ``mdev:`` section of a YAML topology (docs/yaml-format.md): mediated-device parents,
their types and active mdevs (model/mdev.py). Read by yaml_topology's parser, written by
its writer; without the section the topology's mdevs are unknown.

```yaml
mdev:
  iommu-scalable-mode: false        # optional: Intel VT-d scalable mode (unknown if left out)
  parents:
    - name: "0000:00:02.0"          # a PCI function of this topology, or e.g. "mtty"
      driver: "i915"                # optional (the type ids' prefix)
      bus: "pci"                    # optional; "pci" for a function of this topology
      path: "sys/devices/virtual/mtty/mtty"   # optional, non-PCI parents
      types:                        # left out: unknown; [] none
        - id: "i915-GVTg_V5_4"
          name: "GVTg_V5_4"
          description: "low_gm_size: 128MB ..."   # none: the driver shows no description
          device-api: "vfio-pci"
          available-instances: 1
  mdevs:
    - uuid: "6d6b3c52-7d3e-4c1b-9a0e-2b1f0c9d8e7a"
      parent: "0000:00:02.0"
      type: "i915-GVTg_V5_4"
      iommu-group: "13"             # none: no group (no vfio driver bound)
      driver: "intel_vgpu_mdev"
```
"""

from __future__ import annotations

from typing import Any

from ..model import ABSENT, Address, MdevInfo, MdevInstance, MdevParent, MdevType, Topology, is_address, is_uuid

KEY = "mdev"
_KEYS = ("iommu-scalable-mode", "parents", "mdevs")
_PARENT_KEYS = ("name", "bus", "driver", "path", "types")
_TYPE_KEYS = ("id", "name", "description", "device-api", "available-instances")
_MDEV_KEYS = ("uuid", "parent", "type", "iommu-group", "driver")


def parse(p: Any, node: Any, functions: dict[Address, Any]) -> MdevInfo:  # noqa: ANN401 - yaml_topology._Parser, yaml Node
    """The ``mdev:`` mapping, checked like the rest of the file (one-line errors with line and field)."""
    top = p.mapping(node, KEY, _KEYS, "the mdev section")

    def opt_text(m: dict, key: str, field: str) -> Any:
        if key not in m or p.is_null(m[key][1]):
            return None
        if p.is_absent(m[key][1]):
            return ABSENT
        return p.text(m[key][1], f"{field}.{key}")

    sm = None
    if "iommu-scalable-mode" in top and not p.is_null(top["iommu-scalable-mode"][1]):
        sm = p.bool(top["iommu-scalable-mode"][1], f"{KEY}.iommu-scalable-mode")
    parents: list[MdevParent] = []
    names: dict[str, int] = {}
    if "parents" in top and not p.is_null(top["parents"][1]):
        for i, pn in enumerate(p.sequence(top["parents"][1], f"{KEY}.parents", "mdev parents")):
            fld = f"{KEY}.parents[{i}]"
            m = p.mapping(pn, fld, _PARENT_KEYS, "an mdev parent")
            if "name" not in m:
                raise p.err(pn, "missing: the parent's device name (a PCI address or e.g. mtty)", f"{fld}.name")
            name = p.text(m["name"][1], f"{fld}.name")
            if name in names:
                raise p.err(m["name"][1], f"parent {name!r} listed twice", f"{fld}.name")
            names[name] = i
            bus = opt_text(m, "bus", fld)
            if bus is None and is_address(name):
                bus = "pci"
            if bus == "pci":
                if not is_address(name):
                    raise p.err(m["name"][1], f"a PCI parent is named by its address, got {name!r}", f"{fld}.name")
                if Address.parse(name) not in functions:
                    raise p.err(m["name"][1], f"no PCI function {name} in this topology", f"{fld}.name")
            types = None
            if "types" in m and not p.is_null(m["types"][1]):
                types = tuple(_type(p, tn, f"{fld}.types[{j}]", opt_text)
                              for j, tn in enumerate(p.sequence(m["types"][1], f"{fld}.types", "mdev types")))
                ids = [t.id for t in types]
                if len(set(ids)) != len(ids):
                    raise p.err(m["types"][1], "the same type id twice", f"{fld}.types")
            path = opt_text(m, "path", fld)
            parents.append(MdevParent(name, bus if bus is not ABSENT else None, opt_text(m, "driver", fld),
                                      path if isinstance(path, str) else None, types))
    instances: list[MdevInstance] = []
    if "mdevs" in top and not p.is_null(top["mdevs"][1]):
        seen: set[str] = set()
        by_name = {x.name: x for x in parents}
        for i, mn in enumerate(p.sequence(top["mdevs"][1], f"{KEY}.mdevs", "mdevs")):
            fld = f"{KEY}.mdevs[{i}]"
            m = p.mapping(mn, fld, _MDEV_KEYS, "an mdev")
            for req in ("uuid", "parent"):
                if req not in m:
                    raise p.err(mn, f"missing: the mdev's {req}", f"{fld}.{req}")
            uuid = p.text(m["uuid"][1], f"{fld}.uuid")
            if not is_uuid(uuid):
                raise p.err(m["uuid"][1], f"not a lowercase UUID (8-4-4-4-12 hex digits): {uuid!r}", f"{fld}.uuid")
            if uuid in seen:
                raise p.err(m["uuid"][1], f"mdev {uuid} listed twice", f"{fld}.uuid")
            seen.add(uuid)
            parent = p.text(m["parent"][1], f"{fld}.parent")
            if parent not in by_name:
                raise p.err(m["parent"][1], f"no parent {parent!r} in mdev.parents", f"{fld}.parent")
            mtype = opt_text(m, "type", fld)
            mtype = mtype if isinstance(mtype, str) else None
            pt = by_name[parent]
            if mtype is not None and pt.types is not None and pt.type(mtype) is None:
                raise p.err(m["type"][1], f"parent {parent} has no type {mtype!r}", f"{fld}.type")
            instances.append(MdevInstance(uuid, parent, mtype, opt_text(m, "iommu-group", fld), opt_text(m, "driver", fld)))
    return MdevInfo(tuple(parents), tuple(instances), sm)


def _type(p: Any, node: Any, fld: str, opt_text: Any) -> MdevType:  # noqa: ANN401
    m = p.mapping(node, fld, _TYPE_KEYS, "an mdev type")
    if "id" not in m:
        raise p.err(node, "missing: the type id (its mdev_supported_types directory name)", f"{fld}.id")
    avail = None
    if "available-instances" in m and not p.is_null(m["available-instances"][1]):
        avail = p.int(m["available-instances"][1], f"{fld}.available-instances", 0, 1 << 32)
    name = opt_text(m, "name", fld)
    api = opt_text(m, "device-api", fld)
    return MdevType(p.text(m["id"][1], f"{fld}.id"), name if isinstance(name, str) else None,
                    opt_text(m, "description", fld), api if isinstance(api, str) else None, avail)


def dump(t: Topology) -> dict[str, Any] | None:
    """The section for ``t`` (None: mdevs unknown, so no section). Strings go through
    ``quote`` (the writer's double-quoting)."""
    info = t.mdev
    if info is None:
        return None
    from .yaml_topology import ABSENT_WORD, _Q

    def val(v: Any) -> Any:
        return ABSENT_WORD if v is ABSENT else _Q(v)

    doc: dict[str, Any] = {}
    if info.iommu_scalable_mode is not None:
        doc["iommu-scalable-mode"] = info.iommu_scalable_mode
    parents = []
    for par in info.parents:
        d: dict[str, Any] = {"name": _Q(par.name)}
        if par.bus is not None and not (par.bus == "pci" and is_address(par.name)):
            d["bus"] = _Q(par.bus)
        if par.driver is not None:
            d["driver"] = val(par.driver)
        if par.path is not None:
            d["path"] = _Q(par.path)
        if par.types is not None:
            types = []
            for mt in par.types:
                td: dict[str, Any] = {"id": _Q(mt.id)}
                if mt.name is not None:
                    td["name"] = _Q(mt.name)
                if mt.description is not None:
                    td["description"] = val(mt.description)
                if mt.device_api is not None:
                    td["device-api"] = _Q(mt.device_api)
                if mt.available_instances is not None:
                    td["available-instances"] = mt.available_instances
                types.append(td)
            d["types"] = types
        parents.append(d)
    doc["parents"] = parents
    mdevs = []
    for i in info.instances:
        d = {"uuid": _Q(i.uuid), "parent": _Q(i.parent)}
        if i.type is not None:
            d["type"] = _Q(i.type)
        if i.iommu_group is not None:
            d["iommu-group"] = val(i.iommu_group)
        if i.driver is not None:
            d["driver"] = val(i.driver)
        mdevs.append(d)
    doc["mdevs"] = mdevs
    return doc


__all__ = ["KEY", "dump", "parse"]
