"""Who may import what (../shared/DESIGN.md, "Folders and what each owns"), read from the source.

Every import statement of every module counts, at module level or inside a function (a lazy import
is still a dependency), relative imports resolved to the module they name.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("allocator", "cloud", "datasets", "onboard", "replay")
CORE = "carlink"  # the carlink/ folder: CLI, schemas, wire protocol, core types, zoo

# DESIGN.md's table: the folders each folder may import besides itself and third-party packages.
MAY_IMPORT: dict[str, frozenset[str]] = {
    CORE: frozenset(),
    "allocator": frozenset({CORE}),
    "datasets": frozenset({CORE}),
    "cloud": frozenset({CORE}),
    "onboard": frozenset({CORE, "allocator", "datasets"}),
    "replay": frozenset({CORE, *FOLDERS}),
}
# "allocator/: pure computation: no I/O, no torch, no networking".
ALLOCATOR_MAY_NOT_USE = ("torch", "torchvision", "cv2", "grpc", "socket", "http", "urllib", "requests")


@dataclass(frozen=True)
class ImportLine:
    source: str  # the importing file, relative to the repository
    line: int
    module: str  # absolute module name, e.g. carlink.onboard.encoder

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.module}"


def _package_of(rel: Path) -> tuple[str, str]:
    """(folder, dotted package) of a source file: onboard/x.py -> ("onboard", "carlink.onboard")."""
    folder = rel.parts[0]
    inner = list(rel.parts[1:-1])
    base = ["carlink"] if folder == CORE else ["carlink", folder]
    return folder, ".".join(base + inner)


def _imports(rel: Path, text: str) -> list[ImportLine]:
    """The imports of the module at ``rel`` (relative to the repository) whose source is ``text``."""
    _, package = _package_of(rel)
    tree = ast.parse(text, filename=str(rel))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from carlink import allocator` imports the sub-package: name it.
            modules = [f"{base}.{alias.name}" if base == "carlink" else base for alias in node.names]
        else:
            continue
        found += [ImportLine(str(rel), node.lineno, m) for m in modules]
    return found


def _folder_of(module: str) -> str | None:
    """The repository folder a module lives in, or None for stdlib and third-party modules."""
    parts = module.split(".")
    if parts[0] != "carlink":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in FOLDERS else CORE


def _sources() -> list[Path]:
    files = []
    for folder in (CORE, *FOLDERS):
        files += [p for p in sorted((REPO / folder).rglob("*.py")) if "__pycache__" not in p.parts]
    return files


def _violations() -> list[str]:
    bad = []
    for path in _sources():
        rel = path.relative_to(REPO)
        folder = rel.parts[0]
        allowed = MAY_IMPORT[folder] | {folder}
        for imp in _imports(rel, path.read_text(encoding="utf-8")):
            target = _folder_of(imp.module)
            if target is not None and target not in allowed:
                bad.append(f"{imp}: {folder}/ may import only {sorted(allowed - {folder}) or 'third-party packages'}")
            top = imp.module.split(".")[0]
            if folder == "allocator" and top in ALLOCATOR_MAY_NOT_USE:
                bad.append(f"{imp}: allocator/ is pure computation (no torch, images or networking)")
    return bad


def test_every_folder_imports_only_what_the_design_allows() -> None:
    bad = _violations()
    assert not bad, "imports against DESIGN.md:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize(
    "folder, code, target",
    [
        ("onboard", "from carlink.replay.link import MTU\n", "carlink.replay.link"),
        ("cloud", "def f():\n    from carlink.onboard import encoder\n", "carlink.onboard"),
        ("carlink", "from carlink import allocator\n", "carlink.allocator"),
        ("allocator", "from ..onboard.policy import x\n", "carlink.onboard.policy"),
    ],
)
def test_the_reader_sees_lazy_relative_and_package_imports(folder, code, target) -> None:
    # The check must not pass by overlooking imports: each kind of statement it has to read.
    (imp,) = _imports(Path(folder) / "probe.py", code)
    assert imp.module == target and _folder_of(imp.module) not in MAY_IMPORT[folder] | {folder}
