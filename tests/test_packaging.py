"""The repository layout and the one-distribution install, editable and from a built wheel."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
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


def _copy_source_tree(dest: Path) -> Path:
    """What the distribution is built from, without build leftovers (a build writes into it)."""
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "build", "dist", "*.egg-info",
                                    ".pytest_cache", ".hypothesis")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for folder in ("carlink", *FOLDERS):
        shutil.copytree(REPO / folder, dest / folder, ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = _copy_source_tree(tmp_path_factory.mktemp("src"))
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


# -- a plain install: `pip install .` without extras, then the default paths ----------------------

ONLY_IN_EXTRAS = ("pulp", "pyscipopt", "ray", "torchvision")  # what the extras alone bring


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment (no system site-packages, which would hide a missing
    dependency) with `python3 -m pip install <copy of the tree>` and no extras. pip reads the
    same configuration (index, find-links) as the install the tests themselves run in."""
    root = tmp_path_factory.mktemp("plain")
    src = root / "src"
    src.mkdir()
    _copy_source_tree(src)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    start = time.monotonic()
    # --no-compile: byte-compiling every installed module (torch's thousands) would double the
    # CPU time; the commands below compile what they import.
    res = subprocess.run([str(venv / "bin" / "python3"), "-m", "pip", "install", "-q", "--no-compile", str(src)],
                         capture_output=True, text=True, timeout=1500, env=_venv_env(venv))
    assert res.returncode == 0, f"pip install (no extras) failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    print(f"plain install took {time.monotonic() - start:.0f} s")
    return venv


def _venv_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _carlink(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([str(venv / "bin" / "carlink"), *args], cwd=cwd, capture_output=True, text=True,
                         timeout=900, env=_venv_env(venv))
    # Every command group loads: none is dropped for a missing dependency.
    assert "commands are unavailable" not in res.stderr, res.stderr
    return res


def test_plain_install_leaves_the_extras_out(plain_venv: Path) -> None:
    code = f"import importlib.util as u; print([m for m in {ONLY_IN_EXTRAS!r} if u.find_spec(m)])"
    res = subprocess.run([str(plain_venv / "bin" / "python3"), "-c", code], capture_output=True, text=True,
                         env=_venv_env(plain_venv))
    assert res.stdout.strip() == "[]", res.stdout + res.stderr


def test_plain_install_runs_the_demo_replay(plain_venv: Path, tmp_path: Path) -> None:
    res = _carlink(plain_venv, tmp_path, "replay")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "replay-out" / "summary.json").read_text())
    assert "carlink" in summary["policies"]


def test_plain_install_allocates_and_names_the_extra_a_baseline_needs(plain_venv: Path, tmp_path: Path) -> None:
    res = _carlink(plain_venv, tmp_path, "allocate", "--bandwidth", "10", "--rtt", "30")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "expected utility" in res.stdout
    res = _carlink(plain_venv, tmp_path, "allocate", "--bandwidth", "10", "--rtt", "30", "--solver", "pulp")
    assert res.returncode == 2
    assert res.stderr.startswith("carlink: error: ") and "pip install 'carlink[baselines]'" in res.stderr


def _example_config_in(root: Path, scene: Path) -> tuple[Path, dict]:
    """onboard/example.toml with every absolute path moved under ``root``; the profile it names
    is the shipped default profile and its scene the real Waymo frame."""
    text = re.sub(r'"(/[^"]*)"', lambda m: json.dumps(str(root / m.group(1).lstrip("/"))),
                  (REPO / "onboard" / "example.toml").read_text())
    config = root / "example.toml"
    config.write_text(text)
    cfg = tomllib.loads(text)
    profile, source = Path(cfg["daemon"]["profile"]), Path(cfg["source"]["path"])
    sink, ca_cert = Path(cfg["sink"]["path"]), Path(cfg["cloud"]["ca_cert"])
    for path in (profile, source, sink, ca_cert):
        path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "carlink" / "profiles" / "default.json", profile)
    source.symlink_to(scene)
    # check-config checks what run would refuse: the sink's folder and the server's CA must exist.
    from cloud_testkit import make_pki

    made = make_pki(ca_cert.parent).ca_cert
    if made != ca_cert:
        shutil.copy2(made, ca_cert)
    return config, cfg


def test_plain_install_checks_the_example_config(plain_venv: Path, tmp_path: Path, waymo_frame_file: Path) -> None:
    config, cfg = _example_config_in(tmp_path, waymo_frame_file)
    res = _carlink(plain_venv, tmp_path, "onboard", "check-config", str(config))
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{config}: OK" in res.stdout
    for task in cfg["tasks"]:
        assert f"task {task['name']}: camera {task['camera']}" in res.stdout
