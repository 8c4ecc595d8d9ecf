"""The ``edgeopt`` command line: a thin click layer over the library.

Commands parse their options, call one library function and print its result. Every error edgeopt raises on purpose
(:class:`~edgeopt.errors.EdgeoptError`, and the runtime's errors) becomes one line on stderr and a non-zero exit code;
heavy modules are imported inside the commands, so ``edgeopt --help`` answers at once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from edgeopt.defaults import DEFAULTS

__all__ = ["main", "cli"]


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """A warning as one line on stderr (Python's default adds the source file and the offending line)."""
    click.echo(f"Warning: {message}", err=True)


def _user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors users can fix into one-line messages (no traceback) and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from edgeopt.errors import EdgeoptError
        from edgeopt_runtime.errors import EdgeoptRuntimeError

        try:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line_warning
                return func(*args, **kwargs)
        except EdgeoptError as error:
            raise click.ClickException(error.message_for(flag_spelling)) from None
        except EdgeoptRuntimeError as error:
            raise click.ClickException(str(error)) from None
        except KeyboardInterrupt:
            click.echo("interrupted; nothing was written to the output path", err=True)
            sys.exit(130)

    return wrapper


def flag_spelling(name: str, value: object = None) -> str:
    """A library setting as this CLI's flag: ``allow_over_budget`` -> ``--allow-over-budget``, with its value."""
    flag = "--" + name.replace("_", "-")
    return flag if value is None or value is True else f"{flag} {value}"


def _or_default(setting: str) -> str:
    """The help text's default of a setting a profile may set: the profile's value, else edgeopt's."""
    value = DEFAULTS[setting]
    shown = (
        ("on" if value else "off") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else value
    )
    return f"[default: the profile's, else {shown}]"


@contextlib.contextmanager
def _showing_progress(quiet: bool) -> Iterator[None]:
    """Render the library's events on stderr while the block runs (nothing when ``quiet``)."""
    from edgeopt.events import listening
    from edgeopt.render import ConsoleRenderer

    with ConsoleRenderer(quiet=quiet) as renderer, listening(renderer):
        yield


def _check_student(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a malformed ``--student`` before any work starts."""
    if value is None:
        return None
    from edgeopt.errors import ConfigError
    from edgeopt.search import StudentCandidate

    try:
        return StudentCandidate.parse(value).name
    except ConfigError as error:
        raise click.BadParameter(str(error)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgeopt")
def cli() -> None:
    """Put text classifiers on phones and edge boxes: distill, prune, quantize, export, verify.

    \b
    Example:
      edgeopt build --profile pixel8          # the built-in spam classifier for a Pixel 8
      edgeopt predict bundles/pixel8 "WIN a FREE cruise, reply now"
    """


def _task_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The profile, teacher and data options `build` and `compare` share."""
    options = [
        click.option(
            "--profile",
            "profile",
            default="pixel8",
            show_default=True,
            help="Hardware profile name (see `edgeopt profiles list`) or a path to a profile TOML file.",
        ),
        click.option(
            "--teacher",
            type=click.Path(exists=True, path_type=Path),
            help="Teacher: a Hugging Face classifier dir, a sentence-transformers dir (fine-tuned on --train), "
            "or an ONNX model with tokenizer.json. Default: all-MiniLM-L6-v2 fine-tuned on the training data.",
        ),
        click.option(
            "--teacher-seq-len",
            type=click.IntRange(8, 512),
            help="Tokens per text the teacher reads (and is fine-tuned on) "
            f"[default: {DEFAULTS['teacher_seq_len']}, or fewer when the teacher takes fewer].",
        ),
        click.option(
            "--teacher-precision",
            type=click.Choice(["auto", "float32", "bfloat16"]),
            default=DEFAULTS["teacher_precision"],
            show_default=True,
            help="Arithmetic of the teacher's labeling passes; auto: bfloat16 where the CPU has it (same labels, "
            "~1.5x faster). An ONNX teacher runs in float32.",
        ),
        click.option("--train", type=click.Path(path_type=Path), help="Labeled training data (CSV, TSV or JSONL)."),
        click.option("--test", type=click.Path(path_type=Path), help="Labeled test data; default: a split of --train."),
        click.option(
            "--unlabeled",
            type=click.Path(path_type=Path),
            help="Extra texts, one a line, that the teacher labels for distillation.",
        ),
        click.option("--text-column", default="text", show_default=True, help="Column or key holding the text."),
        click.option("--label-column", default="label", show_default=True, help="Column or key holding the label."),
        click.option("--seed", default=0, show_default=True, type=int, help="Seed of every random choice."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command()
@_task_options
@click.option("--out", type=click.Path(path_type=Path), help="Bundle directory to write [default: bundles/PROFILE].")
@click.option("--temperature", type=float, help=f"Distillation temperature {_or_default('temperature')}.")
@click.option(
    "--alpha",
    type=float,
    help=f"Weight of the hard-label loss; 1 - alpha weighs the teacher's soft targets {_or_default('alpha')}.",
)
@click.option(
    "--intermediate-weight",
    type=float,
    help="Weight of intermediate-layer distillation (student pooled features -> learned projection -> "
    f"teacher's mean hidden state); 0 turns it off {_or_default('intermediate_weight')}. Needs a Hugging Face "
    "teacher.",
)
@click.option(
    "--technique",
    help="A named technique (see `edgeopt compare --list`, e.g. structured50-int8, qat-int8) replacing the "
    "profile's pruning and quantization [default: the profile's export.technique, if any].",
)
@click.option(
    "--augment-copies",
    type=click.IntRange(0, 10),
    help="Augmented copies of each training text (word dropout/swap/mask) added to the transfer set "
    f"{_or_default('augment_copies')}.",
)
@click.option(
    "--crop-copies",
    type=click.IntRange(0, 10),
    help="Crops of each training text (first line, first sentence, random 3-20 word spans) the teacher labels "
    f"for the student, so it learns short texts too {_or_default('crop_copies')}.",
)
@click.option(
    "--general-texts",
    type=click.IntRange(min=0),
    help="General English texts (shipped fortune quotes) the teacher labels beside the task's texts, so the "
    f"student learns its answers on texts unlike the task's too, e.g. 8000; 0: none {_or_default('general_texts')}.",
)
@click.option(
    "--embedding-init",
    type=click.Choice(["teacher-static", "teacher", "random"]),
    help="Start the student's embedding table from each token's vector in a teacher forward pass (teacher-static), "
    "from the teacher's input embeddings (teacher), both PCA-reduced to the student's width, or at random "
    f"{_or_default('embedding_init')}.",
)
@click.option(
    "--embedding-training",
    type=click.Choice(["search", "frozen", "trained"]),
    help="Keep a teacher-initialized embedding table fixed (frozen), train it, or distill both and keep the better "
    f"on the validation split (search) {_or_default('embedding_training')}.",
)
@click.option(
    "--tokens",
    type=click.Choice(["corpus", "teacher"]),
    help="The student's tokens: those the training and transfer texts use (corpus) or every token of the teacher "
    f"(teacher: a word the texts never show keeps its own row, from the teacher's vector) {_or_default('tokens')}.",
)
@click.option(
    "--calibrate/--no-calibrate",
    default=None,
    help="Fit a temperature on the validation split and fold it into the logits, so scores are calibrated "
    f"{_or_default('calibrate')}.",
)
@click.option(
    "--student",
    callback=_check_student,
    help="Pin one student configuration, ARCHITECTURE/frozen|trained[/xWIDTH] (e.g. cnn-attention/trained/x1), "
    "instead of the profile's student search [default: search as the profile says].",
)
@click.option(
    "--search-budget",
    type=click.FloatRange(min=0),
    help="Seconds the student search may take; the first candidate always runs and the best so far is kept "
    f"(0: no limit) {_or_default('search_budget_s')}.",
)
@click.option(
    "--task",
    type=click.Choice(["classify", "embed"]),
    default="classify",
    show_default=True,
    help="classify: a text classifier; embed: a sentence embedder distilled from a sentence encoder "
    "(default teacher: all-MiniLM-L6-v2 as shipped; --train gives the texts, labels not needed).",
)
@click.option(
    "--pooling",
    type=click.Choice(["mean", "cls", "max"]),
    help="How an embed teacher pools its token states [default: what its sentence-transformers config says; "
    "required for a plain Hugging Face encoder].",
)
@click.option(
    "--formats",
    help="Comma-separated export formats replacing the profile's export.formats: onnx, tflite, and savedmodel "
    "(model.savedmodel/, the float student with a serving_default signature, for TensorFlow Serving); at least one "
    "of onnx, tflite [default: the profile's].",
)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--allow-over-budget", is_flag=True, help="Keep a bundle that misses the profile's budgets.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@_user_errors
def build(
    profile: str,
    out: Path | None,
    teacher: Path | None,
    teacher_seq_len: int | None,
    teacher_precision: str,
    train: Path | None,
    test: Path | None,
    unlabeled: Path | None,
    text_column: str,
    label_column: str,
    seed: int,
    temperature: float | None,
    alpha: float | None,
    intermediate_weight: float | None,
    technique: str | None,
    augment_copies: int | None,
    crop_copies: int | None,
    general_texts: int | None,
    embedding_init: str | None,
    embedding_training: str | None,
    tokens: str | None,
    calibrate: bool | None,
    student: str | None,
    search_budget: float | None,
    task: str,
    pooling: str | None,
    formats: str | None,
    force: bool,
    allow_over_budget: bool,
    quiet: bool,
) -> None:
    """Build a verified bundle (int8 ONNX + TFLite, tokenizer, manifest, report) for a device profile.

    \b
    Examples:
      edgeopt build --profile pixel8
      edgeopt build --task embed --profile pixel8   # a sentence embedder from all-MiniLM-L6-v2
      edgeopt build --profile android-go --train my.csv --text-column body --label-column y --out bundles/mine
      edgeopt build --profile profiles/my-phone.toml --teacher my-hf-classifier/ --train my.jsonl --force
      edgeopt build --profile pixel8 --formats tflite,onnx,savedmodel   # + a SavedModel for TF Serving
    """
    from edgeopt.pipeline import build as run_build
    from edgeopt.profiles import load_profile
    from edgeopt.stages import BuildConfig, distill_config_for

    loaded = load_profile(profile)
    overrides = (temperature, alpha, intermediate_weight)
    config = BuildConfig(
        profile=loaded,
        teacher=teacher,
        teacher_seq_len=teacher_seq_len,
        teacher_precision=teacher_precision,
        train=train,
        test=test,
        unlabeled=unlabeled,
        text_column=text_column,
        label_column=label_column,
        seed=seed,
        distill=None
        if overrides == (None, None, None)
        else distill_config_for(loaded, temperature, alpha, intermediate_weight, seed),
        augment_copies=augment_copies,
        technique=technique,
        crop_copies=crop_copies,
        general_texts=general_texts,
        embedding_init=embedding_init,
        embedding_training=embedding_training,
        tokens=tokens,
        calibrate=calibrate,
        student=student,
        search_budget_s=search_budget,
        task=task,
        pooling=pooling,
        formats=formats,
    )
    default_out = Path("bundles") / (loaded.name if task == "classify" else f"{loaded.name}-embed")
    with _showing_progress(quiet):
        result = run_build(config, out or default_out, force=force, allow_over_budget=allow_over_budget)
    if not quiet:
        if task == "embed":
            _print_embed_metrics(result.manifest)
        else:
            _print_metrics(result.manifest)
        if not result.within_budget:
            click.echo(f"over budget: {'; '.join(result.budget_problems)}", err=True)


@cli.command()
@_task_options
@click.option("--out", type=click.Path(path_type=Path), help="Directory to write [default: compare/PROFILE].")
@click.option(
    "--techniques", default="", help="Comma-separated technique names; all when empty. See `edgeopt compare --list`."
)
@click.option("--list", "list_only", is_flag=True, help="List the techniques and exit.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@_user_errors
def compare(
    profile: str,
    out: Path | None,
    techniques: str,
    list_only: bool,
    teacher: Path | None,
    teacher_seq_len: int | None,
    teacher_precision: str,
    train: Path | None,
    test: Path | None,
    unlabeled: Path | None,
    text_column: str,
    label_column: str,
    seed: int,
    force: bool,
    quiet: bool,
) -> None:
    """Build many compression variants of one distilled student and compare them (table, JSON and plot).

    \b
    Examples:
      edgeopt compare --profile pixel8
      edgeopt compare --profile android-go --techniques float32,int8-static,prune50-int8,structured50-int8
      edgeopt compare --list
    """
    from edgeopt.compare import compare as run_compare
    from edgeopt.profiles import load_profile
    from edgeopt.stages import BuildConfig
    from edgeopt.techniques import TECHNIQUES

    if list_only:
        for technique in TECHNIQUES.values():
            click.echo(f"{technique.name:<24} {technique.description}")
        return
    loaded = load_profile(profile)
    config = BuildConfig(
        profile=loaded,
        teacher=teacher,
        teacher_seq_len=teacher_seq_len,
        teacher_precision=teacher_precision,
        train=train,
        test=test,
        unlabeled=unlabeled,
        text_column=text_column,
        label_column=label_column,
        seed=seed,
    )
    chosen = [t.strip() for t in techniques.split(",") if t.strip()]
    with _showing_progress(quiet):
        result = run_compare(config, out or Path("compare") / loaded.name, chosen, force=force)
    if not quiet:
        click.echo((result.out / "compare.md").read_text(encoding="utf-8").split("## What each variant is")[0])


@cli.group()
def teacher() -> None:
    """Teacher models: fine-tune a pretrained encoder into a classifier."""


@teacher.command("finetune")
@click.option(
    "--base",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Pretrained encoder: a Hugging Face or sentence-transformers directory.",
)
@click.option("--train", required=True, type=click.Path(path_type=Path), help="Labeled data (CSV, TSV or JSONL).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Hugging Face directory to write.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--epochs", default=DEFAULTS["finetune_epochs"], show_default=True, type=click.IntRange(min=1))
@click.option("--max-seq-len", default=DEFAULTS["teacher_seq_len"], show_default=True, type=click.IntRange(8, 512))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--frozen-layers",
    default=DEFAULTS["finetune_frozen_layers"],
    show_default=True,
    type=click.IntRange(min=0),
    help="Keep the embeddings and this many bottom transformer layers as pretrained: each step costs less "
    "(bench/teacher_frozen.py measures what it costs in accuracy).",
)
@click.option(
    "--short-epochs",
    default=DEFAULTS["finetune_short_epochs"],
    show_default=True,
    type=click.IntRange(min=0),
    help="In the first N epochs, texts that fill --max-seq-len read half as many tokens (cheaper steps); shorter "
    "texts stay whole (bench/teacher_frozen.py measures what it costs in accuracy).",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "float32", "bfloat16"]),
    default=DEFAULTS["finetune_precision"],
    show_default=True,
    help="Arithmetic of the training passes; auto: bfloat16 where the CPU has it (the weights stay float32).",
)
@click.option(
    "--fast-kernels/--torch-kernels",
    default=DEFAULTS["finetune_fast_kernels"],
    show_default=True,
    help="Dropout masks drawn four to a random word and fused AdamW (~1.4x faster, the same recipe); "
    "--torch-kernels: torch's own, as teachers made before.",
)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@_user_errors
def finetune(
    base: Path,
    train: Path,
    out: Path,
    text_column: str,
    label_column: str,
    epochs: int,
    max_seq_len: int,
    seed: int,
    frozen_layers: int,
    short_epochs: int,
    precision: str,
    fast_kernels: bool,
    force: bool,
) -> None:
    """Fine-tune an encoder end to end as a sequence classifier; writes a standard Hugging Face directory.

    \b
    Example:
      edgeopt teacher finetune --base ./all-MiniLM-L6-v2 --train tickets.csv --out ./ticket-teacher
    """
    import shutil

    from edgeopt.data import load_task
    from edgeopt.errors import OutputExistsError
    from edgeopt.teacher import FinetuneConfig
    from edgeopt.teacher import finetune as run_finetune

    config = FinetuneConfig(
        max_seq_len=max_seq_len,
        epochs=epochs,
        seed=seed,
        precision=precision,
        frozen_layers=frozen_layers,
        short_epochs=short_epochs,
        fast_kernels=fast_kernels,
    )
    if out.exists() and not force:
        raise OutputExistsError(f"output {out} already exists; pass --force to replace it or choose another --out")
    data = load_task(train, text_column=text_column, label_column=label_column, seed=seed)
    # With --force the old --out goes only once the new teacher is complete: a bad --base or a stopped run keeps it.
    staging = out.with_name(f".{out.name}.new-{os.getpid()}") if out.exists() else out
    with _showing_progress(quiet=False):
        run_finetune(base, data.train, staging, config)
    if staging != out:
        shutil.rmtree(out)
        staging.rename(out)
    click.echo(f"fine-tuned teacher written to {out}")


@cli.group()
def profiles() -> None:
    """Hardware profiles: device facts and budgets."""


@profiles.command("list")
@_user_errors
def profiles_list() -> None:
    """List the built-in profiles.

    \b
    Example:
      edgeopt profiles list
    """
    from edgeopt.profiles import list_profiles, load_profile

    for name in list_profiles():
        p = load_profile(name)
        click.echo(f"{name:<18} {p.budget.max_model_mb:>5g} MB  {p.budget.target_p50_ms:>5g} ms  {p.description}")


@profiles.command("show")
@click.argument("name")
@_user_errors
def profiles_show(name: str) -> None:
    """Show one profile as JSON.

    \b
    Example:
      edgeopt profiles show pixel8
    """
    from edgeopt.profiles import load_profile

    click.echo(json.dumps(load_profile(name).to_dict(), indent=2))


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
@_user_errors
def inspect(bundle: Path, as_json: bool) -> None:
    """Verify a bundle and show its manifest, files and metrics.

    \b
    Example:
      edgeopt inspect bundles/pixel8
    """
    from edgeopt_runtime import verify_bundle

    manifest = verify_bundle(bundle).to_dict()
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    click.echo(f"bundle {bundle}: verified (schema {manifest['schema_version']}, {manifest['task']})")
    if manifest.get("task") == "embed":
        click.echo(
            f"embedder: {manifest.get('dim')} dims, {manifest.get('pooling')} pooling; "
            f"max_seq_len {manifest['max_seq_len']}"
        )
    else:
        click.echo(f"labels: {', '.join(manifest['labels'])}; max_seq_len {manifest['max_seq_len']}")
    click.echo(f"profile: {manifest['profile'].get('name', '?')}; created {manifest['created_at']}")
    click.echo("files:")
    for name, entry in manifest["files"].items():
        click.echo(f"  {name:<16} {entry['bytes']:>12,} bytes  sha256 {entry['sha256'][:16]}")
    if manifest.get("task") == "embed":
        _print_embed_metrics(manifest)
    else:
        _print_metrics(manifest)


_METRIC_KEYS = ("accuracy", "macro_f1", "bytes", "p50_ms")


def _print_metrics(manifest: dict[str, Any]) -> None:
    """The measured models beside the teacher; ``teacher`` and ``metrics`` are optional in a bundle."""
    from edgeopt.report import stage_rows

    teacher = manifest.get("teacher") or {}
    measured = [
        (name, m)
        for name, m in stage_rows({**manifest, "teacher": teacher, "metrics": manifest.get("metrics") or {}})
        if isinstance(m, dict)
        and all(isinstance(m.get(key), int | float) for key in _METRIC_KEYS)
        and m["bytes"] > 0
        and m["p50_ms"] > 0
    ]
    if not measured or measured[0][0] != "teacher (fp32)":
        click.echo("metrics: none recorded with the teacher's in this bundle's manifest")
        return
    click.echo(
        f"{'model':<34} {'accuracy':>8} {'macro-F1':>8} {'bytes':>12} {'p50 ms':>8} {'smaller':>8} {'faster':>7}"
    )
    for name, m in measured:
        click.echo(
            f"{name:<34} {m['accuracy']:>8.4f} {m['macro_f1']:>8.4f} {m['bytes']:>12,} {m['p50_ms']:>8.3f} "
            f"{teacher['bytes'] / m['bytes']:>7.1f}x {teacher['p50_ms'] / m['p50_ms']:>6.1f}x"
        )


_EMBED_METRIC_KEYS = ("mean_cosine", "neighbour_recall", "spearman", "bytes", "p50_ms")


def _print_embed_metrics(manifest: dict[str, Any]) -> None:
    """An embedder's agreement with its teacher, per measured model."""
    metrics = {name: m for name, m in (manifest.get("metrics") or {}).items() if isinstance(m, dict)}
    if not all(isinstance(m.get(k), int | float) for m in metrics.values() for k in _EMBED_METRIC_KEYS):
        click.echo("metrics: none recorded in this bundle's manifest")
        return
    click.echo(f"{'model':<34} {'cosine':>8} {'recall@10':>9} {'Spearman':>8} {'bytes':>12} {'p50 ms':>8}")
    for name, m in metrics.items():
        click.echo(
            f"{name:<34} {m['mean_cosine']:>8.4f} {m['neighbour_recall']:>9.4f} {m['spearman']:>8.4f} "
            f"{m['bytes']:>12,} {m['p50_ms']:>8.3f}"
        )


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1, required=True)
@click.option("--backend", type=click.Choice(["auto", "onnx", "tflite"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per text.")
@_user_errors
def predict(bundle: Path, texts: tuple[str, ...], backend: str, as_json: bool) -> None:
    """Classify texts with a bundle, through the on-device runtime.

    \b
    Example:
      edgeopt predict bundles/pixel8 "Meeting moved to 3pm" "You WON a free iPhone, click here"
    """
    import edgeopt_runtime

    model = edgeopt_runtime.load_classifier(bundle, backend=backend, cache=False)
    for text, prediction in zip(texts, model.predict_batch(list(texts)), strict=True):
        if as_json:
            click.echo(json.dumps({"text": text, **prediction.to_dict()}))
        else:
            click.echo(f"{prediction.label}\t{prediction.score:.3f}\t{text}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edgeopt")


if __name__ == "__main__":
    main()
