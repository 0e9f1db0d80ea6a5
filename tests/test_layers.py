"""maskdet's layers, read from the source with `ast`: imports point down only, no import cycle, serving never reaches
torch or training, and an import inside a function is there for speed, with a comment saying so."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Bottom to top; a module may import its own layer and the ones below. Entry points (the CLI, the dashboard) sit on top.
LAYERS = ("bundle", "core", "vision", "data", "serving", "training", "runs", "entry")
ENTRY_MODULES = {"maskdet.cli", "maskdet.console", "maskdet.__main__"}
NEVER_REACHED_FROM_SERVING = ("torch", "torchvision", "facenet_pytorch", "maskdet.training", "maskdet.runs")


def module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def layer_of(module: str) -> str | None:
    """The layer of a maskdet module (None for a module outside maskdet)."""
    if module in ENTRY_MODULES or not module.startswith("maskdet."):
        return "entry" if module in ENTRY_MODULES else None
    return module.split(".")[1] if module.split(".")[1] in LAYERS else "entry"


def imports(path: Path, root: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, inside a function) for every import of a file; `from X import name` gives X.name when
    X.name is a module under root, else X."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name, inside) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    candidate = f"{child.module}.{alias.name}"
                    as_module = root.joinpath(*candidate.split(".")).with_suffix(".py").exists() or root.joinpath(
                        *candidate.split("."), "__init__.py").exists()
                    found.append((child.lineno, candidate if as_module else child.module, inside))
            visit(child, inside)

    visit(ast.parse(path.read_text()), False)
    return found


def library_files(root: Path) -> list[Path]:
    """maskdet's modules, except the bundle's script (run standalone, it imports its neighbours by file name)."""
    return sorted(p for p in (root / "maskdet").rglob("*.py") if p.name != "predict_onnx.py")


def upward_imports(root: Path) -> list[str]:
    """'file:line imports module (layer a over layer b)' for each import pointing up a layer."""
    problems = []
    for path in library_files(root):
        here = layer_of(module_name(path, root))
        for line, module, _ in imports(path, root):
            there = layer_of(module)
            if there is not None and LAYERS.index(there) > LAYERS.index(here):
                problems.append(f"{path.relative_to(root)}:{line} imports {module} ({there} is above {here})")
    return problems


def module_graph(root: Path, with_functions: bool = False) -> dict[str, set[str]]:
    """Each maskdet module's maskdet imports (made when it is imported, unless with_functions)."""
    graph = {}
    for path in library_files(root):
        graph[module_name(path, root)] = {module for _, module, inside in imports(path, root)
                                          if (with_functions or not inside)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among the graph's modules (each found once, from its first module in sorted order)."""
    found, done = [], set()

    def walk(module: str, trail: list[str]) -> None:
        for target in sorted(graph.get(module, ())):
            if target in trail:
                cycle = trail[trail.index(target):]
                if min(cycle) == cycle[0] and cycle not in found:
                    found.append(cycle)
            elif target in graph and target not in done:
                walk(target, trail + [target])
        done.add(module)

    for start in sorted(graph):
        walk(start, [start])
    return found


def reached(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module imported, directly or not, when `start` is imported."""
    seen, todo = set(), [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def explained(lines: list[str], line: int) -> bool:
    """Whether the import on `line` (1-based), or the block of imports it ends (blank lines between), carries a
    comment."""
    index = line - 1
    while index >= 0:
        text = lines[index].strip()
        if "#" in text:
            return True
        if text and not text.startswith(("from ", "import ")) and index != line - 1:
            return False
        index -= 1
    return False


def function_imports_without_reason(root: Path) -> list[str]:
    """Imports inside functions with no comment saying why (on their line, or above their block of imports)."""
    problems = []
    for path in library_files(root):
        lines = path.read_text().splitlines()
        for line in sorted({line for line, _, inside in imports(path, root) if inside}):
            if not explained(lines, line):
                problems.append(f"{path.relative_to(root)}:{line} imports inside a function without a comment")
    return problems


def test_imports_point_down_the_layers():
    assert upward_imports(ROOT) == []


def test_no_import_cycle_even_through_imports_inside_functions():
    assert cycles(module_graph(ROOT, with_functions=True)) == []


def test_serving_reaches_neither_torch_nor_training():
    graph = module_graph(ROOT)
    serving = [module for module in graph if module.startswith("maskdet.serving")]
    assert serving
    for module in serving:
        banned = sorted(m for m in reached(graph, module) if m.startswith(NEVER_REACHED_FROM_SERVING))
        assert banned == [], f"{module} imports {banned}"


def test_imports_inside_functions_say_why():
    assert function_imports_without_reason(ROOT) == []


def test_the_library_never_imports_streamlit_or_the_command_line():
    for path in library_files(ROOT):
        if module_name(path, ROOT) in ENTRY_MODULES:
            continue
        names = {module for _, module, _ in imports(path, ROOT)}
        assert not {n for n in names if n.split(".")[0] == "streamlit" or n in ENTRY_MODULES}, path


@pytest.mark.parametrize("module", ["maskdet.serving.live", "maskdet.serving.predict", "maskdet.training.config",
                                    "maskdet.training.preview"])
def test_importing_serving_the_training_config_or_the_preview_loads_no_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def plant(tmp_path: Path, files: dict[str, str]) -> Path:
    """A small tree shaped like maskdet's, with these files (path: source)."""
    for name, source in {"maskdet/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(source)
    return tmp_path


def test_a_planted_upward_import_is_named_with_its_file_and_line(tmp_path):
    root = plant(tmp_path, {"maskdet/core/settings.py": "import os\n", "maskdet/runs/views.py": "",
                            "maskdet/data/store.py": "from maskdet.core.settings import x\n\n"
                                                     "from maskdet.runs import views\n"})
    assert upward_imports(root) == ["maskdet/data/store.py:3 imports maskdet.runs.views (runs is above data)"]


def test_a_planted_cycle_and_a_silent_function_import_are_found(tmp_path):
    root = plant(tmp_path, {"maskdet/data/a.py": "from maskdet.data import b\n",
                            "maskdet/data/b.py": "def f():\n    from maskdet.data import a\n"})
    assert cycles(module_graph(root, with_functions=True)) == [["maskdet.data.a", "maskdet.data.b"]]
    assert cycles(module_graph(root)) == []
    assert function_imports_without_reason(root) == [
        "maskdet/data/b.py:2 imports inside a function without a comment"]


def test_a_planted_path_from_serving_to_torch_is_found(tmp_path):
    root = plant(tmp_path, {"maskdet/serving/live.py": "from maskdet.vision import faces\n",
                            "maskdet/vision/faces.py": "import torch\n"})
    assert "torch" in reached(module_graph(root), "maskdet.serving.live")
