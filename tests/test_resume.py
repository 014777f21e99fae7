"""Interrupted training resumes exactly: SIGKILL after epoch 2 of 4 (a fault-injection point,
not a timer), resume (from last.ckpt, or by re-running the same command with skip_done=true), and the final weights and per-epoch metrics equal an
uninterrupted run's. A kill in the middle of a checkpoint save leaves the previous one loadable."""

import json
import os

import pytest
import torch

from aidetect.module import load_detector
from aidetect.train import checkpoint_sha, config_sha, job_sha, resumable
from conftest import compose_train, run_script

pytestmark = pytest.mark.slow  # every test trains, kills and resumes real runs


def args(tmp_path, kaggle_dir, out, *extra):
    return ["data.archive=" + str(kaggle_dir), f"data.data_dir={tmp_path / 'data'}", "data.batch_size=16",
            "trainer.enable_progress_bar=false", "trainer.max_epochs=4", "augment=standard", "callbacks=ema",
            "callbacks.ema.update_starting_at_step=2", "logger=none", "seed=3", f"hydra.run.dir={tmp_path / out}",
            *extra]


def composed(tmp_path, kaggle_dir, out, *extra):
    """The config that `run(tmp_path, kaggle_dir, out, *extra)` trains, composed without Hydra's runtime."""
    return compose_train([a for a in args(tmp_path, kaggle_dir, out, *extra) if not a.startswith("hydra.")]
                         + [f"output_dir={tmp_path / out}"])


