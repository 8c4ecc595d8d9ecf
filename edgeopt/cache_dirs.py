"""Where edgeopt keeps what is expensive to rebuild (fine-tuned teachers, teacher logits)."""

from __future__ import annotations

import os
from pathlib import Path

from edgeopt.errors import EdgeoptError

__all__ = ["CACHE_DIR_ENV", "cache_dir"]

CACHE_DIR_ENV = "EDGEOPT_CACHE_DIR"


def cache_dir() -> Path:
    """Return edgeopt's cache directory, creating it if needed.

    The directory is ``$EDGEOPT_CACHE_DIR`` when that variable is set and not empty, otherwise the
    platform's user cache directory for ``edgeopt`` (for example ``~/.cache/edgeopt`` on Linux).

    Returns:
        The absolute path of an existing directory.

    Raises:
        EdgeoptError: The directory cannot be created.
    """
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    if configured:
        path = Path(configured).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("edgeopt"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeoptError(
            f"cannot create the cache directory {path} ({exc.strerror}); set {CACHE_DIR_ENV} to a writable directory"
        ) from exc
    return path.resolve()
