"""A run trained straight through against the same run stopped at ``stop`` epochs, checkpointed and resumed: the two
final state dicts, for the tests that a method's or combiner's state travels in the training checkpoint. Not a test
module itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import mtlkit


def straight_and_resumed(method: str, split: Any, hp: dict[str, Any], tmp_path: Path,
                         stop: int = 2) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(straight, resumed) final state dicts of ``method`` trained on ``split`` with ``hp`` (seed 0, CPU)."""
    straight = mtlkit.train(method, split, hparams=hp, seed=0, device="cpu")
    ck = tmp_path / "run.ckpt"
    mtlkit.train(method, split, hparams={**hp, "epochs": stop}, seed=0, device="cpu", checkpoint=ck)
    resumed = mtlkit.train(method, split, hparams=hp, seed=0, device="cpu", checkpoint=ck, resume=True)
    return straight.model.state_dict(), resumed.model.state_dict()
