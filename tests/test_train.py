"""End to end: composed configs, fast_dev_run for every view, a real -m sweep, train then eval."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from aidetect.augment import build_augment
from aidetect.config import view_spec
from aidetect.train import train
from aidetect.views import VIEWS
from conftest import ROOT, compose_train, make_kaggle_layout, run_script
from test_modern import make_manifest_pool


def common(tmp_path, archive):
    return [f"data.archive={archive}", f"data.data_dir={tmp_path / 'data'}", "data.batch_size=16",
            "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]


def test_configs_compose():
    cfg = compose_train(["experiment=cifake_seed"])
    assert cfg.model.net._target_ == "aidetect.models.SeedCifakeCNN" and cfg.data.batch_size == 32
    assert cfg.trainer.max_epochs == 5 and cfg.data.view_defaults.saturation_factor == 500
    for name in ("data_dir", "batch_size", "num_workers"):
        assert name in cfg.data
    assert "seed" in cfg and "ckpt_path" in cfg
    flux = compose_train(["experiment=flux_seed"])
    assert flux.model.net._target_ == "aidetect.models.SeedFluxCNN" and flux.data.batch_size == 16
    assert list(flux.data.image_size) == [720, 1280]
    sweep = compose_train(["experiment=saturation_sweep", "aug.spec=inverted_saturated@64"])
    assert view_spec(sweep.aug) == {"name": "inverted_saturated", "saturation_factor": 64.0}


def test_each_dataset_brings_its_defaults():
    """The design card's command gives the original FLUX setup; the command line still wins."""
    flux = compose_train(["data=flux", "aug=inverted_saturated"])
    assert flux.model.net._target_ == "aidetect.models.SeedFluxCNN"
    assert flux.data.batch_size == 16 and flux.aug.saturation_factor == 8
    assert compose_train(["data=flux", "aug=inverted_saturated", "aug.saturation_factor=500"]).aug.saturation_factor == 500
    assert compose_train(["aug=inverted_saturated", "data=flux"]).aug.saturation_factor == 8  # order-free
    cifake = compose_train(["data=cifake", "aug=inverted_saturated"])
    assert cifake.model.net._target_ == "aidetect.models.SeedCifakeCNN"
    assert cifake.data.batch_size == 32 and cifake.aug.saturation_factor == 500
    mine = compose_train(["data=flux", "model=seed_cifake_cnn", "data.batch_size=4"])
    assert mine.model.net._target_ == "aidetect.models.SeedCifakeCNN" and mine.data.batch_size == 4


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs/augment").glob("*.yaml")))
def test_every_augment_config_builds(name):
    """Each augment= option composes into settings the Augment module accepts, and says what its name says."""
    cfg = compose_train([f"augment={name}"]).augment
    params = build_augment(OmegaConf.to_container(cfg)).params()
    expected = {"none": (0.0, 0, 0.0, 0.0), "flip": (0.5, 0, 0.0, 0.0), "crop": (0.5, 4, 0.0, 0.0),
                "standard": (0.5, 4, 0.3, 0.0), "cutmix": (0.5, 4, 0.0, 0.5), "format_neutral": (0.0, 0, 0.0, 0.0),
                "safe": (0.0, 0, 0.0, 0.0)}
    assert (params["hflip"], params["crop_padding"], params["jpeg"], params.get("cutmix", 0.0)) == expected[name]
    # format_neutral re-encodes (and data.hflip flips) in data=modern's loader, not in the batch transform
    assert (params.get("format_neutral") or {}).get("p") == (1.0 if name in ("format_neutral", "safe") else None)
    assert (params.get("rot90"), params.get("jitter"), params.get("mask")) == (
        (0.75, 1.0, 0.5) if name == "safe" else (None, None, None))


# One view in the fast tier (`-m "not slow"`), every view in the full suite.
@pytest.mark.parametrize("aug", [v if v == "none" else pytest.param(v, marks=pytest.mark.slow) for v in sorted(VIEWS)])
def test_fast_dev_run_every_view(tmp_path, kaggle_dir, aug):
    cfg = compose_train(common(tmp_path, kaggle_dir) + [f"aug={aug}", "debug=fdr", f"output_dir={tmp_path / 'run'}"])
    metrics = train(cfg)
    assert metrics["view"]["name"] == aug
    assert 0 <= metrics["test"]["acc"] <= 1
    assert json.loads((tmp_path / "run/metrics.json").read_text())["view"]["name"] == aug


