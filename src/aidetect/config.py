"""Config-level helpers with no torch import (keeps `--help` fast): errors, view specs, provenance.

``aug=spec aug.spec=saturated@8`` names view and factor in one string, so a single sweep
can mix the factor-free baseline with factor sweeps (see experiment/saturation_sweep.yaml).
"""

import contextlib
import os
import sys



class ConfigError(ValueError):
    """A setting the user can fix: train.py/eval.py print the message alone (no traceback,
    unless HYDRA_FULL_ERROR=1) and exit with code 2."""


def number(setting: str, value, kind=float, low=None):
    """``value`` as a ``kind`` (int or float) for the setting named ``setting``, or a ConfigError that
    names the setting: not a number, not whole (2.5 for an int), or below ``low`` (NaN is refused too)."""
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{setting}={value!r} is not a number") from None
    if kind is int and out != value and not isinstance(value, str):
        raise ConfigError(f"{setting}={value!r} must be a whole number")
    if low is not None and not out >= low:
        raise ConfigError(f"{setting} must be >= {low:g}, got {out}")
    return out


def parse_view_spec(spec: str) -> dict:
    """'inverted_saturated@500' -> {"name": "inverted_saturated", "saturation_factor": 500.0}."""
    name, _, factor = str(spec).partition("@")
    if not factor:
        return {"name": name.strip()}
    try:
        return {"name": name.strip(), "saturation_factor": float(factor)}
    except ValueError:
        raise ConfigError(f"aug.spec={spec!r}: expected VIEW or VIEW@FACTOR, e.g. inverted_saturated@500") from None


def view_spec(aug: dict) -> dict:
    """The view's settings from the composed ``aug`` group: its keys, or ``aug.spec``."""
    aug = dict(aug or {"name": "none"})
    return parse_view_spec(aug["spec"]) if "spec" in aug else aug


@contextlib.contextmanager
def user_errors():
    """Settings the user can fix end the run with their message and exit code 2; the
    traceback is shown only with HYDRA_FULL_ERROR=1 (as Hydra does for its own errors)."""
    try:
        yield
    except ConfigError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def configs_dir():
    """The Hydra configs, found through the package: ``aidetect/configs`` is a link to the top-level
    configs/ in a checkout (editable install) and a copy of it in a wheel (package data)."""
    from pathlib import Path

    return Path(__file__).resolve().parent / "configs"


def compose(config_name: str, overrides=()):
    """The project's Hydra config (configs/), composed outside a Hydra app, as the
    command line would: ``compose("train", ["aug=inverted_saturated", "data=faces"])``."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException

    configs = configs_dir()
    if not (configs / f"{config_name}.yaml").is_file():
        raise ConfigError(f"no {config_name}.yaml in {configs}: this copy of aidetect lacks its configs (reinstall it)")
    try:
        with initialize_config_dir(str(configs), version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides))
    except HydraException as e:
        raise ConfigError(f"{' '.join(overrides)}: {e}") from None


_FIRST: dict | None = None


def provenance() -> dict:
    """Where a run or checkpoint came from: code version and the packages that shape results.

    The code is read from git once per process, at the first call: an in-process Hydra sweep runs
    the code it imported when it started, so a commit made while it runs must not be credited to its
    later jobs. (Configs are composed per job and saved whole with each run, so they need no such care.)
    """
    global _FIRST
    if _FIRST is None:
        _FIRST = read_provenance()
    return dict(_FIRST, packages=dict(_FIRST["packages"]))


def read_provenance() -> dict:
    """The code version and packages as git and the installed metadata say now (uncached)."""
    import platform
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("ai-image-detector", "torch", "torchvision", "lightning", "torchmetrics", "hydra-core", "pillow"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    here = os.path.dirname(os.path.abspath(__file__))

    def git(*args):
        try:
            r = subprocess.run(["git", "-C", here, *args], capture_output=True, text=True, timeout=5)
            return r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    # dirty: code or configs differ from the commit, new files included (an untracked experiment
    # config decides a run as much as an edited one); scratch files elsewhere do not count
    dirty = None if commit is None else bool(git("status", "--porcelain", "--untracked-files=all", "--",
                                                 ":/configs", ":/src", ":/train.py", ":/eval.py"))
    return {"git_commit": commit, "git_dirty": dirty, "packages": packages, "python": platform.python_version()}
