"""The layering rule, checked on the source with ``ast`` (nothing is imported).

    schemas                       pure: imports only schemas; no Google, Beam, Spark, aiohttp, grpc
    streamsim.runtime             schemas and itself
    streamsim.sources             schemas and itself
    streaming, batch, serving     schemas, streamsim.runtime, streamsim.sources and itself:
                                  never each other, never the app
    streamsim.app                 everything (``streamsim`` and ``streamsim.__main__`` are app too)

Every import counts: top-level and inside functions, ``import x`` and ``from x import y``,
relative ones resolved. Project modules are imported statically only: no
``importlib.import_module`` / ``__import__`` of them. ``streamsim/__init__.py`` runs on every
import of ``streamsim.runtime`` and ``streamsim.sources``, so it imports nothing of the project,
and no package imports ``tests`` or ``benchmarks``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "streamsim", "streaming", "batch", "serving")
COMPONENTS = ("streaming", "batch", "serving")
SHARED = ("schemas", "streamsim.runtime", "streamsim.sources")
APP = "streamsim.app"
NOT_IMPORTABLE = ("tests", "benchmarks")

ALLOWED: dict[str, frozenset[str]] = {
    "schemas": frozenset({"schemas"}),
    "streamsim.runtime": frozenset({"schemas", "streamsim.runtime"}),
    "streamsim.sources": frozenset({"schemas", "streamsim.sources"}),
    **{component: frozenset({*SHARED, component}) for component in COMPONENTS},
    APP: frozenset({*SHARED, *COMPONENTS, APP}),
}
# Third-party roots the pure layer must not touch.
FORBIDDEN_THIRD_PARTY = {"schemas": ("google", "apache_beam", "pyspark", "aiohttp", "grpc")}
DYNAMIC_IMPORTERS = {"import_module", "__import__"}


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to; None for stdlib and third-party."""
    parts = module.split(".")
    top = parts[0]
    if top in ("schemas", *COMPONENTS, *NOT_IMPORTABLE):
        return top
    if top == "streamsim":
        if len(parts) > 1 and parts[1] in ("runtime", "sources"):
            return f"streamsim.{parts[1]}"
        return APP  # streamsim, streamsim.__main__, streamsim.app.*
    return None


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file of every module and package (namespace directories included)."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            for depth in range(1, len(parts)):
                modules.setdefault(".".join(parts[:depth]), root.joinpath(*parts[:depth]))
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    """The absolute module a ``from`` import names; None if it climbs above the top package."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > len(package):
        return None
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imported_modules(
    tree: ast.AST, module: str, is_package: bool, known: Iterable[str]
) -> Iterable[tuple[int, str | None]]:
    """(line, dotted target) for every import in the tree. ``from a import b`` targets
    ``a.b`` when that is a module, else ``a`` (b is then an attribute of a); the target is
    None for a relative import that climbs above the top-level package."""
    known = set(known)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, module, is_package)
            if base is None:
                yield node.lineno, None
                continue
            for alias in node.names:
                child = f"{base}.{alias.name}" if base else alias.name
                yield node.lineno, child if child in known else base


def dynamic_imports(tree: ast.AST) -> Iterable[tuple[int, str | None]]:
    """(line, literal target or None) of every ``import_module(...)`` / ``__import__(...)`` call."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name not in DYNAMIC_IMPORTERS:
            continue
        first = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
        literal = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
        yield node.lineno, literal


def find_violations(
    source: str,
    module: str,
    *,
    path: str | None = None,
    is_package: bool = False,
    known: Iterable[str] | None = None,
) -> list[str]:
    """The layering violations of one module's source, as ``path:line: message`` strings."""
    where = path or module.replace(".", "/") + ("/__init__.py" if is_package else ".py")
    try:
        tree = ast.parse(source, filename=where)
    except SyntaxError as error:
        return [f"{where}:{error.lineno}: does not parse, so its imports cannot be checked: {error.msg}"]
    known = set(project_modules() if known is None else known)
    layer = layer_of(module)
    allowed = frozenset() if module == "streamsim" else ALLOWED[layer]
    who = "streamsim/__init__.py (runs on every import of streamsim.*)" if module == "streamsim" else layer
    violations = []
    for line, target in imported_modules(tree, module, is_package, known):
        if target is None:
            violations.append(f"{where}:{line}: relative import beyond the top-level package")
            continue
        target_layer = layer_of(target)
        if target_layer is None:
            banned = [root for root in FORBIDDEN_THIRD_PARTY.get(layer, ()) if target.split(".")[0] == root]
            if banned:
                violations.append(f"{where}:{line}: {layer} imports {target}: {layer} is pure, no {banned[0]}")
        elif target_layer not in allowed:
            may = ", ".join(sorted(allowed)) or "nothing of the project"
            violations.append(f"{where}:{line}: {who} imports {target} ({target_layer}); it may import {may}")
    for line, literal in dynamic_imports(tree):
        if literal is None:
            violations.append(f"{where}:{line}: dynamic import of a computed name; import project modules statically")
        elif literal.startswith(".") or layer_of(literal) is not None:
            violations.append(f"{where}:{line}: dynamic import of {literal}; import project modules statically")
    return violations


