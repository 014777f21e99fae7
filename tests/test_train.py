"""End to end: composed configs, fast_dev_run for every view, a real -m sweep, train then eval."""

import json
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from aidetect.train import train
from conftest import ROOT, SHARED_DATA, compose_train, run_script

VIEWS = ["none", "inverted", "saturated", "inverted_saturated"]


def common(tmp_path, archive):
    return [f"data.archive={archive}", f"data.data_dir={tmp_path / 'data'}", "data.batch_size=16",
            "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]


def test_configs_compose():
    cfg = compose_train(["experiment=cifake_seed"])
    assert cfg.model.arch == "seed_cifake_cnn" and cfg.data.batch_size == 32
    assert cfg.trainer.max_epochs == 5 and cfg.aug.saturation_factor == 500
    for name in ("data_dir", "batch_size", "num_workers"):
        assert name in cfg.data
    assert "seed" in cfg and "ckpt_path" in cfg
    flux = compose_train(["experiment=flux_seed"])
    assert flux.model.arch == "seed_flux_cnn" and flux.data.batch_size == 16 and list(flux.data.image_size) == [720, 1280]
    sweep = compose_train(["experiment=saturation_sweep", "aug.spec=inverted_saturated@64"])
    assert (sweep.aug.name, sweep.aug.saturation_factor) == ("inverted_saturated", 64.0)


@pytest.mark.parametrize("aug", VIEWS)
def test_fast_dev_run_every_view(tmp_path, kaggle_dir, aug):
    cfg = compose_train(common(tmp_path, kaggle_dir) + [f"aug={aug}", "debug=fdr", f"output_dir={tmp_path / 'run'}"])
    metrics = train(cfg)
    assert metrics["view"]["name"] == aug
    assert 0 <= metrics["test"]["acc"] <= 1
    assert json.loads((tmp_path / "run/metrics.json").read_text())["view"]["name"] == aug


def test_bad_view_settings_fail_at_startup(tmp_path, kaggle_dir):
    r = run_script("train.py", *common(tmp_path, kaggle_dir), "aug=saturated", "aug.saturation_factor=-3",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode != 0 and "aug.saturation_factor must be >= 0" in r.stderr
    assert not (tmp_path / "data").exists()  # failed before touching data


def test_train_writes_run_dir_then_eval_uses_checkpoint_view(tmp_path, kaggle_zip):
    run = tmp_path / "run"
    r = run_script("train.py", *common(tmp_path, kaggle_zip), "aug=inverted_saturated", "aug.saturation_factor=7",
                   "trainer.max_epochs=2", f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    assert len(m["val_acc_per_epoch"]) == 2 and len(m["seconds_per_epoch"]) == 2
    assert m["params"] == 634_305 and m["data"]["train"] == 64 and m["seed"] == 42
    assert m["epochs"][0]["train_images"] == 64 and m["epochs"][0]["val_images"] == 16
    assert set(m["test"]) >= {"acc", "auroc", "f1", "precision", "recall", "loss"}
    ckpts = {p.name for p in (run / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and len(ckpts) == 2 and not any("tmp" in c for c in ckpts)
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=False)["epoch"] == 1  # the final epoch
    assert yaml.safe_load((run / ".hydra/config.yaml").read_text())["aug"]["saturation_factor"] == 7
    ck = torch.load(run / "checkpoints/last.ckpt", weights_only=False)
    assert ck["hyper_parameters"]["view"] == "inverted_saturated" and ck["run_config"]["seed"] == 42
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))

    ev = tmp_path / "eval"
    r = run_script("eval.py", f"ckpt_path={run / 'checkpoints/last.ckpt'}", *common(tmp_path, kaggle_zip),
                   f"hydra.run.dir={ev}")
    assert r.returncode == 0, r.stderr[-3000:]
    e = json.loads((ev / "metrics.json").read_text())
    assert e["view"] == {"name": "inverted_saturated", "saturation_factor": 7.0}
    assert e["data"]["test"] == 24


def test_tensorboard_has_scalars_view_grid_and_hparams(tmp_path, kaggle_dir):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    cfg = compose_train(common(tmp_path, kaggle_dir) + ["aug=inverted_saturated", "trainer.max_epochs=1",
                                                        f"output_dir={tmp_path / 'run'}", "trainer.log_every_n_steps=1"])
    train(cfg)
    tags = set()  # (tag, plugin)
    for f in (tmp_path / "run/tensorboard").glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(f)).Load():
            tags |= {(v.tag, v.metadata.plugin_data.plugin_name or ("images" if v.HasField("image") else "?"))
                     for v in event.summary.value}
    scalars = {t for t, p in tags if p == "scalars"}
    assert {"train/loss_step", "val/acc", "val/auroc", "test/acc"} <= scalars
    assert ("val/view_inverted_saturated", "images") in tags
    # HParams tab: the run's settings with its final test metrics
    assert ("_hparams_/session_start_info", "hparams") in tags and "hparams/test_acc" in scalars


def test_multirun_sweep_over_two_factors(tmp_path, kaggle_zip):
    sweep = tmp_path / "sweep"
    r = run_script("train.py", "-m", *common(tmp_path, kaggle_zip), "aug=saturated",
                   "aug.saturation_factor=2,8", "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stderr[-3000:]
    factors = sorted(json.loads((sweep / str(i) / "metrics.json").read_text())["view"]["saturation_factor"]
                     for i in range(2))
    assert factors == [2, 8]


@pytest.mark.skipif(not (SHARED_DATA / "cifake.zip").exists(), reason="needs ../shared/data/cifake.zip")
def test_real_cifake_slice(tmp_path):
    src = tmp_path / "slice"
    with zipfile.ZipFile(SHARED_DATA / "cifake.zip") as zf:
        names = [n for n in zf.namelist() if n.endswith(".jpg")]
        for folder in ("train/REAL/", "train/FAKE/", "test/REAL/", "test/FAKE/"):
            for n in [n for n in names if n.startswith(folder)][:600 if folder.startswith("train") else 150]:
                zf.extract(n, src)
    cfg = compose_train(common(tmp_path, src) + ["aug=none", "trainer.max_epochs=4", f"output_dir={tmp_path / 'run'}"])
    m = train(cfg)
    assert m["data"]["raw_train"] == 1200 and m["data"]["raw_test"] == 300
    assert m["test"]["acc"] > 0.6  # real signal, even from 960 training images


def test_interrupted_run_resumes_from_last_checkpoint(tmp_path, kaggle_dir):
    first = compose_train(common(tmp_path, kaggle_dir) + ["trainer.max_epochs=1", f"output_dir={tmp_path / 'a'}"])
    train(first)
    last = tmp_path / "a/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 0
    resumed = compose_train(common(tmp_path, kaggle_dir) + ["trainer.max_epochs=3", f"ckpt_path={last}",
                                                            f"output_dir={tmp_path / 'b'}"])
    m = train(resumed)
    assert [e["epoch"] for e in m["epochs"]] == [2, 3]  # epoch 1 is not trained again
    assert torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=False)["epoch"] == 2


def test_slurm_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.gpus_per_node == 1
