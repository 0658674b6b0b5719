"""Imports point one way: the tools (command line, local infrastructure, demo, chaos, bench) may
import anything; a service imports the library and itself; the library imports neither a service
nor the tools. Every import is read, including those inside functions (a dynamic `import_module`
with a constant name counts too). Fakes and demo data stay out of production code, the library holds
only what the services run on, and a service declares what it consumes in one place."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from pathlib import Path

from shared.events import Event

ROOT = Path(__file__).resolve().parent.parent
SERVICES = sorted(path.name for path in (ROOT / "services").iterdir() if (path / "__init__.py").exists())


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                modules.add(node.args[0].value)
    return modules


def violations(folder: str, forbidden: Callable[[Path, str], str | None]) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for module in sorted(imported_modules(path)):
            if reason := forbidden(path, module):
                found.append(f"{path.relative_to(ROOT)} imports {module}: {reason}")
    return found


def test_the_library_imports_no_service_and_no_tool() -> None:
    def forbidden(_: Path, module: str) -> str | None:
        top = module.split(".")[0]
        return (
            "the library serves the services, it does not know them"
            if top in ("services", "tools", "tests")
            else None
        )

    assert violations("shared", forbidden) == []


def test_a_service_imports_the_library_and_itself_only() -> None:
    def forbidden(path: Path, module: str) -> str | None:
        parts = module.split(".")
        if parts[0] in ("tools", "tests"):
            return "production code imports no tool, fake or simulator"
        own = path.relative_to(ROOT / "services").parts[0]
        if parts[0] == "services" and len(parts) > 1 and parts[1] != own:
            return "a service never imports another"
        return None

    assert violations("services", forbidden) == []


def production_modules(folder: str) -> list[Path]:
    return [
        path
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "migrations" not in path.relative_to(ROOT).parts[2:]
    ]


def test_production_code_holds_no_fake_and_no_seed() -> None:
    """The device simulator, the demo data and the synthetic customers live with the tools
    (tools/device_simulator.py, tools/seeds.py, tools/population.py)."""
    found = []
    for path in production_modules("services") + production_modules("shared"):
        where = path.relative_to(ROOT)
        if "simulator" in path.stem:
            found.append(f"{where} is a simulator")
        found += [
            f"{where} imports {module}"
            for module in sorted(imported_modules(path))
            if module.split(".")[0] == "tools" or "simulator" in module
        ]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("seed_"):
                found.append(f"{where} defines {node.name}")
    assert found == []


def test_every_module_of_the_library_is_run_by_a_service() -> None:
    """A module of shared/ that no service (nor the library itself) imports is a tool's, not the library's."""
    imported: set[str] = set()
    for path in production_modules("services") + production_modules("shared"):
        for module in imported_modules(path):
            imported.add(module)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "shared":
                imported.update(f"shared.{alias.name}" for alias in node.names)
    library = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "shared").rglob("*.py")
    }
    # Alembic runs env.py from the directory shared.migrations names as its script location.
    library -= {"shared", "shared.migrations.env"}
    unused = {
        module
        for module in library
        if not any(name == module or name.startswith(f"{module}.") for name in imported)
    }
    assert sorted(unused) == []


def test_the_check_reads_static_dynamic_and_nested_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import a.b\nfrom c import d\ndef f():\n    from e.f import g\n    "
        "importlib.import_module('h.i')\nfrom . import j\n"
    )
    assert imported_modules(sample) == {"a.b", "c", "e.f", "h.i"}


def test_a_service_subscribes_in_one_table_of_its_own_service_functions() -> None:
    """`main.SUBSCRIPTIONS` maps each event type a service consumes to the function that handles it:
    a function of the service's service.py (or of the library), with no layer of wrappers between."""
    assert [name for name in SERVICES if (ROOT / "services" / name / "handlers.py").exists()] == []
    found = []
    for name in SERVICES:
        subscriptions = importlib.import_module(f"services.{name}.main").SUBSCRIPTIONS
        assert subscriptions, f"services/{name}/main.py subscribes to nothing"
        for event_type, handler in subscriptions.items():
            if not (isinstance(event_type, type) and issubclass(event_type, Event)):
                found.append(f"{name}: {event_type!r} is no event type")
            elif (
                not callable(handler)
                or handler.__module__ not in (f"services.{name}.service", "shared")
                and not handler.__module__.startswith("shared.")
            ):
                found.append(
                    f"{name}: {event_type.__name__} is handled by {handler!r}, not by a function of its "
                    f"service.py or the library"
                )
    assert found == []