def project_violations(root: Path = ROOT) -> list[str]:
    modules = project_modules(root)
    violations = []
    for module, path in sorted(modules.items()):
        if path.suffix != ".py":
            continue
        relative = path.relative_to(root).as_posix()
        violations += find_violations(
            path.read_text(encoding="utf-8"),
            module,
            path=relative,
            is_package=path.name == "__init__.py",
            known=modules,
        )
    return violations


def test_the_project_keeps_its_layers():
    modules = project_modules()
    # A walk that found nothing would pass: make sure every layer was seen.
    seen = {layer_of(m) for m, p in modules.items() if p.suffix == ".py"}
    assert seen >= {"schemas", "streamsim.runtime", "streamsim.sources", *COMPONENTS, APP}, seen
    violations = project_violations()
    assert not violations, "layering violations:\n  " + "\n  ".join(violations)


KNOWN = {
    "schemas",
    "schemas.events",
    "streamsim",
    "streamsim.app",
    "streamsim.app.cli",
    "streamsim.runtime",
    "streamsim.runtime.settings",
    "streamsim.sources",
    "streaming",
    "streaming.fold",
    "serving",
    "serving.app",
    "batch",
    "batch.dimsum",
}


def test_the_checker_reports_upward_and_sideways_imports():
    upward = find_violations("def main():\n    from streamsim.app import cli\n", "batch.cli", known=KNOWN)
    sideways = find_violations("import serving.app\n", "streaming.pipeline", known=KNOWN)
    assert len(upward) == 1 and "batch/cli.py:2:" in upward[0] and "streamsim.app.cli" in upward[0]
    assert len(sideways) == 1 and "streaming/pipeline.py:1:" in sideways[0] and "serving.app (serving)" in sideways[0]


@pytest.mark.parametrize(
    ("source", "module", "is_package", "needle"),
    [
        ("from streamsim import app\n", "serving.store", False, "streamsim.app (streamsim.app)"),
        ("import streamsim\n", "batch.source", False, "streamsim (streamsim.app)"),
        ("import streamsim.__main__\n", "batch.source", False, "streamsim.__main__"),
        ("from ..app import cli\n", "streamsim.runtime.cli", False, "streamsim.app.cli"),
        ("from streamsim.sources import formats\n", "streamsim.runtime.clients", False, "streamsim.sources"),
        ("from streaming import fold\n", "schemas.rows", False, "streaming.fold"),
        ("from google.cloud import bigtable\n", "schemas.layout", False, "no google"),
        ("import apache_beam as beam\n", "schemas", True, "no apache_beam"),
        ("import tests.support.fold_oracle\n", "streamsim.runtime.seeding", False, "tests.support"),
        ("from streamsim.runtime import settings\n", "streamsim", True, "streamsim/__init__.py"),
        ("import importlib\nm = importlib.import_module('serving.app')\n", "streamsim.app.cli", False, "serving.app"),
        ("__import__('batch.dimsum')\n", "streamsim.app.cli", False, "batch.dimsum"),
        ("from importlib import import_module\nimport_module(name)\n", "serving.app", False, "computed name"),
        ("from ... import x\n", "batch.cli", False, "beyond the top-level"),
    ],
)
def test_the_checker_catches(source, module, is_package, needle):
    violations = find_violations(source, module, is_package=is_package, known=KNOWN)
    assert any(needle in v for v in violations), violations


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("from schemas import events\nimport json\n", "schemas.rows"),
        ("from streamsim.runtime import settings\nfrom schemas import Event\n", "streaming.fold"),
        ("def f():\n    from streamsim.sources import formats\n", "batch.source"),
        ("from . import settings\n", "streamsim.runtime.clients"),
        ("from .. import fold\n", "batch.engine.local"),  # batch.fold is not known: batch itself
        (
            "import serving.app, streaming.fold, batch.dimsum\nfrom streamsim.runtime import settings\n",
            "streamsim.app.cli",
        ),
        ("import importlib\nimportlib.import_module('numpy')\n", "serving.app"),
        ("from google.cloud import bigtable\n", "streamsim.runtime.clients"),
    ],
)
def test_the_checker_allows(source, module):
    assert find_violations(source, module, known=KNOWN) == []
