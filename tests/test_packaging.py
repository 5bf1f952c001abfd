"""What ``pip install st-middleware`` would bring: the sdist and wheel, built for real.

Built once per module without build isolation (the venv's hatchling, no
network), then checked the way PyPI and a merchant would: ``twine check``
renders the README, the wheel holds the package and nothing else, its
metadata names the dependencies, license and Python versions, and the wheel
alone (not this source tree) runs ``python -m st_middleware``.
"""

from __future__ import annotations

import email.parser
import email.policy
import os
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

import st_middleware

pytest.importorskip("build", reason="needs `build` (pip install build)")
pytest.importorskip("hatchling", reason="needs `hatchling` for --no-isolation builds")
pytest.importorskip("twine", reason="needs `twine` (pip install twine)")

# Building and unpacking take several seconds: a real build, three interpreters.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
VERSION = st_middleware.__version__


def _run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # Without --sdist/--wheel, build makes the sdist and then the wheel *from
    # the sdist*: a file missing from the sdist fails the wheel here.
    _run("-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT))
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (found,) = dist.glob("st_middleware-*.whl")
    return found


@pytest.fixture(scope="module")
def sdist(dist: Path) -> Path:
    (found,) = dist.glob("st_middleware-*.tar.gz")
    return found


@pytest.fixture(scope="module")
def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(f"st_middleware-{VERSION}.dist-info/METADATA").decode()
    return email.parser.Parser(policy=email.policy.compat32).parsestr(text)


def test_both_files_are_built_under_the_package_version(wheel: Path, sdist: Path) -> None:
    assert wheel.name == f"st_middleware-{VERSION}-py3-none-any.whl"
    assert sdist.name == f"st_middleware-{VERSION}.tar.gz"


def test_twine_check_passes_so_the_readme_renders_on_pypi(wheel: Path, sdist: Path) -> None:
    output = _run("-m", "twine", "check", "--strict", str(wheel), str(sdist))

    assert output.count("PASSED") == 2, output


def test_wheel_holds_the_package_typed_with_emulator_and_plugin_and_no_tests(
    wheel: Path,
) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(f"st_middleware-{VERSION}.dist-info/entry_points.txt")

    for needed in (
        "st_middleware/__init__.py",
        "st_middleware/py.typed",
        "st_middleware/__main__.py",
        "st_middleware/_check.py",
        "st_middleware/testing.py",
        "st_middleware/emulator/__init__.py",
        "st_middleware/emulator/__main__.py",
        "st_middleware/emulator/server.py",
        "st_middleware/emulator/store.py",
        f"st_middleware-{VERSION}.dist-info/licenses/LICENSE",
    ):
        assert needed in names, needed
    info = f"st_middleware-{VERSION}.dist-info/"
    assert all(name.startswith(("st_middleware/", info)) for name in names), sorted(names)
    assert not [name for name in names if "tests/" in name or "conftest" in name]
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    # The pytest plugin and the emulator's console script are registered.
    text = entry_points.decode()
    assert "[pytest11]\nst_middleware = st_middleware.testing" in text
    assert "st-emulator = st_middleware.emulator.__main__:main" in text


def test_metadata_names_dependencies_license_and_pythons(metadata: Message) -> None:
    requires = [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]
    runtime = {req.name for req in requires if req.marker is None}
    python = SpecifierSet(metadata["Requires-Python"])
    classifiers = set(metadata.get_all("Classifier") or [])

    assert metadata["Name"] == "st-middleware"
    assert metadata["Version"] == VERSION
    assert {"cryptography", "httpx"} <= runtime
    # Frameworks and test tools are never runtime dependencies.
    assert not runtime & {"django", "flask", "fastapi", "starlette", "pytest"}
    assert (metadata["License-Expression"] or metadata["License"]) == "MIT"
    assert "LICENSE" in (metadata.get_all("License-File") or [])
    assert "3.10" in python
    assert "3.9" not in python
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    for framework in ("Django", "Flask", "FastAPI", "AsyncIO"):
        assert f"Framework :: {framework}" in classifiers
    assert "Topic :: Internet :: WWW/HTTP :: WSGI :: Middleware" in classifiers
    assert "Typing :: Typed" in classifiers
    assert metadata["Summary"]
    assert metadata["Keywords"]
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert str(metadata.get_payload()).lstrip().startswith("# st-middleware")


def test_sdist_carries_license_changelog_and_the_typed_marker(sdist: Path) -> None:
    top = f"st_middleware-{VERSION}/"
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())

    for needed in (
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "pyproject.toml",
        "src/st_middleware/py.typed",
        "src/st_middleware/emulator/server.py",
    ):
        assert top + needed in names, needed
    assert not [name for name in names if "/.venv/" in name or "__pycache__" in name]


def test_the_wheel_alone_runs_the_commands(wheel: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    # The unpacked wheel comes first on the path, before this tree's editable
    # install; the dependencies come from the running venv.
    env = {**os.environ, "PYTHONPATH": str(unpacked)}

    where = _run("-c", "import st_middleware; print(st_middleware.__file__)", cwd=tmp_path, env=env)
    check_help = _run("-m", "st_middleware", "check", "--help", cwd=tmp_path, env=env)
    emulator_help = _run("-m", "st_middleware.emulator", "--help", cwd=tmp_path, env=env)

    assert Path(where.strip()).is_relative_to(unpacked)
    assert "exit status: 0 when no line is FAIL" in check_help
    assert "--publishable-key" in emulator_help
