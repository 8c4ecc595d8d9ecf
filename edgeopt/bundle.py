"""Write bundles atomically.

A bundle is assembled in a hidden staging directory beside the target and renamed into place only when every file and
the manifest are written and verified, so a failed or interrupted build leaves nothing at the target path. The
manifest format itself belongs to the runtime (:mod:`edgeopt_runtime.manifest`): the host writes what the device reads.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeopt.errors import BundleError, OutputExistsError

__all__ = ["staged_output", "check_output_path"]


def check_output_path(out: Path, force: bool) -> None:
    """Fail early, before any work, when ``out`` exists and ``force`` is not set.

    Raises:
        OutputExistsError: ``out`` exists and ``force`` is False.
        BundleError: ``out`` exists and is a file, or its parent cannot be written.
    """
    out = Path(out)
    if out.exists() and not force:
        raise OutputExistsError(f"output {out} already exists; pass --force to replace it or choose another --out")
    if out.exists() and not out.is_dir():
        raise BundleError(f"output {out} is a file, not a directory; choose another --out")
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise BundleError(f"cannot write to {parent}; choose an --out in a writable directory")


@contextmanager
def staged_output(out: Path, force: bool) -> Iterator[Path]:
    """Yield a staging directory that becomes ``out`` only if the block finishes without an exception.

    An existing ``out`` (allowed by ``force``) is replaced only after the new bundle is complete; if the block fails,
    the staging directory is removed and ``out`` is left exactly as it was.
    """
    out = Path(out)
    check_output_path(out, force)
    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if out.exists():
            retired = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(retired)
            staging.rename(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
