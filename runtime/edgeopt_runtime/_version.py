"""The edgeopt-runtime version, in one place so that the manifest and the CLI can report it."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
