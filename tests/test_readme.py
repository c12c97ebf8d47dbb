"""The README's Python examples run as written: every ```python block of README.md is executed, in a fresh
namespace and an empty working directory. A block that loads a data set read from ``$MTLKIT_DATA`` (or names
the variable or a ``data_dir``) is skipped when the variable is unset. The ```bash blocks are not run."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import mtlkit

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def needs_real_data(code: str) -> bool:
    """Whether the block loads a data set that lies under $MTLKIT_DATA (the others are embedded or generated)."""
    real = [n for n in mtlkit.datasets.names() if mtlkit.datasets.info(n).needs_data_dir]
    loads = re.findall(r"""datasets\.load\(\s*["']([\w-]+)["']""", code)
    return any(n in real for n in loads) or "MTLKIT_DATA" in code or "data_dir=" in code


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2
    assert not needs_real_data('mtlkit.datasets.load("digits")') and needs_real_data('datasets.load("school")')


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code, tmp_path, monkeypatch, one_thread):
    if needs_real_data(code) and not os.environ.get("MTLKIT_DATA"):
        pytest.skip("loads a real data set: MTLKIT_DATA is not set")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
