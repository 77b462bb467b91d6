"""The package's layers: a module imports only from its own layer or the ones below it (the package's __init__ only
re-exports). Reading the source; no data needed."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ncpl"
LAYERS = [  # bottom to top; a top-level name not listed is a base utility (schema, columns, store, plots, ...)
    {"laws"},
    {"predictors"},
    {"regressor"},
    {"evaluate", "curve_metrics", "report", "sweeps", "scoring", "tuning"},
    {"cli"},
]


def layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else ""
    return next((i + 1 for i, names in enumerate(LAYERS) if top in names), 0)


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    found += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    return [name for name in found if name.startswith("ncpl.")]


def test_no_module_imports_from_a_higher_layer():
    upward = []
    for path in SRC.rglob("*.py"):
        if path == SRC / "__init__.py":
            continue
        module = ".".join(("ncpl", *path.relative_to(SRC).with_suffix("").parts))
        upward += [f"{module} -> {name}" for name in imports(path) if layer(name) > layer(module)]
    assert not upward
    assert (
        layer("ncpl.cli.use") > layer("ncpl.regressor.trainer") > layer("ncpl.predictors.trees") > layer("ncpl.schema")
    )
