"""actsearch: automated activation-function search."""
__version__ = "0.1.0"
