"""han installs like any Python tool: its distribution is `han-classifier` (everything that names it reads
han/util/distribution.py), `han --version` says which, and `python -m build` makes a wheel and an sdist that
hold every module and data file of han/ and pipelines/. The install of that wheel into a fresh virtualenv,
and a run with it, is .ci/wheel-check (minutes, so not part of the suite)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import distribution, version
from pathlib import Path

import han
from conftest import ROOT, invoke
from han.store.manifest import package_versions
from han.util.distribution import DISTRIBUTION, installed_version, requirement

# [project]'s name and version (read as text: tomllib is Python 3.11+, han runs on 3.10).
PYPROJECT = dict(re.findall(r'^(name|version) = "([^"]+)"$', (ROOT / "pyproject.toml").read_text("utf-8"), re.M))
PACKAGES = ("han", "pipelines")


def test_the_distribution_name_is_the_one_the_code_looks_up():
    assert PYPROJECT["name"] == DISTRIBUTION == "han-classifier"  # `han` on PyPI is an unrelated project
    installed = distribution(DISTRIBUTION)
    assert installed.version == PYPROJECT["version"] == installed_version() == han.__version__
    scripts = {e.name: e.value for e in installed.entry_points if e.group == "console_scripts"}
    assert scripts == {"han": "pipelines.cli:main"}
    assert requirement() == f"han-classifier=={PYPROJECT['version']}"  # what a logged MLflow model requires
    assert package_versions()["han"] == version(DISTRIBUTION)  # each run's manifest records it


def test_han_version_prints_the_version_and_the_distribution():
    shown = invoke("--version", check=True)
    assert shown.output == f"han {version(DISTRIBUTION)} (han-classifier)\n"
    assert invoke("--version", "predict", check=True).output == shown.output  # eager: before any command


def source_files(root: Path) -> set[str]:
    """Every file of han/ and pipelines/ under `root` that an install needs (caches left out), POSIX-relative."""
    return {
        path.relative_to(root).as_posix()
        for package in PACKAGES
        for path in (root / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_the_wheel_and_sdist_hold_every_module_and_data_file(tmp_path):
    # A copy of what the build reads, so that the build's own folders (build/, *.egg-info) stay out of the repo.
    source = tmp_path / "source"
    source.mkdir()
    for name in [*PACKAGES, "pyproject.toml", "README.md", "LICENSE"]:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    # --no-isolation: the venv's setuptools builds it, offline (the suite's rule); sdist first, the wheel from it.
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    stem = f"han_classifier-{PYPROJECT['version']}"
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == [f"{stem}-py3-none-any.whl", f"{stem}.tar.gz"]
    expected = source_files(source)
    assert "han/py.typed" in expected and "pipelines/cli.py" in expected

    with zipfile.ZipFile(tmp_path / "dist" / f"{stem}-py3-none-any.whl") as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"{stem}.dist-info/METADATA").decode()
        entry_points = wheel.read(f"{stem}.dist-info/entry_points.txt").decode()
    assert {n for n in names if n.split("/")[0] in PACKAGES} == expected
    assert {n.split("/")[0] for n in names} == {*PACKAGES, f"{stem}.dist-info"}  # no tests, configs or docs
    assert f"{stem}.dist-info/licenses/LICENSE" in names
    assert "Name: han-classifier\n" in metadata
    assert 'Requires-Dist: mlflow>=2.10; extra == "mlflow"' in metadata  # the full MLflow: `mlflow ui` runs
    assert "[console_scripts]\nhan = pipelines.cli:main" in entry_points

    with tarfile.open(tmp_path / "dist" / f"{stem}.tar.gz") as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"README.md", "LICENSE", "pyproject.toml", "PKG-INFO"} <= members
    assert expected <= members


def test_the_install_docs_name_the_distribution_and_this_version():
    wheel = f"dist/han_classifier-{PYPROJECT['version']}-py3-none-any.whl"
    for page in (ROOT / "README.md", ROOT / "docs" / "guides" / "install.md"):
        text = page.read_text(encoding="utf-8")
        assert f"pip install {wheel}" in text and "han-classifier" in text, page
    for page in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:  # `han` on PyPI is another project
        assert not re.search(r"pip install [\"']?han\[", page.read_text(encoding="utf-8")), page
