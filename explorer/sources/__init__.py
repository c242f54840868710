"""Layer: sources."""
