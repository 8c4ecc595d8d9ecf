"""Exceptions raised by edgeopt.

Every message is one line a user can act on: it names the value that is wrong and says how to fix it. A fix that
names a setting is written once, with a :data:`Spelling` for each setting it names, so each caller reads it in its
own words: ``str(error)`` spells them as Python (``pass allow_over_budget=True``), the CLI as flags
(``pass --allow-over-budget``, :meth:`EdgeoptError.message_for`). Rejected: messages in flag words (a Python caller
was told to pass ``--force``) and a second message per error (the two drift apart). The CLI prints the message and
exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "Spelling",
    "python_spelling",
    "EdgeoptError",
    "ConfigError",
    "DataError",
    "ProfileError",
    "TeacherError",
    "BudgetError",
    "BundleError",
    "OutputExistsError",
    "StageError",
    "MissingExtraError",
]


Spelling = Callable[..., str]
"""``spell(name, value=None)``: how a caller writes the setting ``name`` (a library parameter or ``BuildConfig``
field), set to ``value`` when the fix names one."""


def python_spelling(name: str, value: object = None) -> str:
    """``name`` alone, or ``name=value`` as Python would write the argument."""
    return name if value is None else f"{name}={value!r}"


class EdgeoptError(Exception):
    """Base class of every error edgeopt raises on purpose.

    Args:
        message: The message, or a function that writes it given a :data:`Spelling` for the settings it names.
    """

    def __init__(self, message: str | Callable[[Spelling], str]) -> None:
        self._compose = message if callable(message) else None
        super().__init__(message(python_spelling) if callable(message) else message)

    def message_for(self, spell: Spelling) -> str:
        """The message with the settings it names written by ``spell`` (the CLI passes its flags)."""
        return self._compose(spell) if self._compose is not None else str(self)


class ConfigError(EdgeoptError):
    """A setting (of a profile override, a build, a fine-tune or a distillation) has an invalid value."""


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
    """The output path exists and replacing it was not asked for."""


class StageError(EdgeoptError):
    """A pipeline stage failed for a reason the user can fix."""


class MissingExtraError(EdgeoptError):
    """A stage needs an optional dependency group (a pip extra) that is not installed."""
