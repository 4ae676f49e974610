"""Repository-wide rules: module size, public API surface, package layout, imports between packages."""

import ast
import enum
import importlib
import importlib.metadata
import inspect
import pathlib
import types
import typing

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = {
    "mesh-model": "mesh_model",
    "mesh-config": "mesh_config",
    "mesh-xds": "mesh_xds",
    "mesh-ca": "mesh_ca",
}
MAX_MODULE_LINES = 800
CODE_DIRS = [ROOT / "packages", ROOT / "examples", ROOT / "tests", ROOT / "scripts"]


def _python_files():
    for directory in CODE_DIRS:
        yield from (p for p in directory.rglob("*.py") if ".venv" not in p.parts)


def test_every_module_stays_under_the_size_limit():
    too_long = {
        str(path.relative_to(ROOT)): count
        for path in _python_files()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def _imported_modules(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _private_imports(source: pathlib.Path, packages: set[str]) -> list[str]:
    """Imports, below ``source``, of a private module (a ``_name`` part) of one of ``packages``."""
    return sorted(
        f"{path.relative_to(ROOT)}: {imported}"
        for path in source.rglob("*.py")
        for imported in _imported_modules(path)
        if imported.split(".")[0] in packages
        and any(part.startswith("_") and part != "__version__" for part in imported.split(".")[1:])
    )


@pytest.mark.parametrize(("distribution", "module"), PACKAGES.items())
def test_a_package_uses_only_the_public_modules_of_the_others(distribution, module):
    # Each package is released on its own: another package's private module may change in any release.
    found = _private_imports(ROOT / "packages" / distribution / "src", set(PACKAGES.values()) - {module})
    assert not found, f"imports of private modules of other packages: {found}"


def test_the_programs_use_only_the_public_modules_of_the_packages():
    found = _private_imports(ROOT / "examples", set(PACKAGES.values()))
    assert not found, f"imports of private modules of the packages: {found}"


@pytest.mark.parametrize(("distribution", "module"), PACKAGES.items())
def test_package_layout(distribution, module):
    base = ROOT / "packages" / distribution
    for name in ("pyproject.toml", "README.md", "CHANGELOG.md"):
        assert (base / name).is_file(), f"{distribution} has no {name}"
    source = base / "src" / module
    assert (source / "py.typed").is_file(), f"{module} is not marked as typed"
    assert (source / "_version.py").is_file()
    assert any((base / "tests").glob("test_*.py")), f"{distribution} has no tests"
    package = importlib.import_module(module)
    assert package.__version__ == importlib.metadata.version(distribution)


def _public_names(package: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


@pytest.mark.parametrize("module", PACKAGES.values())
def test_all_lists_exactly_what_the_package_exports(module):
    package = importlib.import_module(module)
    exported = set(package.__all__)
    assert len(exported) == len(package.__all__), "__all__ has duplicates"
    assert exported - {"__version__"} == _public_names(package)
    missing = [name for name in exported if not hasattr(package, name)]
    assert not missing, f"__all__ names what {module} does not define: {missing}"


def _is_extensible(value: type) -> bool:
    return (
        issubclass(value, BaseException | enum.Enum)
        or getattr(value, "_is_protocol", False)
        or typing.is_typeddict(value)
    )


@pytest.mark.parametrize("module", PACKAGES.values())
def test_public_api_is_documented_and_classes_are_final(module):
    package = importlib.import_module(module)
    assert inspect.getdoc(package), f"{module} has no docstring"
    undocumented, not_final = [], []
    for name in package.__all__:
        value = getattr(package, name)
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if not (value.__doc__ or "").strip():
            undocumented.append(name)
        if inspect.isclass(value) and not _is_extensible(value) and not getattr(value, "__final__", False):
            not_final.append(name)
    assert not undocumented, f"public names without a docstring: {undocumented}"
    assert not not_final, f"concrete public classes not marked @final: {not_final}"