@pytest.mark.parametrize("experiment", [e if e == "cifake_seed" else pytest.param(e, marks=pytest.mark.slow)
                                        for e in sorted(p.stem for p in (ROOT / "configs/experiment").glob("*.yaml"))])
def test_fast_dev_run_every_experiment(tmp_path, experiment):
    """Each experiment config composes and runs one batch on generated data of its kind."""
    cfg = compose_train([f"experiment={experiment}"])
    if cfg.data._target_.endswith("CIFAKEDataModule"):
        data = [f"data.archive={make_kaggle_layout(tmp_path / 'src', 40, 4)}"]
    elif cfg.data._target_.endswith("ModernDataModule"):  # a generated manifest pool (flux and sdxl FAKE, two REAL sources)
        data = [f"data.root={make_manifest_pool(tmp_path / 'pool', n_prompts=30)}", "data.holdout=none", "data.num_workers=0"]
        data += ["data.image_size=[136,136]"] if cfg.data.resize != "random_crop" else ["data.crop_size=64"]
    else:  # a folder dataset: images just above the model's minimum input size
        make_kaggle_layout(tmp_path / "src", 10, 4, size=(140, 150))
        data = [f"data.root={tmp_path / 'src'}", "data.archive=null", "data.image_size=[136,136]"]
    cfg = compose_train([f"experiment={experiment}", *data, f"data.data_dir={tmp_path / 'data'}", "debug=fdr",
                         "trainer.enable_progress_bar=false", f"output_dir={tmp_path / 'run'}"])
    m = train(cfg)
    assert 0 <= m["test"]["acc"] <= 1 and m["model"]["net"]["_target_"] == cfg.model.net._target_


