"""What an installed oncal-feed contains: every package, the migrations, the data files.

`pyproject.toml` lists packages by hand (the top-level migrations/ folder is shipped as
`oncal_feed.migrations`), so a new package folder is easily forgotten; these tests catch it.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from oncal_feed.config import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def setuptools_config() -> dict[str, Any]:
    """The [tool.setuptools] table of pyproject.toml."""
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]


def package_folders(setuptools_config: dict[str, Any]) -> dict[str, Path]:
    """Every folder with an `__init__.py` that ships, by dotted package name."""
    found = {
        ".".join(init.parent.relative_to(ROOT).parts): init.parent
        for init in (ROOT / "oncal_feed").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    for name, folder in setuptools_config.get("package-dir", {}).items():
        found[name] = ROOT / folder
    return found


def test_every_package_folder_is_listed(setuptools_config: dict[str, Any]) -> None:
    """Each package folder is in `packages`, and each listed package exists."""
    folders = package_folders(setuptools_config)
    listed = set(setuptools_config["packages"])
    assert sorted(set(folders) - listed) == [], "add these to [tool.setuptools] packages"
    assert sorted(listed - set(folders)) == [], "these listed packages have no folder"


def test_every_data_file_is_package_data(setuptools_config: dict[str, Any]) -> None:
    """Non-module files in package folders (templates, migration versions) are shipped.

    A file ships when some listed package's `package-data` glob, taken relative to that
    package's folder, matches it.
    """
    folders = package_folders(setuptools_config)
    listed = {name: folders[name] for name in setuptools_config["packages"] if name in folders}
    patterns = setuptools_config.get("package-data", {})
    missing = []
    for folder in set(listed.values()):
        for path in folder.rglob("*"):
            if path.is_dir() or "__pycache__" in path.parts:
                continue
            if path.suffix == ".py" and path.parent in listed.values():
                continue  # a module of a listed package
            if not any(
                path.is_relative_to(package_folder)
                and any(
                    fnmatch.fnmatch(str(path.relative_to(package_folder)), pattern)
                    for pattern in patterns.get(name, [])
                )
                for name, package_folder in listed.items()
            ):
                missing.append(str(path.relative_to(ROOT)))
    assert sorted(missing) == [], "add these to [tool.setuptools.package-data]"


def test_wheel_contains_migrations_and_data(tmp_path: Path) -> None:
    """A built wheel carries the migrations, so an installed copy can run `init-db`."""
    # Build from a copy: setuptools writes build/ and *.egg-info into the source tree.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("oncal_feed", "migrations"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).is_file():
            shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), "."],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("oncal_feed-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    versions = sorted((ROOT / "migrations" / "versions").glob("*.py"))
    expected = {
        "oncal_feed/migrations/env.py",
        "oncal_feed/migrations/script.py.mako",
        "oncal_feed/api/openapi.json",
        *(f"oncal_feed/migrations/versions/{path.name}" for path in versions),
    }
    assert versions
    assert sorted(expected - names) == []


def test_env_example_documents_every_setting() -> None:
    """Each setting config.py reads appears in .env.example, commented."""
    text = (ROOT / ".env.example").read_text()
    documented = {
        line.lstrip("# ").split("=", 1)[0]
        for line in text.splitlines()
        if "=" in line and line.lstrip("# ").split("=", 1)[0].isupper()
    }
    assert sorted(set(DEFAULTS) - documented) == []
