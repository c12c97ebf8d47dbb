"""A saved run's file format: ``run.json`` + ``model.safetensors``, written atomically and read back with one-line
errors naming the file and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mtlkit.errors import MtlkitError

RUN_FORMAT = "mtlkit-run/1"
RUN_FILE, MODEL_FILE = "run.json", "model.safetensors"
RUN_KEYS = ("format", "method", "hparams", "info", "seed")
"""Keys every saved ``run.json`` has (the others have defaults; ``model_sha256`` is absent in older runs)."""


def os_reason(e: OSError) -> str:
    """An OSError as 'reason: path' without the errno prefix."""
    reason = e.strerror or str(e)
    return f"{reason}: {e.filename}" if e.filename else reason


def _write_replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _error_detail(e: BaseException) -> str:
    return f"key {e.args[0]!r} is missing" if isinstance(e, KeyError) and e.args else f"{type(e).__name__}: {e}"


def _read_run_json(path: Path) -> dict[str, Any]:
    """``run.json`` as a dict with every key of `RUN_KEYS`; anything else is an `MtlkitError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MtlkitError(f"{path} cannot be read ({e})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise MtlkitError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}): the saved run "
                          "is damaged or was edited; save it again") from None
    if not isinstance(meta, dict):
        raise MtlkitError(f"{path} is not a saved run's description (a JSON object expected, got "
                          f"{type(meta).__name__})")
    missing = [k for k in RUN_KEYS if k not in meta]
    if missing:
        raise MtlkitError(f"{path} lacks the key{'s' * (len(missing) > 1)} {', '.join(map(repr, missing))} "
                          f"(a saved run's {RUN_FILE} has {', '.join(RUN_KEYS)})")
    if meta["format"] != RUN_FORMAT:
        raise MtlkitError(f"{path} has format {meta['format']!r}; this mtlkit reads {RUN_FORMAT!r}")
    for key, kind in (("method", str), ("hparams", dict), ("info", dict), ("seed", int)):
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise MtlkitError(f"{path}: {key!r} must be a {'JSON object' if kind is dict else kind.__name__}, "
                              f"got {json.dumps(meta[key])[:60]}")
    return meta


def _read_model_file(path: Path, sha256: Any) -> dict[str, torch.Tensor]:
    """The tensors of ``model.safetensors``, after checking that it parses and (when ``run.json`` records one)
    that its sha256 is the recorded one."""
    import hashlib

    from safetensors.torch import load as safetensors_load

    try:
        blob = path.read_bytes()
    except OSError as e:
        raise MtlkitError(f"{path} cannot be read ({os_reason(e)})") from None
    try:
        tensors = safetensors_load(blob)
    except Exception as e:  # safetensors' own error type: a truncated, damaged or foreign file
        raise MtlkitError(f"{path} is not a readable safetensors file ({str(e).strip() or type(e).__name__}): it is "
                          "truncated or damaged; save the run again") from None
    if sha256 is not None:
        got = hashlib.sha256(blob).hexdigest()
        if got != sha256:
            raise MtlkitError(f"{path} was changed after saving: its sha256 {got[:12]}... differs from the "
                              f"{str(sha256)[:12]}... recorded in {RUN_FILE}")
    return tensors


def _check_model_tensors(path: Path, method: str, expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
                         ) -> None:
    """Tensor names of the saved model against the model ``run.json`` describes (shapes: at loading)."""
    def few(items: list[str]) -> str:
        return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")

    problems = []
    missing = [f"model.{k}" for k in expected if k not in state]
    extra = [f"model.{k}" for k in state if k not in expected]
    if missing:
        problems.append(f"missing {few(missing)}")
    if extra:
        problems.append(f"unexpected {few(extra)}")
    if problems:
        raise MtlkitError(f"{path} does not fit the {method!r} model that {RUN_FILE} describes: {'; '.join(problems)}")
