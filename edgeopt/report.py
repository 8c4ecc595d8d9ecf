"""The human side of a bundle: ``report.md`` (tables a person can read) and ``report.png`` (accuracy vs size)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_report", "write_embed_report", "write_chart", "stage_figure", "stage_rows"]

# Display order and names of the measured models: the stages of the pipeline, in the order they happen.
_STAGES = (
    ("teacher", "teacher (fp32)"),
    ("student-dense-fp32.tflite", "distilled student (fp32)"),
    ("student-fp32.tflite", "pruned student (fp32, TFLite)"),
    ("student-fp32.onnx", "pruned student (fp32, ONNX)"),
    ("model.tflite", "shipped TFLite"),
    ("model.onnx", "shipped ONNX"),
)


def stage_rows(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Return ``(display name, metrics)`` for the teacher and every measured artifact, in pipeline order."""
    rows = [("teacher (fp32)", manifest["teacher"])]
    metrics = manifest["metrics"]
    for key, label in _STAGES[1:]:
        if key in metrics:
            precision = manifest["artifacts"].get(key, {}).get("precision") if key.startswith("model.") else None
            rows.append((f"{label} ({precision})" if precision else label, metrics[key]))
    return rows


def _nnapi_lines(nnapi: dict[str, Any] | None) -> list[str]:
    """What ONNX Runtime's mobile checker says of the ONNX model for NNAPI, dynamic and fixed-shape."""
    if not nnapi:
        return []

    def share(check: dict[str, Any]) -> str:
        return (
            f"{check['supported_nodes']}/{check['nodes']} nodes in {check['partitions']} partition(s), "
            f"verdict {check['verdict']}"
        )

    shape = "x".join(str(d) for d in nnapi["input_shape"])
    return [
        "",
        "## ONNX Runtime Mobile with NNAPI",
        "",
        f"- model.onnx (dynamic batch): {share(nnapi['dynamic'])}; use it with the CPU EP (batches of any size)",
        f"- {nnapi['file']} (inputs fixed to {shape}): {share(nnapi['fixed'])}; use it with the NNAPI EP, one text "
        "at a time, padded to the full length (same weights and answers)",
        "- counts from onnxruntime.tools.mobile_helpers (nodes NNAPI has a kernel for, with fixed-size inputs); "
        "measure on the phone before choosing",
    ]


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "n/a"


