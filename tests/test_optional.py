"""Optional extras (issue 15 item 5): optuna, matplotlib and pandas are not core requirements. With none of them
importable, `mtlkit bench` (the README's main job) still runs; each feature that needs one stops with ONE line naming
the extra that installs it; `require` tells a missing package from a broken one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mtlkit import _optional
from mtlkit._optional import EXTRAS, require
from mtlkit.cli import main
from mtlkit.errors import MtlkitError

OPTIONAL = ("optuna", "matplotlib", "pandas")


@pytest.mark.parametrize("name", OPTIONAL)
def test_missing_extra_is_one_line_naming_it(name, monkeypatch):
    monkeypatch.setitem(sys.modules, name, None)  # what an environment without the package looks like to import
    with pytest.raises(MtlkitError) as e:
        require(name, "this feature")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg == f"{name} is needed for this feature; install it with: pip install 'mtlkit[{EXTRAS[name]}]'"
    assert EXTRAS[name] in ("sweep", "plot", "tables")


def test_require_returns_the_module_and_tells_missing_from_broken(tmp_path, monkeypatch):
    assert require("pandas", "x") is sys.modules["pandas"]
    # a package that exists but fails on a dependency of its own keeps its real error (not "install mtlkit[...]")
    pkg = tmp_path / "mtlkit_fake_extra"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import mtlkit_no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(EXTRAS, "mtlkit_fake_extra", "fake")
    with pytest.raises(ModuleNotFoundError, match="mtlkit_no_such_dependency_xyz"):
        require("mtlkit_fake_extra", "x")
    monkeypatch.setitem(EXTRAS, "mtlkit_fake_absent", "fake")
    with pytest.raises(MtlkitError, match=r"mtlkit\[fake\]"):
        require("mtlkit_fake_absent", "x")
    with pytest.raises(ValueError, match="not one of"):
        require("numpy", "x")


@pytest.mark.parametrize(("argv", "name", "extra"), [
    (["bench", "--trials", "2", "--methods", "stl"], "optuna", "sweep"),
    (["sweep", "--method", "stl"], "optuna", "sweep"),
    (["plot", "improvement", "--dataset", "digits"], "matplotlib", "plot"),
    (["reproduce", "claims"], "matplotlib", "all"),
    (["train", "stl", "--data", "TABLE", "--task", "task", "--target", "y"], "pandas", "tables"),
])
def test_cli_feature_without_its_extra_exits_with_one_line(argv, name, extra, tmp_path, monkeypatch, capsys):
    table = tmp_path / "t.csv"
    table.write_text("task,x,y\na,1,2\na,2,3\nb,1,0\nb,3,1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, name, None)
    assert main([str(table) if a == "TABLE" else a for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{name} is needed for" in err and f"pip install 'mtlkit[{extra}]'" in err


def test_core_install_runs_bench_without_any_extra(tmp_path):
    """A fresh interpreter where optuna, matplotlib and pandas cannot be imported: `import mtlkit`, the CLI parser
    and a one-split `mtlkit bench` on the embedded digits all work, and write their results."""
    code = textwrap.dedent(f"""
        import sys
        for m in {OPTIONAL!r}:
            sys.modules[m] = None
        import mtlkit
        from mtlkit.cli import build_parser, main
        build_parser().format_help()
        sys.exit(main(["bench", "--methods", "stl", "--splits", "1", "--set", "epochs=1", "--no-select",
                       "--out", {str(tmp_path / "out")!r}, "--quiet"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "bench-digits.md").is_file() and (tmp_path / "out" / "bench-digits.csv").is_file()


def test_extras_in_pyproject_match_the_helper():
    """pyproject's extras install what `require` names: every optional package under its extra, none of them core,
    and `all` / `dev` contain every extra."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    core = " ".join(meta["dependencies"])
    extras = meta["optional-dependencies"]
    for name, extra in _optional.EXTRAS.items():
        assert name not in core
        assert any(req.startswith(name) for req in extras[extra])
    (all_req,) = extras["all"]
    assert set(re.fullmatch(r"mtlkit\[(.*)\]", all_req).group(1).split(",")) == set(extras) - {"all", "dev"}
    assert "mtlkit[all]" in extras["dev"]