def run_fails(tmp_path, *args) -> str:
    r = run_script("train.py", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode != 0, r.stdout[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return r.stderr


# Each case starts a train.py process: the first is in the fast tier, all of them in the full suite.
@pytest.mark.parametrize("args, expected", [
    (["aug=saturated", "aug.saturation_factor=-3"], "aug.saturation_factor must be >= 0"),
    pytest.param(["aug=spec", "aug.spec=inverse"], "valid names: none, inverted", marks=pytest.mark.slow),
    pytest.param(["+aug.saturation_factor=8"], "view 'none' takes no setting aug.saturation_factor", marks=pytest.mark.slow),
    pytest.param(["model=seed_flux_cnn", "data.image_size=[128,128]"], "needs at least 133x133", marks=pytest.mark.slow),
    pytest.param(["data.batch_size=0"], "data.batch_size=0", marks=pytest.mark.slow),
    pytest.param(["data.resize=squash"], "valid: resize, center_crop", marks=pytest.mark.slow),
    pytest.param(["augment=flip", "augment.hflip=2"], "augment.hflip is a probability", marks=pytest.mark.slow),
    pytest.param(["test_ckpt=first"], "valid: best, last", marks=pytest.mark.slow),
    pytest.param(["model.optimizer.lr=abc"], "model.optimizer", marks=pytest.mark.slow),
    pytest.param(["+model.net.widht=3"], "unexpected keyword argument 'widht'", marks=pytest.mark.slow),
    pytest.param(["model=seed_flux_cnn"], "too small for SeedFluxCNN", marks=pytest.mark.slow),  # CIFAKE's native 32x32, read from headers
])
def test_bad_settings_are_one_message_before_any_data_work(tmp_path, kaggle_dir, args, expected):
    err = run_fails(tmp_path, *common(tmp_path, kaggle_dir), *args)
    assert expected in err
    assert not list((tmp_path / "data").rglob("*.pt"))  # failed before decoding anything


@pytest.mark.slow
def test_missing_data_folders_say_how_to_get_them(tmp_path):
    err = run_fails(tmp_path, "data=flux_built", f"data.root={tmp_path / 'nowhere'}")
    assert "data.root=" in err and "aidetect flux build" in err
    err = run_fails(tmp_path, "data=flux", f"data.root={tmp_path / 'nowhere'}")
    assert "data.root=" in err and "MANIFEST.csv" in err and "aidetect data get" in err
    err = run_fails(tmp_path, "data=folder", f"data.root={tmp_path / 'nowhere'}")
    assert "is not a folder" in err and "REAL/ and FAKE/" in err
    err = run_fails(tmp_path, "aug=inverse")  # Hydra's own message for a bad group option
    assert "aug/inverse" in err and "Available options" in err


@pytest.mark.slow
def test_too_small_native_images_are_refused_with_the_fix(tmp_path):
    src = make_kaggle_layout(tmp_path / "small", 10, 2, size=(32, 32))
    err = run_fails(tmp_path, "data=folder", f"data.root={src}", f"data.data_dir={tmp_path / 'd'}")
    assert "data.image_size=[133,133]" in err


@pytest.mark.slow
def test_train_writes_run_dir_then_eval_uses_checkpoint_view(tmp_path, kaggle_zip):
    run = tmp_path / "run"
    r = run_script("train.py", *common(tmp_path, kaggle_zip), "aug=inverted_saturated", "aug.saturation_factor=7",
                   "trainer.max_epochs=2", f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "epoch 2/2:" in r.stderr + r.stdout  # one summary line per epoch, no progress bar needed
    m = json.loads((run / "metrics.json").read_text())
    assert len(m["val_acc_per_epoch"]) == 2 and len(m["seconds_per_epoch"]) == 2
    assert m["params"] == 634_305 and m["data"]["train"] == 64 and m["seed"] == 42
    assert m["epochs"][0]["train_images"] == 64 and m["epochs"][0]["val_images"] == 16
    assert set(m["test"]) >= {"acc", "auroc", "f1", "precision", "recall", "loss"}
    assert m["view"] == {"name": "inverted_saturated", "saturation_factor": 7.0}
    assert m["provenance"]["packages"]["torch"] and m["schema_version"] == 1
    assert (run / "skipped.csv").read_text().splitlines() == ["path,reason"]
    ckpts = {p.name for p in (run / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and len(ckpts) == 2 and not any("tmp" in c for c in ckpts)
    ck = torch.load(run / "checkpoints/last.ckpt", weights_only=True)  # plain containers only
    assert ck["epoch"] == 1  # the final epoch
    hp = ck["hyper_parameters"]
    assert hp["view"] == {"name": "inverted_saturated", "saturation_factor": 7.0}
    assert hp["net"] == {"_target_": "aidetect.models.SeedCifakeCNN"} and hp["input_size"] == [32, 32]
    assert ck["aidetect"]["run_config"]["seed"] == 42 and ck["aidetect"]["provenance"]["git_commit"]
    assert yaml.safe_load((run / ".hydra/config.yaml").read_text())["aug"]["saturation_factor"] == 7
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))

    ev = tmp_path / "eval"
    r = run_script("eval.py", f"ckpt_path={run / 'checkpoints/last.ckpt'}", *common(tmp_path, kaggle_zip),
                   f"hydra.run.dir={ev}")
    assert r.returncode == 0, r.stderr[-3000:]
    e = json.loads((ev / "metrics.json").read_text())
    assert e["view"] == {"name": "inverted_saturated", "saturation_factor": 7.0}
    assert e["data"]["test"] == 24 and e["seed"] == 42
    assert len(list((tmp_path / "data/cifake/cache").glob("*.pt"))) == 2  # eval reused training's cache


def tensorboard_events(folder: Path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    for f in folder.glob("events.out.tfevents.*"):
        yield from EventFileLoader(str(f)).Load()


@pytest.mark.slow
def test_tensorboard_has_scalars_view_grid_and_the_runs_settings(tmp_path, kaggle_dir):
    from tensorboard.plugins.hparams import plugin_data_pb2
    cfg = compose_train(common(tmp_path, kaggle_dir) + ["aug=inverted_saturated", "trainer.max_epochs=1",
                                                        f"output_dir={tmp_path / 'run'}", "trainer.log_every_n_steps=1"])
    train(cfg)
    tags, hparams = set(), {}
    for event in tensorboard_events(tmp_path / "run/tensorboard"):
        for v in event.summary.value:
            tags.add((v.tag, v.metadata.plugin_data.plugin_name or ("images" if v.HasField("image") else "?")))
            if v.metadata.plugin_data.plugin_name == "hparams":
                data = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
                hparams.update({k: getattr(x, x.WhichOneof("kind")) for k, x in data.session_start_info.hparams.items()})
    scalars = {t for t, p in tags if p == "scalars"}
    assert {"train/loss_step", "val/acc", "val/auroc", "test/acc"} <= scalars
    assert ("val/view_grid", "images") in tags  # one tag for every view: runs share a card
    # HParams: only this run's settings (TensorBoard infers the columns across runs), no
    # per-run experiment description and no copies of the test metrics.
    assert ("_hparams_/session_start_info", "hparams") in tags
    assert ("_hparams_/experiment", "hparams") not in tags and not any(t.startswith("hparams/") for t, _ in tags)
    assert hparams["aug"] == "inverted_saturated" and hparams["aug.saturation_factor"] == 500
    assert hparams["seed"] == 42 and hparams["data"] == "cifake 32x32" and hparams["model"] == "SeedCifakeCNN"
    assert hparams["lr"] == 0.001 and hparams["optimizer"] == "Adam"


@pytest.mark.slow
def test_views_without_a_factor_log_none(tmp_path, kaggle_dir):
    cfg = compose_train(common(tmp_path, kaggle_dir) + ["aug=none", "debug=fdr", f"output_dir={tmp_path / 'run'}"])
    m = train(cfg)
    assert m["view"] == {"name": "none"}


@pytest.mark.slow
def test_multirun_sweep_over_two_factors(tmp_path, kaggle_zip):
    sweep = tmp_path / "sweep"
    r = run_script("train.py", "-m", *common(tmp_path, kaggle_zip), "aug=saturated",
                   "aug.saturation_factor=2,8", "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stderr[-3000:]
    factors = sorted(json.loads((sweep / str(i) / "metrics.json").read_text())["view"]["saturation_factor"]
                     for i in range(2))
    assert factors == [2, 8]
    assert "saturation_factor" in (sweep / "results.md").read_text()


@pytest.mark.slow
def test_augment_applies_to_training_batches_only(tmp_path, kaggle_dir):
    cfg = compose_train(common(tmp_path, kaggle_dir) + ["augment=standard", "trainer.max_epochs=1",
                                                        f"output_dir={tmp_path / 'run'}"])
    m = train(cfg)
    assert m["augment"] == {"hflip": 0.5, "crop_padding": 4, "jpeg": 0.3, "jpeg_quality": [60, 95]}
    from aidetect.module import load_detector
    det = load_detector(tmp_path / "run/checkpoints/last.ckpt")
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(det(x), det(x))  # eval mode: no augmentation, deterministic
    det.train()
    torch.manual_seed(0)
    assert not torch.equal(det.augment(x), x)


@pytest.mark.slow
def test_cutmix_runs_end_to_end_and_loads_back(tmp_path, kaggle_dir):
    cfg = compose_train(common(tmp_path, kaggle_dir) + ["augment=cutmix", "augment.cutmix=1.0", "trainer.max_epochs=1",
                                                        "logger=none", f"output_dir={tmp_path / 'run'}"])
    m = train(cfg)
    assert m["augment"]["cutmix"] == 1.0 and m["test"]["n"] > 0
    from aidetect.module import load_detector
    det = load_detector(tmp_path / "run/checkpoints/last.ckpt")  # rebuilt from the saved settings
    assert det.augment.cutmix == 1.0 and det.hparams.augment["cutmix"] == 1.0


@pytest.mark.slow
def test_optimizer_and_schedule_are_yaml_only(tmp_path, kaggle_dir):
    """A new optimizer or schedule needs no code: Hydra _partial_ specs in the model config."""
    cfg = compose_train(common(tmp_path, kaggle_dir) + [
        "model.optimizer._target_=torch.optim.AdamW", "+model.optimizer.weight_decay=0.05",
        "model.scheduler={_target_: torch.optim.lr_scheduler.CosineAnnealingLR, _partial_: true, T_max: 2}",
        "trainer.max_epochs=2", f"output_dir={tmp_path / 'run'}", "logger=none"])
    m = train(cfg)
    assert len(m["val_acc_per_epoch"]) == 2
    ck = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    assert ck["hyper_parameters"]["optimizer"]["_target_"] == "torch.optim.AdamW"
    assert ck["optimizer_states"][0]["param_groups"][0]["weight_decay"] == 0.05
    assert ck["lr_schedulers"][0]["last_epoch"] == 2


@pytest.mark.slow
def test_a_rerun_sweep_skips_finished_jobs(tmp_path, kaggle_zip):
    sweep = tmp_path / "sweep"
    args = ["-m", *common(tmp_path, kaggle_zip), "aug=saturated", "aug.saturation_factor=2,8", "trainer.max_epochs=1",
            "skip_done=true", "logger=none", f"hydra.sweep.dir={sweep}"]
    assert run_script("train.py", *args).returncode == 0
    (sweep / "1/metrics.json").unlink()  # job 1 "interrupted"
    stamp = (sweep / "0/metrics.json").stat().st_mtime_ns
    r = run_script("train.py", *args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (sweep / "0/metrics.json").stat().st_mtime_ns == stamp  # finished: not run again
    assert json.loads((sweep / "1/metrics.json").read_text())["view"]["saturation_factor"] == 8  # redone
    assert (sweep / "results.md").read_text().count("| saturated |") >= 2  # aggregated over both
    # The sweep changed: job 0 now means factor 4, so its old result must not be reused.
    r = run_script("train.py", *[a if a != "aug.saturation_factor=2,8" else "aug.saturation_factor=4,8" for a in args])
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((sweep / "0/metrics.json").read_text())["view"]["saturation_factor"] == 4


def _plain_checkpoint(ck: dict, path):
    torch.save({k: v for k, v in ck.items() if k not in ("current_model_state", "averaging_state")}, path)
    return path


@pytest.mark.slow
def test_ema_of_weights_is_what_the_checkpoint_holds(tmp_path, kaggle_dir):
    cfg = compose_train(common(tmp_path, kaggle_dir) + ["model=small_resnet", "model.net.width=8", "callbacks=ema",
                                                        "callbacks.ema.update_starting_at_step=1", "trainer.max_epochs=2",
                                                        "logger=none", f"output_dir={tmp_path / 'run'}"])
    m = train(cfg)
    # Tested are the weights the file gives a user (the average), the same that calibration scored;
    # Lightning's own ckpt_path= reload would have put the raw weights back for the test.
    assert m["test"]["acc"] == pytest.approx(m["test"]["acc_at_0.5"], abs=1e-6)
    ck = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    assert "current_model_state" in ck  # Lightning's EMAWeightAveraging: state_dict is the average
    w = "net.stem.0.weight"
    assert not torch.equal(ck["state_dict"][w], ck["current_model_state"][w])
    # eval.py weights=raw scores the trained weights kept beside the average
    from aidetect.config import ConfigError
    from aidetect.module import load_detector
    raw = load_detector(tmp_path / "run/checkpoints/last.ckpt", weights="raw").state_dict()
    avg = load_detector(tmp_path / "run/checkpoints/last.ckpt").state_dict()
    assert torch.equal(raw[w], ck["current_model_state"][w]) and torch.equal(avg[w], ck["state_dict"][w])
    with pytest.raises(ConfigError, match="weights=raw"):  # a checkpoint without EMA has no second set
        load_detector(_plain_checkpoint(ck, tmp_path / "plain.ckpt"), weights="raw")


@pytest.mark.slow
def test_ema_before_its_first_update_leaves_the_trained_weights(tmp_path, kaggle_dir, caplog):
    """Lightning's EMA swaps in its average, built from the initial weights, even before its first
    update: the epochs before it were validated as the untrained network, and a run too short to
    start it ended as one. aidetect.callbacks.EMA keeps the trained weights until it has averaged."""
    import math

    base = common(tmp_path, kaggle_dir) + ["model=small_resnet", "model.net.width=8", "trainer.max_epochs=2",
                                           "logger=none"]
    ref = train(compose_train(base + ["callbacks=default", f"output_dir={tmp_path / 'ref'}"]))
    per_epoch = math.ceil(ref["data"]["train"] / 16)
    late = train(compose_train(base + ["callbacks=ema", f"callbacks.ema.update_starting_at_step={per_epoch}",
                                       f"output_dir={tmp_path / 'late'}"]))
    val = lambda m, e: {k: v for k, v in m["epochs"][e].items() if k.startswith("val/")}  # noqa: E731
    assert val(late, 0) == val(ref, 0)  # epoch 1: the trained weights, as without EMA
    assert val(late, 1) != val(ref, 1)  # epoch 2: the average
    with caplog.at_level("WARNING"):
        never = train(compose_train(base + ["callbacks=ema", "callbacks.ema.update_starting_at_step=100000",
                                            f"output_dir={tmp_path / 'never'}"]))
    assert "no average" in caplog.text
    assert [val(never, e) for e in (0, 1)] == [val(ref, e) for e in (0, 1)] and never["test"] == ref["test"]
    a = torch.load(tmp_path / "ref/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "never/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # the trained network, not the initial one


@pytest.mark.slow
def test_epochs_without_validation_record_none_not_the_last_validation(tmp_path, kaggle_dir):
    m = train(compose_train(common(tmp_path, kaggle_dir) + [
        "model=small_resnet", "model.net.width=8", "trainer.max_epochs=3", "+trainer.check_val_every_n_epoch=2",
        "logger=none", f"output_dir={tmp_path / 'run'}"]))
    assert m["val_acc_per_epoch"][0] is None and m["val_acc_per_epoch"][2] is None
    assert m["val_acc_per_epoch"][1] is not None and m["epochs"][1]["val_images"] > 0
    assert not any(k.startswith("val/") for k in m["epochs"][2])


@pytest.mark.slow
def test_optuna_search_selects_on_validation_and_a_rerun_resumes_it(tmp_path, kaggle_dir):
    import os
    if os.environ.get("CI") != "true":
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "search"
    args = ["train.py", "-m", "hparams_search=small_resnet_optuna", f"data.archive={kaggle_dir}",
            f"data.data_dir={tmp_path / 'data'}", "data.fraction=1.0", "data.batch_size=16", "logger=none",
            "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}"]
    r = run_script(*args, "hydra.sweeper.n_trials=2")
    assert r.returncode == 0, r.stderr[-3000:]

    def params(n):
        return sorted(o for o in yaml.safe_load((sweep / str(n) / ".hydra/overrides.yaml").read_text())
                      if o.startswith("model."))

    def val(n):
        return json.loads((sweep / str(n) / "metrics.json").read_text())["val_acc_per_epoch"][-1]

    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"]
    assert best == pytest.approx(max(val(0), val(1)))  # validation, never test
    first, interrupted, interrupted_val = params(0), params(1), val(1)
    (sweep / "1/metrics.json").unlink()  # killed during its test: no result, its last.ckpt is there

    r = run_script(*args, "hydra.sweeper.n_trials=3")  # the same command, with one trial more
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(int(p.name) for p in sweep.iterdir() if p.name.isdigit()) == [0, 1, 2]
    assert params(0) == first and params(1) == interrupted  # the seeded sampler proposes them again
    assert "holds this job's result" in (sweep / "0/train.log").read_text()  # not trained again
    assert "resuming this job from" in (sweep / "1/train.log").read_text()  # from its last.ckpt
    assert val(1) == pytest.approx(interrupted_val)
    assert params(2) not in (first, interrupted)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"]
    assert best == pytest.approx(max(val(n) for n in (0, 1, 2)))  # finished trials count in the study

    r = run_script(*args, "hydra.sweeper.n_trials=3")  # nothing left to train
    assert r.returncode == 0 and not (sweep / "3").exists(), r.stderr[-3000:]
    assert yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"] == pytest.approx(best)


@pytest.mark.slow
def test_interrupted_run_resumes_from_last_checkpoint(tmp_path, kaggle_dir):
    first = compose_train(common(tmp_path, kaggle_dir) + ["trainer.max_epochs=1", f"output_dir={tmp_path / 'a'}"])
    train(first)
    last = tmp_path / "a/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 0
    resumed = compose_train(common(tmp_path, kaggle_dir) + ["trainer.max_epochs=3", f"ckpt_path={last}",
                                                            f"output_dir={tmp_path / 'b'}"])
    m = train(resumed)
    assert [e["epoch"] for e in m["epochs"]] == [1, 2, 3]  # epoch 1 not trained again, but in the history
    assert torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=False)["epoch"] == 2


def test_slurm_launcher_config_composes():
    import os
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401  (the dev extra installs it)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI installs .[dev], which includes hydra-submitit-launcher")
        pytest.skip("hydra-submitit-launcher is not installed (pip install -e '.[dev]')")
    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.gpus_per_node == 1


@pytest.mark.slow
def test_joblib_launcher_runs_a_sweep_in_parallel_processes_and_aggregates(tmp_path, kaggle_zip):
    sweep = tmp_path / "sweep"
    r = run_script("train.py", "-m", *common(tmp_path, kaggle_zip), "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                   "aug=none,grayscale", "trainer.max_epochs=1", "logger=none", f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Joblib" in r.stdout + r.stderr  # the launcher that ran it, not the basic one
    views = sorted(json.loads((sweep / str(i) / "metrics.json").read_text())["view"]["name"] for i in range(2))
    assert views == ["grayscale", "none"]
    results = (sweep / "results.md").read_text()
    assert "| none |" in results and "| grayscale |" in results


@pytest.mark.slow
def test_speed_settings_compile_and_threads_keep_the_job_and_its_checkpoint(tmp_path, kaggle_dir):
    """compile (here with the cheap `eager` backend: inductor takes minutes on 2 cores, so the real
    compiler is measured in benchmarks/epoch_speed.py, not here) and threads change how fast a job
    runs, not which job it is: same config hash, and a checkpoint that loads without torch.compile."""
    from aidetect.config import ConfigError
    from aidetect.module import load_detector
    from aidetect.train import config_sha

    before = torch.get_num_threads()
    fast = common(tmp_path, kaggle_dir) + ["trainer.max_epochs=1", "logger=none", f"output_dir={tmp_path / 'run'}"]
    cfg = compose_train(fast + ["threads=1", "compile={backend: eager}"])
    m = train(cfg)
    assert m["torch_threads"] == 1 and torch.get_num_threads() == before  # the job's own, then put back
    assert config_sha(cfg) == config_sha(compose_train(fast))
    ck = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    assert not any("_orig_mod" in k for k in ck["state_dict"])
    load_detector(tmp_path / "run/checkpoints/last.ckpt")
    for bad, hint in (("threads=0", "threads=0"), ("compile=fast", "compile='fast'")):
        with pytest.raises(ConfigError, match=hint):
            train(compose_train(fast + [bad]))


def test_provenance_counts_a_new_untracked_config_as_dirty():
    """A run from an experiment config that is not committed yet is not reproducible from its
    commit alone: git_dirty says so. Scratch files outside code and configs do not count."""
    from aidetect.config import read_provenance

    if read_provenance()["git_commit"] is None:
        pytest.skip("not a git checkout")
    if read_provenance()["git_dirty"]:
        pytest.skip("this checkout already has uncommitted code or configs")
    new = ROOT / "configs/experiment/_untracked_probe.yaml"
    try:
        new.write_text("# @package _global_\nseed: 7\n")
        assert read_provenance()["git_dirty"] is True
    finally:
        new.unlink()
    assert read_provenance()["git_dirty"] is False


def test_provenance_is_the_code_the_process_started_with(monkeypatch):
    """A long in-process sweep runs the code it imported; a commit made meanwhile must not be
    recorded by its later jobs. provenance() reads git once per process and hands out copies."""
    import aidetect.config as config

    reads = []
    states = iter([{"git_commit": "a" * 40, "git_dirty": False, "packages": {"torch": "x"}, "python": "3"},
                   {"git_commit": "b" * 40, "git_dirty": True, "packages": {"torch": "y"}, "python": "3"}])
    monkeypatch.setattr(config, "_FIRST", None)
    monkeypatch.setattr(config, "read_provenance", lambda: reads.append(1) or next(states))
    first = config.provenance()
    first["packages"]["torch"] = "mutated by a caller"
    second = config.provenance()  # after "a commit": still the first job's code
    assert second["git_commit"] == "a" * 40 and second["git_dirty"] is False
    assert second["packages"]["torch"] == "x" and len(reads) == 1


def test_ema_update_is_the_exponential_average_in_one_foreach_pass(monkeypatch):
    """The callback's average, through torch's foreach path: W <- d*W + (1-d)*w for every float
    parameter and buffer (batch-norm statistics too); the integer batch counter, as before, truncated."""
    from torch.optim.swa_utils import AveragedModel

    from aidetect.callbacks import EMA

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    cb, d = EMA(decay=0.9), 0.9
    avg = AveragedModel(net, use_buffers=True, **cb._kwargs)
    calls = []
    real = torch._foreach_lerp_
    monkeypatch.setattr(torch, "_foreach_lerp_", lambda *a: (calls.append(1), real(*a))[1])
    expected = {k: v.clone().double() for k, v in net.state_dict().items()}
    avg.update_parameters(net)  # the first update copies
    for _ in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            net(torch.randn(2, 3, 8, 8))  # moves the running statistics
            net[1].num_batches_tracked.add_(1000)  # a counter big enough for the average to move
        avg.update_parameters(net)
        for k, v in net.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v.double()
            if not v.is_floating_point():
                expected[k] = expected[k].trunc()
    got = avg.module.state_dict()
    assert int(got["1.num_batches_tracked"]) == int(expected["1.num_batches_tracked"]) == 561  # 100, 290, 561
    for k, v in expected.items():
        assert torch.allclose(got[k].double(), v, atol=1e-6), k
    assert len(calls) == 3  # one foreach call per update (one float dtype on one device), not one per tensor


def test_scoring_after_training_runs_in_true_float32():
    """logits_of (calibration, eval, robustness) and predict_proba turn TF32 off while they score,
    so a GPU scores as the CPU and `aidetect predict` do, and give the settings back afterwards."""
    from aidetect.calibrate import logits_of

    seen = []

    class Probe(torch.nn.Module):
        device = torch.device("cpu")

        def forward(self, x):
            seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
            return torch.zeros(len(x))

    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        logits_of(Probe(), torch.zeros(3, 3, 4, 4, dtype=torch.uint8), batch_size=2)
        assert seen == [(False, False)] * 2
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before



@pytest.mark.slow
def test_the_end_of_a_run_imports_nothing_new(tmp_path, kaggle_dir):
    """Test, calibration and reports use only modules loaded before training: the source can be edited
    during a long run (it happened: every job of a faces sweep trained, then failed at calibration with
    an ImportError) without failing the run's end. In a fresh process, as train.py runs."""
    (tmp_path / "run_blocked.py").write_text(f"""
import runpy, sys
import aidetect.train as t

class Blocker:  # an aidetect module first imported after fit fails, as an edited one could
    def find_spec(self, name, path=None, target=None):
        if name.startswith("aidetect") and name not in sys.modules:
            raise ImportError(name + " imported after training")

def after_fit(*a, real=t.tested_checkpoint):
    sys.meta_path.insert(0, Blocker())
    return real(*a)

t.tested_checkpoint = after_fit
sys.argv = ["train.py"] + sys.argv[1:]
runpy.run_path({str(ROOT / "train.py")!r}, run_name="__main__")
""")
    r = run_script(tmp_path / "run_blocked.py", *common(tmp_path, kaggle_dir), "trainer.max_epochs=1",
                   "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "run/metrics.json").read_text())
    assert m["test"]["acc"] is not None and m["calibration"]["calibration"]["threshold"] is not None


def test_init_from_starts_from_another_runs_weights_with_a_fresh_optimizer(tmp_path, kaggle_dir):
    """init_from= (two-stage fine-tuning, e.g. LP-FT): the network starts as the named checkpoint's, not
    as a fresh initialisation; a checkpoint of another network is refused naming the setting; a job
    without it keeps the config hash it had before the setting existed."""
    from aidetect.config import ConfigError
    from aidetect.module import load_detector
    from aidetect.train import config_sha

    base = common(tmp_path, kaggle_dir) + ["trainer.max_epochs=1", "logger=none", "test=false", "calibrate=false"]
    train(compose_train(base + [f"output_dir={tmp_path / 'a'}"]))
    a = tmp_path / "a/checkpoints/last.ckpt"
    # lr 0 and a network without batch norm: weights after one epoch are exactly the starting ones
    frozen = base + ["model.optimizer.lr=0.0"]
    cfg = compose_train(frozen + [f"init_from={a}", f"output_dir={tmp_path / 'b'}", "seed=7"])
    train(cfg)
    fresh = compose_train(frozen + [f"output_dir={tmp_path / 'c'}", "seed=7"])
    train(fresh)
    wa, wb, wc = (load_detector(tmp_path / f"{r}/checkpoints/last.ckpt").net.state_dict() for r in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)  # seed 7's own start differs from run a's
    # a fresh optimizer and epoch count (a resume, ckpt_path=, would have skipped the finished epoch)
    steps = [torch.load(tmp_path / f"{r}/checkpoints/last.ckpt", weights_only=True)["global_step"] for r in "bc"]
    assert steps[0] == steps[1] > 0
    assert config_sha(cfg) != config_sha(fresh)
    # the starting weights' content decides the job, not how their path is spelled
    import shutil
    shutil.copy(a, tmp_path / "copy.ckpt")
    assert config_sha(cfg) == config_sha(compose_train(frozen + [f"init_from={tmp_path / 'copy.ckpt'}", f"output_dir={tmp_path / 'b'}", "seed=7"]))
    legacy = OmegaConf.to_container(fresh)
    del legacy["init_from"]
    assert config_sha(fresh) == config_sha(OmegaConf.create(legacy))
    with pytest.raises(ConfigError, match="init_from=.*same model= and aug= settings"):
        train(compose_train(base + ["model=small_resnet", "model.net.width=8", f"init_from={a}",
                                    f"output_dir={tmp_path / 'd'}"]))
    with pytest.raises(ConfigError, match="init_from=.*net/view settings"):  # same tensors, another view
        train(compose_train(base + ["aug=inverted", f"init_from={a}", f"output_dir={tmp_path / 'e'}"]))
    with pytest.raises(ConfigError, match="init_from=.*not a file"):
        train(compose_train(base + [f"init_from={tmp_path / 'missing.ckpt'}", f"output_dir={tmp_path / 'f'}"]))
