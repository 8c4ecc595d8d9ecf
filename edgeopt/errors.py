"""Exceptions raised by edgeopt.

Every message is one line a user can act on: it names the value that is wrong and says how to fix it.
The CLI prints ``str(error)`` and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

__all__ = [
    "EdgeoptError",
    "DataError",
    "ProfileError",
    "TeacherError",
    "BudgetError",
    "BundleError",
    "OutputExistsError",
    "StageError",
]


class EdgeoptError(Exception):
    """Base class of every error edgeopt raises on purpose."""


class DataError(EdgeoptError):
    """A data file is missing, empty, malformed or inconsistent."""


class ProfileError(EdgeoptError):
    """A hardware profile is unknown or invalid."""


class TeacherError(EdgeoptError):
    """The teacher path is not a model edgeopt can load."""


class BudgetError(EdgeoptError):
    """The build cannot meet the profile's budgets."""


class BundleError(EdgeoptError):
    """A bundle directory cannot be written or read."""


class OutputExistsError(EdgeoptError):
    """The output path exists and --force was not given."""


class StageError(EdgeoptError):
    """A pipeline stage failed for a reason the user can fix."""
