"""The package as a user gets it: installed non-editable into a fresh virtual environment (which
borrows this machine's torch and friends, not this checkout), it finds its configs, detectors and
settings files through the package and runs `aidetect --help` and one fast_dev_run."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, make_image

pytestmark = pytest.mark.slow  # builds a wheel and trains one batch in another environment


def checkout_copy(dest):
    """The working tree's files as git sees them (tracked and new, not ignored), links kept."""
    import shutil

    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if name.startswith(("docs/", "outputs/", "benchmarks/")) or not (src.exists() or src.is_symlink()):
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            (dest / name).symlink_to(src.readlink())
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest


def test_a_non_editable_install_runs_help_and_a_fast_dev_run(tmp_path):
    src = checkout_copy(tmp_path / "src")
    venv = tmp_path / "venv"
    # --without-pip: the machine's own pip and setuptools build the wheel (a venv's bundled ones are older)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    py, aidetect = venv / "bin/python", venv / "bin/aidetect"
    # ...and the packages of the environment running the tests (torch, a setuptools that builds wheels), after
    # its own: a venv made from a venv would otherwise see only the base interpreter's site-packages
    import sysconfig

    own = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    (Path(own) / "_borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]

    work = tmp_path / "elsewhere"  # not the checkout: nothing may be found through the current folder
    rng = np.random.default_rng(0)
    for cls, label in (("REAL", 0), ("FAKE", 1)):
        for i in range(10):
            make_image(work / "images" / cls / f"{i}.png", label, rng)
    r = subprocess.run([str(aidetect), "--help"], cwd=work, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "predict" in r.stdout and "flux" in r.stdout, r.stderr
    script = f"""
import aidetect
from aidetect.config import compose, configs_dir
from aidetect.train import train
assert str(aidetect.__file__).startswith({str(venv)!r}), aidetect.__file__
assert str(configs_dir()).startswith({str(venv)!r}), configs_dir()
cfg = compose("train", ["data=folder", "data.root={work / 'images'}", "data.data_dir={work / 'data'}",
                        "data.image_size=[32,32]", "model=seed_cifake_cnn", "debug=fdr", "logger=none",
                        "trainer.enable_progress_bar=false", "output_dir={work / 'run'}"])
m = train(cfg)
print("ACC", m["test"]["acc"])
"""
    r = subprocess.run([str(py), "-c", script], cwd=work, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ACC" in r.stdout and (work / "run/metrics.json").is_file()
