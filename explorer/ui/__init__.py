"""Layer: ui."""
