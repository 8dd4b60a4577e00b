"""Packaging: a warning-free import, the floors and lock files in step with pyproject.toml, the typing marker."""

import os
import re
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _floors(requirements: list[str]) -> dict[str, str]:
    """{normalized name: version} for each `name[extras]>=version` requirement."""
    floors = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?>=([0-9][0-9A-Za-z.]*)", requirement.replace(" ", ""))
        assert match, f"requirement {requirement!r} has no `>=` floor"
        floors[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(3)
    return floors


def test_import_raises_no_warning():
    # `-W error` turns any warning raised while importing jcnf (and its dependencies) into an exception.
    result = subprocess.run([sys.executable, "-W", "error", "-c", "import jcnf"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_distrax_filter_leaves_other_warnings_alone():
    # The filter covers tfp's DeprecationWarning during distrax's first import only: afterwards a
    # DeprecationWarning from anywhere else still becomes an error under `-W error`.
    code = "import jcnf, warnings; warnings.warn('later', DeprecationWarning)"
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "DeprecationWarning: later" in result.stderr


def _pinned(filename: str) -> dict[str, str]:
    """{normalized name: version} for each `name==version` line of a constraints file."""
    pinned = {}
    with open(os.path.join(ROOT, "constraints", filename)) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                name, _, version = line.partition("==")
                pinned[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pinned


def test_floors_file_pins_every_floor():
    project = _pyproject()["project"]
    expected = _floors(project["dependencies"])
    expected.update(_floors(project["optional-dependencies"]["test"]))
    assert _pinned("floors.txt") == expected


def test_lock_satisfies_every_floor():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    requirements = [Requirement(text) for text in project["dependencies"] + extras["test"] + extras["experiments"]]
    locked = _pinned("lock.txt")
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+]*", version) for version in locked.values()), locked
    assert "jcnf" not in locked
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not pinned in constraints/lock.txt"
        assert requirement.specifier.contains(locked[name], prereleases=True), (str(requirement), locked[name])


@pytest.mark.parametrize("key", ["requires-python", "license"])
def test_metadata(key):
    expected = {"requires-python": ">=3.11", "license": "Apache-2.0"}[key]
    assert _pyproject()["project"][key] == expected


def test_typing_marker_is_package_data():
    assert os.path.isfile(os.path.join(ROOT, "jcnf", "py.typed"))
    assert "py.typed" in _pyproject()["tool"]["setuptools"]["package-data"]["jcnf"]
    assert os.path.isfile(os.path.join(ROOT, "LICENSE"))