def run(tmp_path, kaggle_dir, out, *extra, fault=None):
    env = dict(os.environ, AIDETECT_FAULT=fault) if fault else None
    if env is None:
        return run_script("train.py", *args(tmp_path, kaggle_dir, out, *extra))
    import subprocess
    import sys

    from conftest import ROOT
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args(tmp_path, kaggle_dir, out, *extra)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def test_sigkill_after_epoch_2_then_resume_equals_an_uninterrupted_run(tmp_path, kaggle_dir):
    full = run(tmp_path, kaggle_dir, "full")
    assert full.returncode == 0, full.stderr[-2000:]
    killed = run(tmp_path, kaggle_dir, "killed", fault="after_last_checkpoint@2")
    assert killed.returncode == -9  # SIGKILL: no cleanup ran
    last = tmp_path / "killed/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1 and not (tmp_path / "killed/metrics.json").exists()
    # another setting's last.ckpt is never picked up by skip_done; this job's is
    assert resumable(tmp_path / "killed", "0" * 16) is None
    # the same command again, as a stopped sweep is re-run: skip_done finds the job's own last.ckpt
    resumed = run(tmp_path, kaggle_dir, "killed", "skip_done=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming this job from" in resumed.stderr + resumed.stdout

    a = torch.load(tmp_path / "full/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "killed/checkpoints/last.ckpt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for k, v in a["state_dict"].items():  # the (EMA-averaged) weights, bit for bit
        assert torch.equal(v, b["state_dict"][k]), k
    ma = json.loads((tmp_path / "full/metrics.json").read_text())
    mb = json.loads((tmp_path / "killed/metrics.json").read_text())
    assert [e["epoch"] for e in mb["epochs"]] == [1, 2, 3, 4]  # the whole history, not the resumed part
    assert mb["val_acc_per_epoch"] == ma["val_acc_per_epoch"]
    assert mb["test"]["acc"] == ma["test"]["acc"]
    # one summary line per epoch, with that epoch's own train loss (not n/a, not the previous one's)
    lines = [l for l in (full.stderr + full.stdout).splitlines() if "epoch " in l and "train/loss" in l]
    assert len(lines) == 4 and not any("train/loss n/a" in l for l in lines), lines

    # Killed after the last epoch's checkpoint, while the job's files are written: metrics.json is the
    # last of them (skip_done takes a job with it as complete), so the job is not done yet...
    (tmp_path / "full/metrics.json").unlink()
    (tmp_path / "full/skipped.csv").unlink()
    cut = run(tmp_path, kaggle_dir, "full", "skip_done=true", fault="before_rename:skipped.csv")
    assert cut.returncode == -9 and not (tmp_path / "full/metrics.json").exists()
    # ...and skip_done resumes a fit with nothing left to train; the report still lists every epoch.
    again = run(tmp_path, kaggle_dir, "full", "skip_done=true")
    assert again.returncode == 0, again.stderr[-2000:]
    mc = json.loads((tmp_path / "full/metrics.json").read_text())
    assert [e["epoch"] for e in mc["epochs"]] == [1, 2, 3, 4] and mc["test"]["acc"] == ma["test"]["acc"]
    assert (tmp_path / "full/skipped.csv").is_file()

    # A job's identity does not include its folder: the same settings in two folders hash the same,
    # so a project that moved still finds its results.
    assert ma["config_sha"] == mb["config_sha"] == config_sha(composed(tmp_path, kaggle_dir, "full"))
    # A metrics.json written before that (its hash has the absolute folder in it) still counts as done.
    legacy = config_sha(composed(tmp_path, kaggle_dir, "full"), legacy=True)
    assert legacy != mc["config_sha"]
    (tmp_path / "full/metrics.json").write_text(json.dumps(dict(mc, config_sha=legacy)))
    skipped = run(tmp_path, kaggle_dir, "full", "skip_done=true")
    assert "holds this job's result" in skipped.stderr + skipped.stdout, skipped.stderr[-2000:]


def test_a_kill_during_a_checkpoint_save_leaves_the_previous_one_loadable(tmp_path, kaggle_dir):
    r = run(tmp_path, kaggle_dir, "cut", fault="before_rename:last.ckpt@2")
    assert r.returncode == -9
    folder = tmp_path / "cut/checkpoints"
    assert torch.load(folder / "last.ckpt", weights_only=True)["epoch"] == 0  # epoch 1's, whole
    load_detector(folder / "last.ckpt")
    assert [p.name for p in folder.iterdir() if ".tmp-" in p.name]  # the cut write stayed a temp file
    resumed = run(tmp_path, kaggle_dir, "resumed", f"ckpt_path={folder / 'last.ckpt'}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # Resumed by hand from this setting's own checkpoint: the same job as a fresh run, so re-running
    # the sweep's command (no ckpt_path) with skip_done finds the result; another seed's checkpoint
    # would make it another job.
    own = composed(tmp_path, kaggle_dir, "resumed", f"ckpt_path={folder / 'last.ckpt'}")
    other = composed(tmp_path, kaggle_dir, "resumed", f"ckpt_path={folder / 'last.ckpt'}", "seed=4")
    fresh = config_sha(own, fresh=True)
    assert checkpoint_sha(folder / "last.ckpt") == fresh == job_sha(own) != config_sha(own)
    assert job_sha(other) == config_sha(other) != config_sha(other, fresh=True)
    assert json.loads((tmp_path / "resumed/metrics.json").read_text())["config_sha"] == fresh
    again = run(tmp_path, kaggle_dir, "resumed", "skip_done=true")
    assert "holds this job's result" in again.stderr + again.stdout, again.stderr[-2000:]


def test_test_ckpt_last_resumed_after_its_final_epoch_tests_the_same_weights(tmp_path, kaggle_dir):
    """A job killed after its final checkpoint (before metrics.json) and re-run with skip_done skips
    the fit loop: with test_ckpt=last it must still test the file's averaged weights, as the
    uninterrupted job did, not whatever the restored module holds."""
    extra = ("test_ckpt=last", "trainer.max_epochs=2")
    first = run(tmp_path, kaggle_dir, "job", *extra)
    assert first.returncode == 0, first.stderr[-2000:]
    m1 = json.loads((tmp_path / "job/metrics.json").read_text())
    assert m1["tested_checkpoint"] == "final weights"
    (tmp_path / "job/metrics.json").unlink()  # as if killed after the last checkpoint
    again = run(tmp_path, kaggle_dir, "job", *extra, "skip_done=true")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming this job from" in again.stderr + again.stdout
    m2 = json.loads((tmp_path / "job/metrics.json").read_text())
    assert m2["tested_checkpoint"] == "final weights"
    assert m2["test"]["loss"] == pytest.approx(m1["test"]["loss"], abs=1e-6)
    assert m2["test"]["acc"] == m1["test"]["acc"] and m2["test"]["auroc"] == pytest.approx(m1["test"]["auroc"], abs=1e-6)
