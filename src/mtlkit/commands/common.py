"""What the `mtlkit` commands share: the data options and loading, ``--set NAME=VALUE`` parsing, the output-path
check and the machine description. `mtlkit.cli` and every module in `mtlkit.commands` import these from here, so
no command reaches back up into the CLI module."""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtlkit.errors import MtlkitError

__all__ = ["add_data_arguments", "add_data_dir_argument", "check_output_path", "load_data_from_args",
           "machine_description", "parse_hparams"]


def machine_description() -> str:
    import torch

    dev = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, Python "
            f"{platform.python_version()}, torch {torch.__version__}{dev}")


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def parse_hparams(items: Sequence[str]) -> dict[str, object]:
    """``--set NAME=VALUE`` items as a dict. VALUE is JSON (``50``, ``1e-3``, ``[64, 32]``, ``true``), a number
    JSON does not spell (``.5``, ``+3``), or else a bare string (``adam``). A value that is not valid JSON but
    starts like a list, an object or a number (``[64``, ``1e-3x``) is an `MtlkitError` saying how to write it;
    whether a value fits its hyper-parameter is checked later, against the method's typed declarations."""
    import json

    out: dict[str, object] = {}
    for it in items:
        k, eq, v = it.partition("=")
        k = k.strip()
        if not eq or not k:
            raise MtlkitError(f"--set expects NAME=VALUE, got {it!r}")
        try:
            out[k] = json.loads(v)
            continue
        except json.JSONDecodeError as e:
            why = f"{e.msg} at character {e.pos + 1}"
        text = v.strip()
        if _NUMBER.fullmatch(text):
            out[k] = float(text) if any(c in text for c in ".eE") else int(text)
        elif text and text[0] in "[{(":
            raise MtlkitError(f"--set {k}={v}: not a valid list ({why}); write it in JSON and quote it for the "
                              f"shell, e.g. --set '{k}={_json_suggestion(text)}'")
        elif text and (text[0].isdigit() or text[0] in "+-."):
            raise MtlkitError(f"--set {k}={v}: not a number; write numbers like --set {k}=0.001 or --set {k}=1e-3")
        else:
            out[k] = v
    return out


def _json_suggestion(text: str) -> str:
    """A JSON spelling of a list the user almost wrote (``[64`` -> ``[64]``, ``(64, 32)`` -> ``[64, 32]``)."""
    import json

    fixed = text.replace("(", "[").replace(")", "]").replace("'", '"')
    fixed += "]" * max(0, fixed.count("[") - fixed.count("]")) + "}" * max(0, fixed.count("{") - fixed.count("}"))
    try:
        json.loads(fixed)
    except json.JSONDecodeError:
        return "[64, 32]"
    return fixed


def add_data_arguments(p: argparse.ArgumentParser, source: argparse._ActionsContainer | None = None) -> None:
    """The options naming a command's data: ``--dataset`` or a ``--data`` table (put on ``source``, e.g.
    a mutually exclusive group) with its columns and kind, and ``--data-dir``; read by `load_data_from_args`."""
    src = source if source is not None else p
    src.add_argument("--dataset", help="a data set name (see `mtlkit datasets`); default digits")
    src.add_argument("--data", type=Path, help="your own CSV/Parquet table instead of --dataset")
    p.add_argument("--task", help="task column of --data")
    p.add_argument("--target", help="target column of --data")
    p.add_argument("--kind", choices=["regression", "binary", "multiclass"],
                   help="task kind of --data (default: inferred from the target; a note on stderr says what)")
    p.add_argument("--categorical", action="store_true", help="one-hot the non-numeric feature columns of --data")
    add_data_dir_argument(p)


def add_data_dir_argument(p: argparse.ArgumentParser) -> None:
    """``--data-dir``: where the real data sets lie (default ``$MTLKIT_DATA``)."""
    p.add_argument("--data-dir", type=Path, help="data directory (default: $MTLKIT_DATA)")


def load_data_from_args(args: argparse.Namespace, default: str = "digits", distributed: bool = False) -> Any:
    """The data a command names: ``--data`` table (with ``--task``/``--target``) or ``--dataset`` by name.
    ``distributed``: every rank of the running process group calls this, and they read a streamed table together."""
    from mtlkit import datasets
    from mtlkit.data.multitask import MultiTaskData, collect_notes

    if args.data is not None:
        if not args.task or not args.target:
            raise MtlkitError("--data needs --task COLUMN and --target COLUMN")
        if args.task == args.target:
            raise MtlkitError(f"--task and --target name the same column {args.task!r}")
        with collect_notes() as notes:  # printed only once the table has loaded: an error stays one line
            data = MultiTaskData.from_table(args.data, task=args.task, target=args.target, kind=args.kind,
                                            categorical=args.categorical, distributed=distributed)
        if distributed:  # every rank read it: rank 0 tells
            import torch.distributed as dist

            notes = notes if dist.get_rank() == 0 else []
        for note in notes:  # e.g. the inferred task kind and how to override it with --kind
            print(f"mtlkit: note: {note}", file=sys.stderr)
        return data
    return datasets.load(args.dataset or default, data_dir=args.data_dir)


def check_output_path(path: str | Path, option: str, kind: str = "dir") -> None:
    """Refuse, before any work, an output ``path`` that cannot be written: a folder to create or fill
    (``kind="dir"``) or a file (``kind="file"``) whose place is taken by a file or a folder, lies under a
    file, or whose nearest existing folder is not writable. An `MtlkitError` naming ``option`` and the path."""
    p = Path(path)
    if kind == "file" and p.is_dir():
        raise MtlkitError(f"{option} {p}: a folder is in the way (a file name is needed)")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise MtlkitError(f"{option} {p}: a file is in the way (a folder is needed)")
    q = p.parent if kind == "file" else p
    while not q.exists() and q != q.parent:  # the nearest existing ancestor, which mkdir would write into
        q = q.parent
    if q.exists() and not q.is_dir():
        raise MtlkitError(f"{option} {p}: cannot be created, {q} is a file, not a folder")
    if not os.access(q, os.W_OK | os.X_OK):
        raise MtlkitError(f"{option} {p}: cannot be written, {q} is not writable")
