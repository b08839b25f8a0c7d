"""The package's layers, read from its source (``ast``, nothing imported, well under a second).

* ``segbook.experiments`` (the chapters' experiment helpers) sits on top: no module outside it
  imports it, at module level or inside a function, directly or through another module, except
  the figure helpers in :data:`ON_TOP` (``segbook.viz``, ``segbook.diagrams``: imported by chapters
  only), which no core module may import in turn. ``segbook.notebook`` is *not* on top:
  ``segbook.runtime`` and ``segbook.data.chapter`` import it.
* No import cycle at module level (imports inside functions are how a module defers a heavy or
  upward import, e.g. ``viz`` -> ``train``, and are not counted).

Imports under ``if TYPE_CHECKING:`` never run and are not counted; ``importlib.import_module`` and
``__import__`` with a constant name are.
"""
from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "segbook"
TOP = "segbook.experiments"
# Notebook-facing figure helpers that may import segbook.experiments; no core module imports them.
ON_TOP = frozenset({"segbook.viz", "segbook.diagrams"})


@dataclass(frozen=True)
class Import:
    target: str        # a module of the package, e.g. "segbook.models.unet"
    line: int
    module_level: bool  # runs when the importing module is imported (not only when a function is called)


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted name -> file for every ``.py`` file under ``package_dir`` (a package's name is its
    ``__init__.py``'s)."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def imports_of(name: str, path: Path, modules: set[str]) -> list[Import]:
    """The package modules that module ``name`` (file ``path``) imports, each with its line and
    whether the import runs at module level. ``import a.b.c`` and ``from a.b import c`` import
    every package on the way (``a``, ``a.b``) as well, except the importing module's own parent
    packages (already imported by then)."""
    is_package = path.name == "__init__.py"
    root = name.split(".")[0]
    own = _ancestors(name) | {name}
    found: list[Import] = []

    def add(target: str, line: int, module_level: bool) -> None:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in modules and prefix not in own:
                found.append(Import(prefix, line, module_level))

    def resolve(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(node: ast.AST, module_level: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == root:
                    add(alias.name, node.lineno, module_level)
        elif isinstance(node, ast.ImportFrom):
            source = resolve(node)
            if source.split(".")[0] == root:
                add(source, node.lineno, module_level)
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    if f"{source}.{alias.name}" in modules:
                        add(f"{source}.{alias.name}", node.lineno, module_level)
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if (called in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str) and node.args[0].value.split(".")[0] == root):
                add(node.args[0].value, node.lineno, module_level)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children = node.orelse  # the body never runs
        else:
            children = list(ast.iter_child_nodes(node))
        inner = module_level and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in children:
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=str(path)), True)
    return found


def import_graph(package_dir: Path, *, module_level_only: bool = False) -> dict[str, dict[str, int]]:
    """Module -> {imported package module: line of the first such import}."""
    names = module_names(package_dir)
    graph: dict[str, dict[str, int]] = {}
    for name, path in names.items():
        edges: dict[str, int] = {}
        for imp in imports_of(name, path, set(names)):
            if imp.module_level or not module_level_only:
                edges.setdefault(imp.target, imp.line)
        graph[name] = edges
    return graph


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def layer_violations(package_dir: Path, *, top: str = TOP, on_top: frozenset = ON_TOP) -> list[str]:
    """Every core module (outside ``top`` and ``on_top``) that imports ``top``, directly or through
    other modules, and every core module that imports an ``on_top`` module; each as a readable chain
    of ``module:line`` steps."""
    graph = import_graph(package_dir)
    core = [m for m in graph if not _under(m, top) and not any(_under(m, o) for o in on_top)]
    problems = []
    for start in core:
        for target, line in graph[start].items():
            if any(_under(target, o) for o in on_top):
                problems.append(f"{start}:{line} imports {target}, a notebook-facing helper that sits on top")
        # breadth-first over everything reachable; the first path that reaches `top` is reported
        parents: dict[str, tuple[str, int]] = {}
        queue, seen = [start], {start}
        while queue:
            module = queue.pop(0)
            for target, line in graph.get(module, {}).items():
                if target in seen:
                    continue
                seen.add(target)
                parents[target] = (module, line)
                if _under(target, top):
                    chain, step = [target], target
                    while step != start:
                        step, at = parents[step]
                        chain.append(f"{step}:{at}")
                    problems.append(" -> ".join(reversed(chain)))
                    queue = []
                    break
                queue.append(target)
    return problems


