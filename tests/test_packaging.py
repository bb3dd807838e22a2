"""The repository layout and the one-distribution install, editable and from a built wheel."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("allocator", "cloud", "datasets", "onboard", "replay")
SUBPACKAGES = ("carlink",) + tuple(f"carlink.{f}" for f in FOLDERS)


def _tracked_top_level() -> set[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()
    return {p.split("/", 1)[0] for p in out}


def test_top_level_is_exactly_the_designed_layout() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    expected = {"pyproject.toml", "README.md", ".ci", ".gitignore", "tests", "carlink", *FOLDERS}
    assert _tracked_top_level() == expected


def test_editable_install_maps_every_folder_under_carlink() -> None:
    for folder in FOLDERS:
        mod = importlib.import_module(f"carlink.{folder}")
        assert Path(mod.__file__).resolve().parent == REPO / folder


def _source_modules() -> set[str]:
    """Every .py file the distribution should ship, as its path inside the wheel."""
    found = {f"carlink/{p.relative_to(REPO / 'carlink')}" for p in (REPO / "carlink").rglob("*.py")}
    for folder in FOLDERS:
        found |= {f"carlink/{folder}/{p.relative_to(REPO / folder)}" for p in (REPO / folder).rglob("*.py")}
    return {p for p in found if "__pycache__" not in p}


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "build", "dist", "*.egg-info",
                                    ".pytest_cache", ".hypothesis")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for folder in ("carlink", *FOLDERS):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = out.glob("carlink-*.whl")
    return wheel


def test_wheel_holds_only_carlink_and_every_module(built_wheel: Path) -> None:
    names = zipfile.ZipFile(built_wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert top == {"carlink", next(t for t in top if t.endswith(".dist-info"))}
    missing = _source_modules() - set(names)
    assert not missing, f"modules left out of the wheel: {sorted(missing)}"
    entry_points = zipfile.ZipFile(built_wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "carlink = carlink.cli:main" in entry_points


def test_every_folder_imports_from_the_wheel(built_wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(built_wheel).extractall(site)
    code = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(site)!r})\n"
        f"for name in {SUBPACKAGES!r}:\n"
        "    mod = importlib.import_module(name)\n"
        f"    assert mod.__file__.startswith({str(site)!r}), (name, mod.__file__)\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
