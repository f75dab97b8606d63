"""The house's layers (pyproject.toml's import-linter contracts) hold, and the check can fail:
on a copy of the code with one import added that runs upwards or across, it does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["root_packages"])


def _copy(tmp_path: Path) -> Path:
    """The project's packages and configuration, in a folder of their own."""
    house = tmp_path / "house"
    house.mkdir()
    shutil.copy(ROOT / "pyproject.toml", house)
    for package in _packages():
        shutil.copytree(ROOT / package, house / package, ignore=shutil.ignore_patterns("*.pyc"))
    return house


def _lint(house: Path) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path, before the editable install's finder for the checkout.
    env = {**os.environ, "PYTHONPATH": str(house)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=house, env=env, capture_output=True, text=True
    )


def _add_import(house: Path, module: str, statement: str) -> None:
    path = house / f"{module.replace('.', '/')}.py"
    path.write_text(path.read_text() + f"\n{statement}  # added by the test\n")


def test_the_checkout_keeps_every_contract(tmp_path):
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_top_level_package_has_its_floor_is_installed_and_type_checked():
    """A new folder must be given its floor, or nothing would check its imports; and it must
    be packaged and type-checked like the others."""
    on_disk = {
        p.parent.name
        for p in ROOT.glob("*/__init__.py")
        if p.parent.name not in {"tests", "benchmarks"}
    }
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [layers] = [
        c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"
    ]
    on_floors = {name.strip() for layer in layers for name in layer.split("|")}
    installed = {p.rstrip("*") for p in config["tool"]["setuptools"]["packages"]["find"]["include"]}
    typecheck = next(
        line for line in (ROOT / "Makefile").read_text().splitlines() if "/mypy " in line
    )
    assert on_disk == set(_packages()) == on_floors == installed
    assert on_disk == set(typecheck.split()[1:])


@pytest.mark.parametrize(
    ("module", "statement", "broken"),
    [
        # the ground reaching up to a concern
        ("core.clock", "import cases.board", "Imports run downwards"),
        # a concern reaching up to a door
        ("insights.kpis", "from service import limits", "Imports run downwards"),
        # two siblings on one floor
        ("campaigns.sms", "import feedback.parsing", "Imports run downwards"),
        # a concern reaching up to the demo's world
        ("cases.digest", "import demo.customers", "Imports run downwards"),
        # a door other than the demo's using the demo's world
        ("service.pages", "import demo.customers", "used only by the demo"),
        ("careloop.insights_cli", "import demo.customers", "used only by the demo"),
        # a flow reaching the demo's world through the demo's flow
        ("flows.common", "import flows.demo", "used only by the demo"),
    ],
)
def test_an_import_that_breaks_the_house_fails_the_check(tmp_path, module, statement, broken):
    house = _copy(tmp_path)
    _add_import(house, module, statement)
    result = _lint(house)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout
    assert module in result.stdout
