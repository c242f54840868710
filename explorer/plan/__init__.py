"""Layer: plan."""
