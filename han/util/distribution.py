"""What han installs as: its distribution name and the installed version, looked up in one place.

The import name is `han` and the command is `han`, but the distribution (the name pip, wheels and MLflow's
requirements use) is `han-classifier`: `han` on PyPI is an unrelated project.
"""

from __future__ import annotations

DISTRIBUTION = "han-classifier"  # pip install han-classifier; wheels are han_classifier-<version>-*.whl


def installed_version() -> str | None:
    """han's version from the installed distribution's metadata, or None when han runs from a source tree
    that was never installed (`pip install .` or `pip install -e .` installs it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return None


def requirement() -> str:
    """The pip requirement that installs this han: `han-classifier==<version>` (unpinned when not installed)."""
    found = installed_version()
    return DISTRIBUTION if found is None else f"{DISTRIBUTION}=={found}"
