"""Every module of the package imports on its own, first, in a fresh interpreter.

An import cycle only bites when a module of the cycle happens to be imported first (e.g.
`oncal_feed.sync.cli` before `oncal_feed.cli`), which a test suite importing everything
in one order never shows. So each module gets an interpreter of its own.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import oncal_feed

ROOT = Path(__file__).resolve().parent.parent


def package_modules() -> list[str]:
    """Every module and package of `oncal_feed`, except the Alembic migrations (run by Alembic)."""
    names = ["oncal_feed"]
    for module in pkgutil.walk_packages(oncal_feed.__path__, "oncal_feed."):
        if not module.name.startswith("oncal_feed.migrations"):
            names.append(module.name)
    return sorted(names)


def import_alone(name: str) -> tuple[str, int, str]:
    """Import `name` as the first thing in a new interpreter; return its exit code and stderr."""
    done = subprocess.run(
        [sys.executable, "-c", f"import {name}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    return name, done.returncode, done.stderr


def test_the_walk_finds_the_modules_that_had_cycles() -> None:
    """The listing is not empty and holds the modules of the cycles that were fixed."""
    names = package_modules()
    for name in ("oncal_feed.sync.cli", "oncal_feed.connections.cli", "oncal_feed.feeds.cli",
                 "oncal_feed.cli.helpers", "oncal_feed.sync.tasks", "oncal_feed.sync.service",
                 "oncal_feed.connections.flow", "oncal_feed.sync.engine"):  # fmt: skip
        assert name in names


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """`python -c "import oncal_feed.x.y"` works for every module, whatever it imports."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(import_alone, package_modules()))
    failed = {name: stderr.strip().splitlines()[-1] for name, code, stderr in results if code}
    assert failed == {}
