"""The package's shape: imports flow one way, and no private attribute of another library is touched."""

import ast
import subprocess
import sys

from conftest import ROOT

SRC = ROOT / "src" / "anneal"
# lower layers never import higher ones; a component may import itself
LAYERS = {
    "errors": 0,
    "storage": 1,
    "wandb_start": 1,
    "checkpoint_io": 2,
    "record": 2,
    "schedules": 2,
    "models": 2,
    "evaluation": 3,
    "bn_update": 3,
    "preview": 3,
    "data": 4,
    "module": 4,
    "callbacks": 4,
    "loggers": 4,
    "config": 5,
    "lr_find": 5,
    "report": 5,
    "interrupts": 5,
    "run_dir": 4,
    "results": 5,
    "console": 5,
    "run": 6,
    "ensemble": 6,
    "cli": 6,
    "branch": 6,
    "launchers": 7,
    "sweep_control": 7,
    "sweep_jobs": 5,
    "resume_line": 5,
    "shared_study": 7,
    "average": 7,
}


def component(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def imports() -> dict[str, set[str]]:
    """anneal module -> the anneal modules it imports, anywhere in its file."""
    graph = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(("anneal", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "anneal":  # from anneal import config
                found |= {f"anneal.{a.name}" for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("anneal"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("anneal")}
        graph[name] = found
    return graph


def test_every_component_has_a_layer():
    assert {component(m) for m in imports()} - {"__init__"} == set(LAYERS)


def test_imports_flow_one_way():
    wrong = [
        (a, b)
        for a, targets in imports().items()
        for b in targets
        if component(a) != "__init__" and component(a) != component(b) and LAYERS[component(a)] <= LAYERS[component(b)]
    ]
    assert not wrong, wrong


def test_no_import_cycle_between_modules():
    graph = imports()
    state: dict[str, int] = {}

    def visit(module, path):
        if state.get(module) == 1:
            raise AssertionError(f"import cycle: {' -> '.join([*path, module])}")
        if state.get(module) == 2 or module not in graph:
            return
        state[module] = 1
        for target in graph[module]:
            if target != module and not module.startswith(target + "."):  # a package's own __init__
                visit(target, [*path, module])
        state[module] = 2

    for module in graph:
        visit(module, [])


def test_no_private_attribute_of_another_object():
    """`self._x` is a class's own business; `trainer._x` or `torch._x` would be a library's internals."""
    found = [
        (path.name, node.lineno, node.attr)
        for path in SRC.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert not found, found


def test_no_source_file_over_350_lines():
    long = {p.name: n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 350}
    assert not long, long


def test_hydra_imports_anneal_plugins_without_torch():
    """Hydra imports anneal's plugins before a run's config exists; torch must come after W&B's early import
    (anneal/wandb_start.py), so they import neither."""
    script = (
        "import sys, hydra_plugins.anneal_sweeps, anneal.wandb_start\n"
        "print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr[-2000:]
