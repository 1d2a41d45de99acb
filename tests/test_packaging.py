"""Packaging: what ``python -m build`` makes is complete, valid, and works once installed.

Slow (it builds, and installs into a fresh virtualenv from the package index),
so it runs only when asked for: ``pytest -m packaging tests/test_packaging.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "audit_events"
# Not part of the distribution, and bulky or volatile in a working tree.
_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", ".venvs", ".nox", ".tox", "build", "dist", "*.egg-info", "_build", "__pycache__", "*.py[cod]",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "*.sqlite3", "bench-out", "node_modules", ".cache",
)  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _only_when_selected(request: pytest.FixtureRequest) -> None:
    # Module-scoped, so it runs before (and instead of) the build in ``dist``.
    if "packaging" not in (request.config.getoption("markexpr", "") or ""):
        pytest.skip("slow: run with `pytest -m packaging tests/test_packaging.py`")


def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, and the wheel built from it, of a copy of the source tree (the tree itself stays clean)."""
    source = tmp_path_factory.mktemp("source") / "src"
    shutil.copytree(ROOT, source, ignore=_NOT_COPIED)
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, source)
    return out


def _sdist(dist: Path) -> list[str]:
    (path,) = dist.glob("*.tar.gz")
    with tarfile.open(path) as archive:
        # Drop the leading "name-version/" directory.
        return [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]


def _wheel(dist: Path) -> list[str]:
    (path,) = dist.glob("*.whl")
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def _package_files(*parts: str) -> set[str]:
    """Files of the source package under ``parts``, as paths inside the distribution."""
    base = PACKAGE.joinpath(*parts)
    if not base.is_dir():
        return set()
    return {
        path.relative_to(ROOT).as_posix()
        for path in base.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}
    }


def test_wheel_holds_the_app_and_nothing_else(dist: Path) -> None:
    names = set(_wheel(dist))
    expected = _package_files("migrations") | _package_files("templates") | _package_files("static")
    expected |= {"audit_events/py.typed", "audit_events/__init__.py", "audit_events/management/commands/__init__.py"}
    assert "audit_events/migrations/0001_initial.py" in expected
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
    assert any(name.endswith(".dist-info/licenses/LICENSE") or name.endswith(".dist-info/LICENSE") for name in names)
    top_level = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {"audit_events"}, f"the wheel installs more than the app: {sorted(top_level)}"


def test_sdist_holds_the_app_the_license_and_the_metadata(dist: Path) -> None:
    names = set(_sdist(dist))
    expected = _package_files("migrations") | _package_files("templates") | _package_files("static")
    expected |= {"audit_events/py.typed", "LICENSE", "README.md", "CHANGELOG.md", "setup.cfg", "pyproject.toml"}
    assert expected <= names, f"missing from the sdist: {sorted(expected - names)}"


def test_twine_check_passes(dist: Path) -> None:
    output = _run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))
    assert output.count("PASSED") == 2, output


_SETTINGS = """
SECRET_KEY = "packaging-test"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "audit_events", "shop"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUDIT_EVENTS = {"MODELS": ["shop.Item"], "SNAPSHOT_EVERY": 10}
"""

_MODELS = """
from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=50)
    price = models.DecimalField(max_digits=8, decimal_places=2)
"""

_STORY = """
import os, sys
import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
django.setup()
import audit_events
from audit_events import history, restore
from shop.models import Item

assert "site-packages" in audit_events.__file__, audit_events.__file__
item = Item.objects.create(name="pen", price="1.50")
item.price = "2.00"
item.save()
pk = item.pk
item.delete()
assert [e.action for e in history(Item, pk)] == ["create", "update", "delete"]
assert str(restore(Item, pk).price) == "2.00"
print("story ok")
"""


def test_wheel_installs_checks_and_migrates_in_a_fresh_project(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    env_dir = tmp_path / "venv"
    # No pip inside (ensurepip alone takes ~20 s): this interpreter's pip installs into it.
    venv.create(env_dir, with_pip=False)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--disable-pip-version-check", wheel)

    project = tmp_path / "project"
    (project / "shop").mkdir(parents=True)
    (project / "settings.py").write_text(textwrap.dedent(_SETTINGS))
    (project / "shop" / "__init__.py").write_text("")
    (project / "shop" / "models.py").write_text(textwrap.dedent(_MODELS))
    (project / "story.py").write_text(textwrap.dedent(_STORY))
    (project / "manage.py").write_text(
        "import os, sys\n"
        "from django.core.management import execute_from_command_line\n"
        'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")\n'
        "execute_from_command_line(sys.argv)\n"
    )
    # Only the installed wheel may provide audit_events: nothing from this checkout.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "DJANGO_SETTINGS_MODULE"}}

    def manage(*args: str) -> str:
        return _run(python, "manage.py", *args, cwd=project, env=env)

    assert "no issues" in manage("check")
    manage("makemigrations", "shop", "--verbosity", "0")
    # The shipped migrations match the models of the installed Django.
    manage("makemigrations", "audit_events", "--check", "--dry-run")
    assert "Applying audit_events.0001_initial... OK" in manage("migrate")
    assert "story ok" in _run(python, "story.py", cwd=project, env=env)
