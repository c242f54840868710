"""Layer 1: immutable domain types. Imports nothing else from the project."""

from .address import Address, AddressError, is_address
from .device import (
    ABSENT,
    ACS_BITS,
    AcsCap,
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
    Maybe,
    PasidCap,
    PcieType,
    PriCap,
    RcecCap,
    SlotInfo,
    SriovCap,
    Window,
    WindowKind,
    acs_flags_parse,
    acs_flags_str,
    known,
    present,
)
from .mdev import MdevInfo, MdevInstance, MdevParent, MdevType, is_uuid
from .topology import SourceInfo, Topology, TopologyError

__all__ = [
    "ABSENT", "ACS_BITS", "AcsCap", "Address", "AddressError", "AerCap", "AriCap", "AtsCap", "Bar",
    "BarKind", "BridgeInfo", "MdevInfo", "MdevInstance", "MdevParent", "MdevType", "is_uuid", "Capabilities", "Function", "HostBridge", "LinkInfo", "Maybe", "PasidCap",
    "PcieType", "PriCap", "RcecCap", "SlotInfo", "SourceInfo", "SriovCap", "Topology", "TopologyError",
    "Window", "WindowKind", "acs_flags_parse", "acs_flags_str", "is_address", "known", "present",
]
