"""Layer: kernel."""
