"""edgeopt: distill, prune, quantize and export text classifiers for phones and edge boxes.

The library does the work; the ``edgeopt`` CLI is a thin layer over it::

    from edgeopt import BuildConfig, build
    result = build(BuildConfig(profile="pixel8"), Path("bundles/pixel8"))

Importing edgeopt is cheap: TensorFlow, torch and ONNX Runtime are imported by the stages that use them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "BuildConfig",
    "BuildResult",
    "build",
    "CompareResult",
    "compare",
    "load_profile",
    "list_profiles",
]


def __getattr__(name: str) -> object:
    # Lazy re-exports keep `import edgeopt` (and so `edgeopt --help`) free of the pipeline's imports.
    if name in ("BuildResult", "build"):
        from edgeopt import pipeline

        return getattr(pipeline, name)
    if name == "BuildConfig":
        from edgeopt import stages

        return stages.BuildConfig
    if name in ("CompareResult", "compare"):
        from edgeopt import compare

        return getattr(compare, name)
    if name in ("load_profile", "list_profiles"):
        from edgeopt import profiles

        return getattr(profiles, name)
    raise AttributeError(f"module 'edgeopt' has no attribute {name!r}")
