"""pci-explorer: understand a Linux machine's PCI/IOMMU topology and change it safely."""

__version__ = "0.1.0"
