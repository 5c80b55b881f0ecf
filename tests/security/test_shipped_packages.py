"""What the services ship holds no dev signer and no test helpers (ADR 0014): the
`carebridge-shared` wheel, built here, has neither, depends on no dev package, and no module of
shared, contracts or a service imports `carebridge_devstack`."""

from __future__ import annotations

import ast
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV_PACKAGE = "carebridge_devstack"
DEV_DISTRIBUTION = "carebridge-devstack"
# The modules that moved out of shared into the dev package, and what they held.
DEV_ONLY_MODULES = ("signer", "testing", "dev_auth", "pytest_plugin")
SHIPPED_PACKAGES = {
    "carebridge-contracts": ROOT / "contracts" / "carebridge_contracts",
    "carebridge-shared": ROOT / "shared" / "carebridge_shared",
    **{
        f"carebridge-{service}": ROOT / "services" / service / f"carebridge_{service}"
        for service in ("intake", "booking", "referral", "notification")
    },
}


def dev_imports(source: str) -> list[str]:
    """Imports of the dev package in `source`: import statements, and import_module("...")."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == DEV_PACKAGE]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == DEV_PACKAGE:
            found.append(str(node.module))
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.split(".")[0] == DEV_PACKAGE
        ):
            found.append(node.args[0].value)
    return found


def test_the_import_check_finds_every_form_of_import() -> None:
    source = (
        "import carebridge_devstack.signer\n"
        "from carebridge_devstack.testing import bearer\n"
        "import importlib\nimportlib.import_module('carebridge_devstack.signer')\n"
        "from carebridge_shared import auth\n"
        '"""python -m carebridge_devstack token: prose is not an import"""\n'
    )
    assert dev_imports(source) == [
        "carebridge_devstack.signer",
        "carebridge_devstack.testing",
        "carebridge_devstack.signer",
    ]


@pytest.fixture(scope="module")
def shared_wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    uv = shutil.which("uv")
    assert uv is not None, "uv builds the wheel: run make install"
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [uv, "build", "--wheel", "--package", "carebridge-shared", "--out-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = out.glob("carebridge_shared-*.whl")
    return zipfile.ZipFile(wheel)


def test_the_shared_wheel_has_no_dev_signer_and_no_test_helpers(
    shared_wheel: zipfile.ZipFile,
) -> None:
    names = shared_wheel.namelist()
    modules = {Path(n).stem for n in names if n.startswith("carebridge_shared/")}
    assert "auth" in modules and "provisioning" in modules, "the wheel was read"
    assert modules.isdisjoint(DEV_ONLY_MODULES), sorted(modules & set(DEV_ONLY_MODULES))
    for name in names:
        data = shared_wheel.read(name)
        assert b"PRIVATE KEY-----" not in data, f"{name} holds a private key"
        if name.endswith(".py"):
            assert dev_imports(data.decode()) == [], name
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requirements = [
        line for line in shared_wheel.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]  # fmt: skip
    assert requirements and not any(DEV_DISTRIBUTION in line for line in requirements)


@pytest.mark.parametrize("distribution", sorted(SHIPPED_PACKAGES))
def test_no_shipped_package_depends_on_or_imports_the_dev_package(distribution: str) -> None:
    package = SHIPPED_PACKAGES[distribution]
    project = tomllib.loads((package.parent / "pyproject.toml").read_text())["project"]
    assert project["name"] == distribution
    assert not any(d.startswith(DEV_DISTRIBUTION) for d in project.get("dependencies", []))
    sources = sorted(package.rglob("*.py"))
    assert sources, package
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in sources
        if (found := dev_imports(path.read_text()))
    }
    assert offenders == {}, f"shipped code imports the dev package: {offenders}"
