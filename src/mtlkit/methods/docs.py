"""The hyper-parameter reference, generated from the declarations (`HParam`s of the Trainer, every registered
method and every gradient combiner): ``python -m mtlkit.methods.docs > docs/hyperparameters.md``.

A test checks that the committed file equals `render()`, so the reference cannot drift from the code."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mtlkit.hparams import HParam, _fmt

COMMAND = "python -m mtlkit.methods.docs > docs/hyperparameters.md"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(params: Iterable[HParam]) -> list[str]:
    """One Markdown table: name, type, default, valid values, tuning space, doc."""
    out = ["| name | type | default | valid | tuned over | doc |", "| --- | --- | --- | --- | --- | --- |"]
    for p in params:
        search = p.search_text() or "— (fixed)"
        out.append("| " + " | ".join(_cell(c) for c in (f"`{p.name}`", p.type, f"`{_fmt(p.default)}`",
                                                          p.valid_text(), search, p.doc)) + " |")
    return out


def _ordered(names: list[str]) -> list[str]:
    """Methods grouped by the module that defines them (the reference points first, then by module name, as the
    registry loads them), in registration order within a module: the same order whichever module was imported
    first."""
    from mtlkit.methods import registry

    def key(item: tuple[int, str]) -> tuple[int, str, int]:
        i, name = item
        module = registry.get(name).build.__module__.rpartition(".")[2]
        return ({"baselines": 0, "linear": 1}.get(module, 2), module, i)

    return [n for _, n in sorted(enumerate(names), key=key)]


def render() -> str:
    """The whole reference as Markdown."""
    from mtlkit.methods import registry
    from mtlkit.methods.params import TRAIN_PARAMS, method_params
    from mtlkit.optim.combiners import COMBINERS

    lines = [
        "# Hyper-parameters",
        "",
        f"Generated from the declarations in the code by `{COMMAND}`; do not edit by hand (a test compares "
        "this file with the generated text).",
        "",
        "Every hyper-parameter is declared once as a typed `mtlkit.hparams.HParam`: type, default, valid values, "
        "a one-line doc and the space an equal-budget tuner searches (`mtlkit.methods.search_space(name, kind)`). "
        "`log[a, b]` is log-uniform on [a, b], `{…}` a set of choices, `∪ {0}` the value that switches the term "
        "off, tried besides the range; *fixed* parameters stay at their default when tuning. `(… only)` limits "
        "a space to those task kinds.",
        "",
        "## Trainer",
        "",
        "Every SGD-trained method also takes these (a method's table repeats one only where it changes it).",
        "",
        *table(TRAIN_PARAMS),
        "",
        "## Gradient combiners",
        "",
        "`METHOD+COMBINER` (e.g. `srdml+pcgrad`) trains any SGD-trained method with the combiner on its shared "
        "parameters and adds the combiner's hyper-parameters to the method's.",
        "",
    ]
    for name, spec in COMBINERS.items():
        lines += [f"### {name}", "", f"{spec.summary} ({spec.paper})", ""]
        lines += [*table(spec.params), ""] if spec.params else ["No hyper-parameters.", ""]
    lines += ["## Methods", ""]
    train = {p.name: p for p in TRAIN_PARAMS}
    for name in _ordered(registry.names()):
        info = registry.get(name)
        params = [p for k, p in method_params(info).items() if train.get(k) != p]
        training = "own solver" if info.fit is not None else "SGD (Trainer), plus the Trainer's parameters"
        lines += [f"### {name}", "", info.summary, "", f"Paper: {info.paper}. Tasks: {', '.join(info.kinds)}. "
                  f"Training: {training}.", ""]
        lines += [*table(params), ""] if params else ["No hyper-parameters of its own.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
