"""movenet: turn human movement into music."""

__version__ = "0.1.0"
