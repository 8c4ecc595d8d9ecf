"""Write bundles atomically.

A bundle is assembled in a hidden staging directory beside the target and renamed into place only when every file and
the manifest are written and verified, so a failed or interrupted build leaves nothing at the target path. The
manifest format itself belongs to the runtime (:mod:`edgeopt_runtime.manifest`): the host writes what the device reads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeopt.errors import BundleError, OutputExistsError

__all__ = ["staged_output", "check_output_path"]


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_path(out: Path, force: bool) -> None:
    """Fail early, before any work, when ``out`` cannot become the bundle; creates nothing.

    Raises:
        OutputExistsError: ``out`` exists and ``force`` is False.
        BundleError: ``out`` exists and is a file, a folder on its way is a file, or the folder that would hold
            it cannot be written (permissions, a read-only or virtual file system such as ``/proc``).
    """
    out = Path(out)
    if out.exists() and not force:
        raise OutputExistsError(
            lambda p: f"output {out} already exists; pass {p('force', True)} to replace it or choose another {p('out')}"
        )
    if out.exists() and not out.is_dir():
        raise BundleError(lambda p: f"output {out} is a file, not a directory; choose another {p('out')}")
    ancestor = _nearest_existing(out.absolute().parent)
    if not ancestor.is_dir():
        raise BundleError(
            lambda p: f"cannot create {out}: {ancestor} is a file, not a directory; choose another {p('out')}"
        )
    # os.access says yes to root everywhere, and to read-only mounts; only a real write says whether one works.
    try:
        probe = tempfile.mkdtemp(prefix=".edgeopt-write-check-", dir=ancestor)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise BundleError(
            lambda p: f"cannot write to {ancestor} ({reason}); choose an {p('out')} in a writable directory"
        ) from None
    os.rmdir(probe)


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
    created = [p for p in out.absolute().parents if not p.exists()]
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
    except BaseException:
        # The folders made for the bundle go too, deepest first (only while empty: never a file we did not write).
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
