"""The wheel: what pip installs from it, and the module entry point.

pyproject.toml lists the packages explicitly (``training/`` installs as ``mambaner_cli.training``, which
setuptools' find cannot map); these tests build the wheel and check that the list names every package
folder of the repository, that nothing but ``mambaner_cli`` lands at the top level, and that the shipped
models are in it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "mambaner_cli"
# repository folder -> its place in the wheel
SOURCES = {PACKAGE: PACKAGE, "training": f"{PACKAGE}/training"}
MODEL_FILES = ("config.json", "model.safetensors", "vocab.json")
# what the build must not see: a stale build/lib would put deleted modules in the wheel
NOT_COPIED = (".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache",
              ".ruff_cache", "runs", "notes")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel built from a clean copy of the repository (pip builds in the source tree, leaving build/
    and *.egg-info behind: not in the working tree, which may be shared)."""
    root = tmp_path_factory.mktemp("packaging")
    source, out = root / "source", root / "wheel"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_COPIED))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
               "--disable-pip-version-check", "-q", "-w", str(out), str(source)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def dist_info(wheel: zipfile.ZipFile) -> str:
    (folder,) = {name.split("/")[0] for name in wheel.namelist() if name.split("/")[0].endswith(".dist-info")}
    return folder


def package_folders() -> dict[Path, str]:
    """Every package folder of the repository (a folder with an __init__.py) -> its path in the wheel."""
    folders = {}
    for source, target in SOURCES.items():
        for init in sorted((REPO / source).rglob("__init__.py")):
            relative = init.parent.relative_to(REPO / source).as_posix()
            folders[init.parent] = target if relative == "." else f"{target}/{relative}"
    return folders


@pytest.mark.slow
def test_wheel_holds_only_mambaner_cli_and_its_dist_info(wheel):
    info = dist_info(wheel)
    names = wheel.namelist()
    assert names
    strays = [name for name in names if name.split("/")[0] not in (PACKAGE, info)]
    assert not strays, f"files outside {PACKAGE}/ and {info}/: {strays}"
    assert any(name.startswith(f"{PACKAGE}/training/") for name in names)
    assert not any(name.startswith("training/") for name in names)


@pytest.mark.slow
def test_top_level_txt_lists_only_mambaner_cli(wheel):
    top_level = wheel.read(f"{dist_info(wheel)}/top_level.txt").decode()
    assert top_level.split() == [PACKAGE]


@pytest.mark.slow
def test_every_package_folder_is_in_the_wheel_with_all_its_modules(wheel):
    names = set(wheel.namelist())
    folders = package_folders()
    assert f"{PACKAGE}/training" in folders.values() and f"{PACKAGE}/model/ops" in folders.values()
    missing = [
        f"{folder.relative_to(REPO).as_posix()}/{module.name} (as {target}/{module.name})"
        for folder, target in folders.items()
        for module in sorted(folder.glob("*.py"))
        if f"{target}/{module.name}" not in names
    ]
    assert not missing, (
        "not in the wheel (is the package listed in pyproject.toml's [tool.setuptools] packages?): "
        + ", ".join(missing)
    )


@pytest.mark.slow
def test_shipped_models_are_in_the_wheel(wheel):
    names = set(wheel.namelist())
    models = sorted(path for path in (REPO / PACKAGE / "shipped_models").iterdir() if path.is_dir())
    assert models
    missing = [
        f"{PACKAGE}/shipped_models/{model.name}/{file}"
        for model in models
        for file in MODEL_FILES
        if f"{PACKAGE}/shipped_models/{model.name}/{file}" not in names
    ]
    assert not missing, missing


@pytest.mark.slow
def test_benchmarks_and_tests_are_not_in_the_wheel(wheel):
    shipped = [name for name in wheel.namelist() if {"benchmarks", "tests"} & set(name.split("/")[:-1])]
    assert not shipped, shipped


def test_python_m_mambaner_cli_help_exits_zero():
    done = subprocess.run([sys.executable, "-m", PACKAGE, "--help"], check=False, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Usage" in done.stdout