def write_report(manifest: dict[str, Any], stages: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write ``report.md`` for a bundle from its manifest fields and stage timings."""
    teacher = manifest["teacher"]
    build = manifest["build"]
    profile = manifest["profile"]
    budget = profile["budget"]
    lines = [
        f"# edgeopt bundle: {build['task']} for {profile['name']}",
        "",
        f"{profile['description']}. Labels: {', '.join(manifest['labels'])}. Max sequence length "
        f"{manifest['max_seq_len']} tokens. Data: {build['data_source']} ({build['train_texts']} train, "
        f"{build['unlabeled_texts']} unlabeled, {build['transfer'].get('general', 0)} general (teacher-labelled "
        f"fortune quotes), {build['test_texts']} test texts).",
        "",
        "## Stages",
        "",
        "Accuracy, macro-F1 and agreement with the teacher's labels on the held-out test split; latency is the",
        "median of single-text model calls (batch 1, 1 thread) on the build host, not the device.",
        "",
        "| model | accuracy | macro-F1 | agreement | bytes | gzip bytes | p50 ms | smaller | faster |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in stage_rows(manifest):
        lines.append(
            f"| {name} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m.get('agreement', 1.0):.4f} | "
            f"{m['bytes']:,} | {m['gzip_bytes']:,} | {m['p50_ms']:.3f} | "
            f"{_ratio(teacher['bytes'], m['bytes'])} | {_ratio(teacher['p50_ms'], m['p50_ms'])} |"
        )
    lines += _fidelity_lines(manifest)
    lines += _nnapi_lines(build.get("nnapi"))
    verdict = "within budget" if build["within_budget"] else "OVER BUDGET (kept with --allow-over-budget)"
    lines += [
        "",
        f"## Budget ({profile['name']}): {verdict}",
        "",
        f"- size: at most {budget['max_model_mb']} MB per shipped model",
        f"- accuracy: at most {budget['max_accuracy_drop']} below the teacher",
        f"- latency target on the device: {budget['target_p50_ms']} ms (not measurable on the build host)",
        f"- runtime RAM on the device: {budget['max_runtime_ram_mb']} MB; {_runtime_ram(build, budget)}",
    ]
    lines += [f"- problem: {p}" for p in build["budget_problems"]]
    for name, gate in build.get("accuracy_gate", {}).items():
        kept = ", ".join(gate["kept_float"]) or "nothing"
        all_int8 = gate["steps"][0] if gate["steps"] else None
        chosen = next((st for st in gate["steps"] if list(st["kept_float"]) == list(gate["kept_float"])), None)
        cost = (
            f"; {all_int8['bytes']:,} -> {chosen['bytes']:,} bytes, validation accuracy "
            f"{all_int8['accuracy']:.4f} -> {chosen['accuracy']:.4f}"
            if all_int8 and chosen
            else ""
        )
        lines.append(
            f"- accuracy gate on {name}: all-int8 lost too much, so {kept} stayed float "
            f"(float student {gate['float_validation_accuracy']:.4f} on validation{cost}; "
            f"gate {'met' if gate['met'] else 'NOT met: best artifact kept'})"
        )
    student = build["student"]
    prune = build["prune"]
    lines += [
        "",
        "## How it was made",
        "",
        f"- teacher: {teacher['kind']} (fingerprint {teacher['fingerprint'][:12]}), max {teacher['max_seq_len']} "
        f"tokens; it labeled the transfer set in {teacher.get('transfer_set_precision', 'float32')} and the test "
        "split in float32",
        f"- student: {student['architecture']}, embedding {student['embedding_dim']}, hidden {student['hidden_dim']}, "
        f"kernel {student['kernel_size']}, dense {student['dense_dim']}; vocabulary "
        f"{_vocabulary_name(student)}; "
        f"{student['parameters']:,} parameters",
        f"- distillation: temperature {build['distill']['temperature']}, alpha {build['distill']['alpha']}, "
        f"{build['distill']['epochs_run']} epochs (early stopping); embedding table started from "
        f"{_INIT_NAMES.get(student.get('embedding_init', 'random'), 'random values')}"
        f", {student.get('embedding_training', 'trained')}",
        *_search_lines(build),
        *_transfer_lines(build),
        *_calibration_lines(manifest),
        "- pruning: none"
        if prune is None
        else f"- pruning: magnitude, {prune['overall_sparsity']:.1%} of prunable weights zero "
        f"({', '.join(f'{k} {v:.0%}' for k, v in prune['sparsity'].items())})",
        *(
            [f"- technique: `{build['technique']['name']}`: {build['technique']['description']}"]
            if build.get("technique")
            else []
        ),
        f"- quantization: {build['quantization']}, per-channel {build['per_channel']}, "
        f"{build['calibration_samples']} calibration texts",
        *_savedmodel_lines(manifest.get("savedmodel")),
        *_runtime_lines(build),
        *_monitoring_lines(manifest.get("monitoring")),
        "",
        "## Build timings",
        "",
        "| stage | seconds |",
        "|---|---|",
    ]
    lines += [f"| {s['name']} | {s['seconds']:.1f} |" for s in stages]
    lines += _search_table(build)
    lines += ["", "![accuracy vs size](report.png)", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


_VOCABULARY_NAMES = {
    "teacher": "of the {:,} tokens the teacher's tokenizer can output",
    "corpus": "pruned to the texts' {:,} tokens",
}


def _vocabulary_name(student: dict[str, Any]) -> str:
    source = student.get("vocabulary_source", "teacher")
    if source != "teacher":
        return f"of {student['vocabulary']:,} tokens of {source}"
    return _VOCABULARY_NAMES.get(student.get("tokens", "corpus"), "of {:,} tokens").format(student["vocabulary"])


_INIT_NAMES = {
    "teacher-static": "the teacher's vector of each token (one forward pass per token, PCA-reduced)",
    "teacher": "the teacher's input token embeddings (PCA-reduced)",
    "random": "random values",
}


def _savedmodel_lines(savedmodel: dict[str, Any] | None) -> list[str]:
    """The TensorFlow Serving directory, when the build wrote one (``--formats savedmodel``)."""
    if not savedmodel:
        return []
    inputs = ", ".join(t["name"] for t in savedmodel["inputs"])
    outputs = ", ".join(t["name"] for t in savedmodel["outputs"])
    return [
        f"- TensorFlow Serving: `{savedmodel['dir']}/`, the {savedmodel['precision']} student before quantization, "
        f"signature `{savedmodel['signature']}` ({inputs} -> {outputs}); not under the size budget (a server's)"
    ]


def _fidelity_lines(manifest: dict[str, Any]) -> list[str]:
    """Agreement with the teacher per word-count bucket, for every measured model that has it."""
    rows = [(name, m["fidelity"]) for name, m in stage_rows(manifest) if m.get("fidelity")]
    if not rows:
        return []
    buckets = list(rows[0][1])
    counts = ", ".join(f"{b} words {rows[0][1][b]['texts']:,}" for b in buckets if b != "all")
    lines = [
        "",
        "## Fidelity to the teacher on held-out texts of every length",
        "",
        "Share of texts where the model gives the teacher's label, on the test texts and crops of them (first line,",
        f"first sentence, a random 3-20 word span), by length in words ({counts}).",
        "",
        "| model | " + " | ".join(buckets) + " |",
        "|---|" + "---|" * len(buckets),
    ]
    for name, fidelity in rows:
        cells = " | ".join(f"{fidelity[b]['agreement']:.4f}" if b in fidelity else "" for b in buckets)
        lines.append(f"| {name} | {cells} |")
    return lines


SEARCH_CHART = "search.png"


def _search_lines(build: dict[str, Any]) -> list[str]:
    search = build.get("search") or []
    if len(search) < 2:
        return []
    chosen = next((c["name"] for c in search if c["status"] == "chosen"), "none")
    distilled = sum(c["validation_accuracy"] is not None for c in search)
    return [f"- student search: {len(search)} candidates, {distilled} distilled, kept {chosen} (table below)"]


def _search_table(build: dict[str, Any]) -> list[str]:
    """Every search candidate: its cost and validation scores (never test scores)."""
    search = build.get("search") or []
    if len(search) < 2:
        return []

    def score(value: float | None) -> str:
        return "" if value is None else f"{value:.4f}"

    lines = [
        "",
        "## Student search",
        "",
        "Each candidate distilled on the same transfer set and ranked by accuracy on the labeled validation texts,",
        "then by the score early stopping watched (accuracy there and agreement with the teacher on their crops).",
        "Size is the weights' bytes in the exported format; multiply-accumulates per text stand in for latency.",
        "",
        "| candidate | status | parameters | weights MB | MACs per text | validation accuracy | watched score "
        "| epochs | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in search:
        seconds = "" if c["seconds"] is None else f"{c['seconds']:.0f}"
        lines.append(
            f"| {c['name']} | {c['status']} | {c['parameters']:,} | {c['model_bytes'] / 1e6:.2f} | {c['macs']:,} "
            f"| {score(c['validation_accuracy'])} | {score(c['validation_score'])} | {c['epochs'] or ''} "
            f"| {seconds} |"
        )
    lines += ["", f"![student search: validation accuracy vs size]({SEARCH_CHART})"]
    return lines


def write_search_chart(manifest: dict[str, Any], path: Path) -> Path | None:
    """Pareto plot of the student search: validation accuracy against weight bytes, MACs as marker size.

    Returns:
        ``path``, or None when the build distilled fewer than two candidates (nothing to compare).
    """
    search = [c for c in manifest["build"].get("search") or [] if c["validation_accuracy"] is not None]
    if len(search) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    largest = max(c["macs"] for c in search)
    for c in search:
        chosen = c["status"] == "chosen"
        ax.scatter(
            c["model_bytes"] / 1e6,
            c["validation_accuracy"],
            s=40 + 400 * c["macs"] / largest,
            alpha=0.6,
            color="tab:orange" if chosen else "tab:blue",
            edgecolors="black" if chosen else "none",
        )
        label = c["name"] + (" (kept)" if chosen else "")
        ax.annotate(
            label,
            (c["model_bytes"] / 1e6, c["validation_accuracy"]),
            textcoords="offset points",
            xytext=(8, 4),
            fontsize=8,
        )
    frontier, best = [], -1.0
    for c in sorted(search, key=lambda c: (c["model_bytes"], -c["validation_accuracy"])):
        if c["validation_accuracy"] > best:
            frontier.append(c)
            best = c["validation_accuracy"]
    ax.step(
        [c["model_bytes"] / 1e6 for c in frontier],
        [c["validation_accuracy"] for c in frontier],
        where="post",
        color="tab:blue",
        linewidth=1,
        alpha=0.5,
        label="Pareto frontier",
    )
    budget = manifest["profile"]["budget"]["max_model_mb"]
    ax.axvline(budget, color="grey", linestyle="--", linewidth=1, label=f"size budget {budget:g} MB")
    ax.set_xlim(0, max(budget, max(c["model_bytes"] for c in search) / 1e6) * 1.15)
    ax.set_xlabel("weights (MB, in the exported format)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(
        f"{manifest['build']['task']} on {manifest['profile']['name']}: student search (marker size: MACs per text)"
    )
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _transfer_lines(build: dict[str, Any]) -> list[str]:
    transfer = build.get("transfer")
    if not transfer:
        return []
    parts = ", ".join(f"{count:,} {source}" for source, count in transfer.items() if count)
    return [f"- transfer set (texts the teacher labeled for the student): {parts}"]


def _calibration_lines(manifest: dict[str, Any]) -> list[str]:
    calibration = manifest["build"].get("score_calibration")
    if not calibration:
        return ["- calibration: off (scores are the student's raw softmax)"]
    shipped = [
        f"{name} {m['ece']:.4f}" for name, m in stage_rows(manifest) if name.startswith("shipped") and "ece" in m
    ]
    return [
        f"- calibration: logits divided by {calibration['temperature']:.3f} (fitted on "
        f"{calibration['validation_texts']} validation texts, folded into the last layer); validation ECE "
        f"{calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}; test ECE of the shipped models: "
        f"{', '.join(shipped) or 'n/a'} "
        f"(teacher {manifest['teacher'].get('ece', float('nan')):.4f})"
    ]


def _runtime_ram(build: dict[str, Any], budget: dict[str, Any]) -> str:
    runtime = {k: v for k, v in build.get("runtime", {}).items() if v.get("bundle_rss_mb") is not None}
    if not runtime:
        return "not measured on this host"
    measured = ", ".join(f"{name} {r['bundle_rss_mb']:.1f} MiB" for name, r in runtime.items())
    over = [name for name, r in runtime.items() if r["bundle_rss_mb"] * 1.048576 > budget["max_runtime_ram_mb"]]
    verdict = f"OVER on this host for {', '.join(over)}" if over else "within it on this host"
    return f"load + first prediction add {measured} on the build host ({verdict}; measure on the device)"


def _monitoring_lines(reference: dict[str, Any] | None) -> list[str]:
    if not reference:
        return []
    labels = ", ".join(f"{name} {share:.1%}" for name, share in reference["label_share"].items())
    edges, shares = reference["confidence_edges"], reference["confidence_share"]
    sure = sum(share for edge, share in zip(edges, shares, strict=False) if edge >= 0.9)
    unsure = sum(share for edge, share in zip(edges, shares, strict=False) if edge < 0.6)
    return [
        f"- monitoring reference ({reference['source']}): answers {labels}; top-class probability >= 0.9 for "
        f"{sure:.1%}, below 0.6 for {unsure:.1%}; {reference['truncated_share']:.1%} of texts truncated. The "
        "runtime's `monitor()` reports drift from this."
    ]


def _runtime_lines(build: dict[str, Any]) -> list[str]:
    runtime = build.get("runtime")
    if not runtime:
        return []
    parts = [f"{name} {r['cold_start_ms']:.0f} ms (+{r['import_ms']:.0f} ms imports)" for name, r in runtime.items()]
    return [
        f"- runtime cold start on the build host (fresh process: load, verify, first prediction; median of "
        f"{next(iter(runtime.values()))['runs']}): {', '.join(parts)}"
    ]


def write_chart(manifest: dict[str, Any], path: Path) -> Path:
    """Plot accuracy against size on disk for every stage, with the profile's size budget as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = stage_figure(manifest)
    fig.savefig(path)
    plt.close(fig)
    return path


LABEL_STEP_PT = 11
"""Vertical distance between the stacked labels of points that sit (nearly) on top of each other."""


def stage_figure(manifest: dict[str, Any]) -> Any:
    """The figure :func:`write_chart` saves: one point per stage, labels stacked where points coincide.

    The shipped TFLite and ONNX artifacts often have the same accuracy and nearly the same size, so their labels
    landed on each other; a label now moves up one line for every label already placed near its point.
    """
    import matplotlib.pyplot as plt

    rows = stage_rows(manifest)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ax.set_xscale("log")
    for _, m in rows:
        ax.scatter(m["bytes"] / 1e6, m["accuracy"], s=60)
    ax.autoscale_view()
    placed: list[tuple[float, float]] = []
    line_px = LABEL_STEP_PT * fig.dpi / 72
    for name, m in rows:
        point = (m["bytes"] / 1e6, m["accuracy"])
        px, py = ax.transData.transform(point)
        # A label is ~8 pt tall and up to ~25 characters wide: points closer than that share a column of labels.
        stacked = sum(1 for qx, qy in placed if abs(qx - px) < 160 and abs(qy - py) < line_px)
        placed.append((px, py))
        ax.annotate(name, point, textcoords="offset points", xytext=(6, 4 + LABEL_STEP_PT * stacked), fontsize=8)
    budget = manifest["profile"]["budget"]
    ax.axvline(budget["max_model_mb"], color="grey", linestyle="--", linewidth=1)
    ax.annotate(
        "size budget",
        (budget["max_model_mb"], ax.get_ylim()[0]),
        rotation=90,
        fontsize=8,
        color="grey",
        xytext=(3, 5),
        textcoords="offset points",
    )
    floor = manifest["teacher"]["accuracy"] - budget["max_accuracy_drop"]
    ax.axhline(floor, color="grey", linestyle=":", linewidth=1)
    ax.annotate(
        "accuracy floor",
        (ax.get_xlim()[0], floor),
        fontsize=8,
        color="grey",
        xytext=(3, 3),
        textcoords="offset points",
    )
    ax.set_xlabel("size on disk (MB, log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{manifest['build']['task']} on {manifest['profile']['name']}: accuracy vs size by stage")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def _fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_compare_table(payload: dict[str, Any], path: Path) -> Path:
    """Write ``compare.md``: one row per variant, the teacher for reference, smallest first."""
    teacher = payload["teacher"]
    profile = payload["profile"]
    budget = profile["budget"]
    lines = [
        f"# Compression variants for {profile['name']}",
        "",
        f"One distilled student ({payload['student']['vocabulary']:,}-token vocabulary, "
        f"{payload['student']['max_seq_len']} tokens), every variant measured on the held-out test split. Accuracy, "
        f"macro-F1, agreement and bytes are those of the {payload['preferred_format']} artifact; latency is p50 at "
        "batch 1 on 1 thread on the build host. Fits = within the profile's size budget "
        f"({budget['max_model_mb']} MB) and accuracy budget ({budget['max_accuracy_drop']} below the teacher) in "
        "every format.",
        "",
        "| variant | accuracy | macro-F1 | agreement | bytes | gzip bytes | p50 ms ONNX | p50 ms LiteRT | fits |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| teacher (fp32) | {teacher['accuracy']:.4f} | {teacher['macro_f1']:.4f} | 1.0000 | {teacher['bytes']:,} | "
        f"{teacher['gzip_bytes']:,} | {teacher['p50_ms']:.3f} | n/a | |",
    ]
    for v in sorted(payload["variants"], key=lambda v: v["bytes"]):
        lines.append(
            f"| {v['technique']['name']} | {v['accuracy']:.4f} | {v['macro_f1']:.4f} | {v['agreement']:.4f} | "
            f"{v['bytes']:,} | {v['gzip_bytes']:,} | {_fmt_ms(v['p50_ms_onnx'])} | {_fmt_ms(v['p50_ms_tflite'])} | "
            f"{'yes' if v['fits_profile'] else 'no'} |"
        )
    lines += ["", "## What each variant is", ""]
    lines += [f"- `{v['technique']['name']}`: {v['description']}" for v in payload["variants"]]
    lines += ["", "![accuracy vs size](compare.png)", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_compare_chart(payload: dict[str, Any], path: Path) -> Path:
    """Plot accuracy against size for every variant; marker area grows with LiteRT latency; budgets as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = payload["variants"]
    latencies = [v["p50_ms_tflite"] or v["p50_ms_onnx"] or 0.0 for v in variants]
    largest = max(latencies) or 1.0
    fig, ax = plt.subplots(figsize=(10, 6), dpi=110)
    # Download size (gzip) on x: raw bytes are equal for every int8 variant of one architecture, while
    # unstructured sparsity and removed units show in what an app actually downloads.
    for i, (v, latency) in enumerate(zip(variants, latencies, strict=True)):
        x, y = v["gzip_bytes"] / 1e6, v["accuracy"]
        ax.scatter(
            x, y, s=40 + 400 * latency / largest, alpha=0.55, color="tab:green" if v["fits_profile"] else "tab:red"
        )
        ax.annotate(
            v["technique"]["name"], (x, y), textcoords="offset points", xytext=(6, -12 + 8 * (i % 4)), fontsize=7
        )
    budget = payload["profile"]["budget"]
    ax.axvline(budget["max_model_mb"], color="grey", linestyle="--", linewidth=1, label="size budget (on disk)")
    ax.axhline(
        payload["teacher"]["accuracy"] - budget["max_accuracy_drop"],
        color="grey",
        linestyle=":",
        linewidth=1,
        label="accuracy floor (teacher - allowed drop)",
    )
    ax.axhline(payload["teacher"]["accuracy"], color="black", linewidth=0.8, alpha=0.5, label="teacher accuracy")
    ax.set_xscale("log")
    ax.set_xlabel(f"{payload['preferred_format']} artifact size gzipped, as downloaded (MB, log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Variants for {payload['profile']['name']}: accuracy vs size (marker area = LiteRT p50)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


_EMBED_STAGES = (
    ("student-dense-fp32.onnx", "distilled embedder (fp32)"),
    ("student-fp32.onnx", "pruned embedder (fp32)"),
    ("model.tflite", "shipped TFLite"),
    ("model.onnx", "shipped ONNX"),
)


def write_embed_report(manifest: dict[str, Any], stages: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write ``report.md`` of an ``embed`` bundle: how closely each stage's vectors follow the teacher's."""
    build = manifest["build"]
    teacher = manifest["teacher"]
    corpus = build["held_out_corpus"]
    lines = [
        f"# edgeopt embedder: {build['task']} for {manifest['profile']['name']}",
        "",
        f"Teacher: `{teacher['path']}` ({teacher['kind']}, {teacher['pooling']} pooling, {manifest['dim']} dims, "
        f"{teacher['bytes'] / 1e6:.1f} MB of weights). Data: {build['data_source']}.",
        "",
        f"Measured on {corpus} held-out texts and crops of them (none trained on): mean cosine between the "
        f"student's and the teacher's vector of each text; neighbour recall@{build['neighbours']} (of the "
        "teacher's nearest held-out texts, how many the student also puts nearest); Spearman correlation of the "
        "two models' similarities over random pairs. Latency: one model call, batch 1, 1 thread, on the build host.",
        "",
        "| model | mean cosine | neighbour recall | Spearman | bytes | p50 ms |",
        "|---|---|---|---|---|---|",
    ]
    metrics = manifest["metrics"]
    for key, label in _EMBED_STAGES:
        if key in metrics:
            m = metrics[key]
            precision = manifest["artifacts"].get(key, {}).get("precision")
            name = f"{label} ({precision})" if precision else label
            lines.append(
                f"| {name} | {m['mean_cosine']:.4f} | {m['neighbour_recall']:.4f} | {m['spearman']:.4f} | "
                f"{m['bytes']:,} | {m['p50_ms']:.3f} |"
            )
    student = build["student"]
    lines += [
        "",
        f"Student: {student['architecture']}, token table {student['embedding_dim']} wide ({student['vocabulary']:,} "
        f"tokens, started from `{student['embedding_init']}`), {student['parameters']:,} weights; distilled "
        f"{build['distill']['epochs_run']} epochs on {build['transfer_texts']:,} texts and crops "
        f"(validation cosine {build['distill']['best_val_cosine']:.4f}).",
    ]
    if build.get("prune"):
        lines.append(f"Pruned to {build['prune']['overall_sparsity']:.0%} sparsity by magnitude, then int8.")
    if build.get("budget_problems"):
        lines += ["", "**Over budget:** " + "; ".join(build["budget_problems"])]
    lines += ["", "## Stages", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {s['name']} | {s['seconds']:.1f} |" for s in stages]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
