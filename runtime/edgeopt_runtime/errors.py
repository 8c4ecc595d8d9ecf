"""Exceptions raised by edgeopt-runtime.

Every message is one line a user can act on: it names the bad value or file and says how to fix it. The CLI
prints ``str(error)`` to stderr and exits with status 2; it never shows a traceback for these.
"""

from __future__ import annotations

__all__ = [
    "EdgeoptRuntimeError",
    "BundleInvalid",
    "BackendUnavailable",
    "InputError",
    "CacheError",
]


class EdgeoptRuntimeError(Exception):
    """Base class of every error edgeopt-runtime raises on purpose."""


class BundleInvalid(EdgeoptRuntimeError):
    """A bundle directory is incomplete, corrupted, tampered with, or of a schema this runtime cannot read."""


class BackendUnavailable(EdgeoptRuntimeError):
    """The inference backend asked for is not installed, or the bundle has no artifact for it."""


class InputError(EdgeoptRuntimeError, ValueError):
    """A text or option given to the runtime is not acceptable (wrong type, empty, out of range)."""


class CacheError(EdgeoptRuntimeError):
    """The result cache cannot be opened or written (bad path, wrong options)."""
