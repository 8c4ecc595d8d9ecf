"""One place that imports TensorFlow the way edgeopt needs it.

tfmot only prunes Keras 2 models, so ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first imported and
students are built with ``tf_keras`` (see shared/notes/stack.md). Importing TensorFlow takes seconds, so modules call
:func:`import_tf` inside the functions that need it and ``edgeopt --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

__all__ = ["import_tf", "native_output_captured"]


def import_tf() -> tuple[ModuleType, ModuleType]:
    """Return ``(tensorflow, tf_keras)`` with legacy Keras selected and TensorFlow's C++ logging quietened."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        import tensorflow as tf
        import tf_keras
    else:
        # The first import prints absl/oneDNN/CUDA-probe chatter from C++; none of it concerns the user.
        with native_output_captured():
            import tensorflow as tf
            import tf_keras

    tf.get_logger().setLevel("ERROR")
    return tf, tf_keras


@contextlib.contextmanager
def native_output_captured() -> Iterator[None]:
    """Capture what C++ code (TFLite converter, XLA, absl) writes straight to file descriptors 1 and 2.

    Python-level redirection cannot catch it. The captured text is replayed on stderr if the block fails, so a
    failure still shows its cause; on success it is dropped.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read().decode("utf-8", "replace")[-4000:])
