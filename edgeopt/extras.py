"""Optional dependency groups (pip extras), checked where a stage first needs one.

The host side's core (data, student, pruning, quantization, export, an ONNX teacher) needs TensorFlow and the
converters only; Hugging Face teachers run in torch, which is an extra so that ``pip install edgeopt`` does not
fetch it for users who bring an ONNX teacher. A missing extra is reported as the pip command that installs it
(the pattern of model2vec's ``importable``), not as the ImportError of whichever module happened to come first.
"""

from __future__ import annotations

import importlib.util

from edgeopt.errors import MissingExtraError

__all__ = ["EXTRAS", "require"]

EXTRAS: dict[str, tuple[str, ...]] = {"teacher": ("torch", "transformers")}
"""Each extra's importable modules (the distributions are listed in pyproject.toml)."""


def require(extra: str, purpose: str) -> None:
    """Raise unless every module of ``extra`` imports.

    Args:
        extra: A key of :data:`EXTRAS`.
        purpose: What needs it, as the start of a sentence ("fine-tuning a teacher").

    Raises:
        MissingExtraError: A module of the extra is not installed; the message gives the pip command.
    """
    missing = [module for module in EXTRAS[extra] if not _installed(module)]
    if missing:
        raise MissingExtraError(
            f"{purpose} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
            f"pip install 'edgeopt[{extra}]'"
        )


def _installed(module: str) -> bool:
    # find_spec rather than an import: importing transformers without torch would make it cache "no torch" for the
    # rest of the process, and a spec is all this check needs. ValueError: the module is None in sys.modules.
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