def module_level_cycles(package_dir: Path) -> list[list[str]]:
    """The import cycles at module level (each as a list of modules, first == last)."""
    graph = import_graph(package_dir, module_level_only=True)
    cycles, state = [], {}  # state: 1 on the current path, 2 done
    path: list[str] = []

    def dfs(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in graph.get(module, {}):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                dfs(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            dfs(module)
    return cycles


# -- the package ------------------------------------------------------------------------------------

def test_no_core_module_imports_segbook_experiments():
    problems = layer_violations(PACKAGE_DIR)
    assert not problems, ("segbook.experiments sits on top of the package (chapter helpers); these core "
                          "modules reach it. Move what they need out of segbook/experiments/, or the "
                          "importing code into it:\n" + "\n".join(problems))


def test_the_package_has_no_import_cycle_at_module_level():
    cycles = module_level_cycles(PACKAGE_DIR)
    assert not cycles, "module-level import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_sees_the_package():
    graph = import_graph(PACKAGE_DIR)
    assert {"segbook", "segbook.train", "segbook.models", TOP, *ON_TOP} <= set(graph)
    assert any(_under(t, "segbook.models") for t in graph[f"{TOP}.unet"])  # experiments do import the core
    assert "segbook.notebook" in graph["segbook.data.chapter"]  # notebook is imported by core: not on top


# -- self-tests on a fake package -------------------------------------------------------------------

def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "segbook"
    for rel in ["__init__.py", "experiments/__init__.py", "experiments/fcn.py", "models/__init__.py",
                "models/unet.py", "viz.py", *files]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(files.get(rel, "")))
    return root


@pytest.mark.parametrize("source", [
    "import segbook.experiments\n",
    "import segbook.experiments.fcn as f\n",
    "from segbook.experiments.fcn import run\n",
    "from segbook import experiments\n",
    "from .experiments import fcn\n",
    "from .experiments.fcn import run\n",
    "def later():\n    from .experiments import fcn\n",           # inside a function counts too
    "class A:\n    def m(self):\n        import segbook.experiments\n",
    "import importlib\nmod = importlib.import_module('segbook.experiments.fcn')\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\nelse:\n    from . import experiments\n",
], ids=lambda s: s.splitlines()[-1].strip()[:40])
def test_a_core_module_importing_experiments_is_caught(tmp_path, source):
    root = _package(tmp_path, {"train.py": source})
    problems = layer_violations(root)
    assert len(problems) == 1 and problems[0].startswith("segbook.train:") and "segbook.experiments" in problems[0]


def test_an_import_through_another_module_is_caught_with_its_chain(tmp_path):
    root = _package(tmp_path, {"train.py": "from .models.unet import UNet\n",
                               "models/unet.py": "def f():\n    from ..experiments.fcn import run\n"})
    problems = layer_violations(root)
    assert "segbook.train:1 -> segbook.models.unet:2 -> segbook.experiments" in problems
    assert any(p.startswith("segbook.models.unet:2") for p in problems)


def test_relative_imports_resolve_from_subpackages(tmp_path):
    root = _package(tmp_path, {"models/unet.py": "from .. import experiments\n"})
    assert layer_violations(root) == ["segbook.models.unet:1 -> segbook.experiments"]


def test_allowed_imports_are_not_flagged(tmp_path):
    root = _package(tmp_path, {
        "train.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .experiments import fcn\n"
                    "import segbook_experiments\nfrom .models import unet\n",
        "experiments/fcn.py": "from ..models.unet import UNet\nfrom ..viz import show\n",
        "viz.py": "def plot(result):\n    from .experiments.fcn import Result\n",   # on top: allowed
    })
    assert layer_violations(root) == []


def test_a_core_module_importing_an_on_top_helper_is_caught(tmp_path):
    root = _package(tmp_path, {"train.py": "from .viz import plot\n"})
    assert layer_violations(root) == ["segbook.train:1 imports segbook.viz, a notebook-facing helper that sits on top"]


def test_module_level_cycles_are_found_and_function_level_imports_are_not_cycles(tmp_path):
    root = _package(tmp_path, {"train.py": "from .metrics import iou\n",
                               "metrics.py": "import segbook.train\n"})
    assert module_level_cycles(root) == [["segbook.metrics", "segbook.train", "segbook.metrics"]]
    root = _package(tmp_path / "b", {"train.py": "from .metrics import iou\n",
                                     "metrics.py": "def f():\n    import segbook.train\n",
                                     # a package's __init__ importing its submodules is no cycle
                                     "models/__init__.py": "from .unet import UNet\n",
                                     "models/unet.py": "from . import unet_parts\nfrom ..metrics import iou\n",
                                     "models/unet_parts.py": ""})
    assert module_level_cycles(root) == []
