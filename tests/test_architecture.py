"""The layering and extension contracts of docs/architecture.md, checked on the code itself:
no import cycles, loaders that never import training, files that stay small, and a method
that joins everything by being imported."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "tunelab"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the tunelab modules it imports, at the top or inside functions."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1]
                        + ([base] if base else [])
                    )
                # `from pkg import sub` imports the submodule when there is one
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            for t in targets:
                while t and t not in modules:  # `import tunelab.x.y` names a module
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (c := visit(n)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_the_package():
    graph = import_graph()
    assert "tunelab.training.loop" in graph["tunelab.training.pipeline"]  # the graph is real
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_no_file_over_450_lines():
    long = {
        str(p.relative_to(SRC)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450
    }
    assert not long, long


HEAVY = ("tunelab.training", "tunelab.evaluation", "matplotlib", "tensorboard", "optuna")


def test_loading_and_predicting_imports_no_training(trained_runs):
    """`tunelab.load` + a prediction pull in neither the training stack nor plotting,
    tracking or search libraries (serving and the task functions stay light)."""
    code = textwrap.dedent(f"""
        import sys, tunelab
        for run in {[str(trained_runs["full"]), str(trained_runs["lora"])]!r}:
            tunelab.load(run).predict(["a great phone"])
        heavy = sorted(m for m in sys.modules if m.startswith({HEAVY!r}))
        print(";".join(heavy))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "", r.stdout


TOY_METHOD = '''
"""A toy method: scales the classifier's output (one typed option)."""
from dataclasses import dataclass

from tunelab.methods import full
from tunelab.methods.base import Method, option, register_method


@dataclass
class ToyOptions:
    toy_scale: float = option(2.0, "toy: how much to scale the logits", lambda v: v > 0,
                              "must be > 0")


def apply(model, options, ctx):
    return full.apply(model, None, ctx)


register_method(Method("toy", "a toy method for the tests", 1e-3, apply, full.save, full.load,
                       options=ToyOptions))
'''


@pytest.fixture()
def toy_method(tmp_path):
    from tunelab import config as C
    from tunelab.methods import METHODS

    f = tmp_path / "toy_method.py"
    f.write_text(TOY_METHOD)
    spec = importlib.util.spec_from_file_location("toy_method", f)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registers it: no other edit anywhere
    yield METHODS["toy"]
    del METHODS["toy"]
    assert "toy_scale" not in C.fields()


def test_a_method_module_joins_everything_by_being_imported(toy_method, tmp_path, capsys):
    from tunelab import config as C
    from tunelab.cli import build_parser, main
    from tunelab.errors import ConfigError
    from tunelab.methods import valid_pairs
    from tunelab.tasks import TASKS

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "toy " in out and "toy_scale=2.0" in out
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert "--toy-scale" in train.format_help()
    y = tmp_path / "c.yaml"
    y.write_text("method: toy\ntoy_scale: 0.5\n")
    cfg = C.build({}, str(y))
    C.validate(cfg)
    assert cfg.method.toy_scale == 0.5
    assert toy_method.make_options(dataclasses.asdict(cfg.method)).toy_scale == 0.5
    y.write_text("method: toy\ntoy_scale: -1\n")
    with pytest.raises(ConfigError, match="key 'toy_scale' = -1.0 must be > 0"):
        C.validate(C.build({}, str(y)))
    y.write_text("toy_scale: many\n")
    with pytest.raises(ConfigError, match="toy_scale' expects float"):
        C.build({}, str(y))
    assert {t for t, m in valid_pairs() if m == "toy"} == set(TASKS)


def test_a_shared_option_needs_one_type_and_default():
    from dataclasses import dataclass

    from tunelab.methods import full
    from tunelab.methods.base import METHODS, Method, option, register_method

    @dataclass
    class Clash:
        num_virtual_tokens: int = option(8, "a different default")

    with pytest.raises(ValueError, match="num_virtual_tokens.*one type and one default"):
        register_method(Method("clash", "", 1e-3, full.apply, full.save, full.load, options=Clash))
    with pytest.raises(ValueError, match="already registered"):
        register_method(METHODS["lora"])
    assert "clash" not in METHODS


def test_a_task_record_refuses_a_missing_or_doubled_hook():
    from tunelab.tasks import TASKS

    tc = TASKS["text-classification"]
    with pytest.raises(TypeError, match="exactly one of encode_targets and encode"):
        dataclasses.replace(tc, name="x", encode=lambda *a: ([], []))
    with pytest.raises(TypeError, match="exactly one of decode and predict_texts"):
        dataclasses.replace(tc, name="x", decode=None)
    with pytest.raises(TypeError, match="unexpected keyword"):
        dataclasses.replace(tc, name="x", predict_text=None)  # a misspelt hook
