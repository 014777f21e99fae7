"""Evaluation of a saved checkpoint on any dataset.

    python eval.py ckpt_path=outputs/train/runs/<time>/checkpoints/last.ckpt data.archive=../shared/data/cifake.zip
    python eval.py ckpt_path=best.ckpt data=folder data.root=/my/images
    python eval.py data=modern data.root=data/broad       # no ckpt_path: the shipped detector (or ckpt_path=cifake)

The checkpoint carries everything about the model (network, view, input size, resize
policy), so the images are seen exactly as in training; only the data comes from this
config. A folder is scored whole: its test/ if present, else val/, else every image under
REAL/ and FAKE/; but the very set the checkpoint trained on, when training carved its test
split out of it (data=faces, or a folder with no split folders), gives only that held-out part
(``split=whole`` overrides). Images are brought to the checkpoint's input size with its resize policy
unless ``data.image_size`` is given.

Besides trainer.test's figures (accuracy at 0.5 on the raw logit, comparable across the
README's tables), it writes predictions.csv (one row per image, the same P(FAKE) as
``aidetect predict``), accuracy at the checkpoint's threshold, ECE and reliability.png,
and with ``robustness=standard`` the corruption grid (robustness.csv/.md/.png).

``format_neutral=true`` also scores test copies where both classes are processed alike
(short side 512, then JPEG q90: ``data.images.format_neutral``; or
``format_neutral='{short_side:384,quality:90}'``), beside the files as published: metrics.json
gets a ``format_neutral`` block with both scores on the same images and their difference, and
predictions_format_neutral.csv the per-image scores. A detector that loses much there was
reading file format, size or compression, not the generator.
"""

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

from aidetect.calibrate import logits_of, reliability_diagram, score
from aidetect.config import ConfigError
from aidetect.data.crops import CROP_POLICIES
from aidetect.io import write_json
from aidetect.module import SCHEMA_VERSION, load_detector
from aidetect.predict import resolve_checkpoint, write_predictions
from aidetect.runs import build_datamodule, output_dir, run_test, write_skipped

log = logging.getLogger(__name__)


def _source(data: dict) -> Path | None:
    where = data.get("archive") or data.get("root")
    return None if where is None else Path(str(where)).expanduser().resolve()


def carved_from(trained_data: dict, data_cfg) -> bool:
    """True when data_cfg is the very folder (or archive) the checkpoint trained on and that folder has
    no split folders: training carved its val and test parts out of it, so scoring the whole folder
    would score the training images too."""
    source = _source(trained_data)
    if source is None or source != _source(data_cfg):
        return False
    probe = build_datamodule(data_cfg)
    if not hasattr(probe, "layout"):  # a manifest pool (data=modern): setup("test") is its grouped held-out test split
        return False
    probe.prepare_data()
    return "all" in probe.layout()


def given(cfg: DictConfig, key: str = "image_size", outside_hydra: bool = True):
    """data.<key> if the user set it (on the command line under Hydra; a dataset's own default,
    e.g. data=flux's 720x1280 or data=modern's crop_size 224, does not count), else None. Called
    outside Hydra (a composed config), the value counts as given if ``outside_hydra``."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        overrides = HydraConfig.get().overrides.task
        return cfg.data.get(key) if any(o.lstrip("+~").startswith(f"data.{key}=") for o in overrides) else None
    return cfg.data.get(key) if outside_hydra else None


def evaluate(cfg: DictConfig) -> dict:
    ckpt = resolve_checkpoint(cfg.get("ckpt_path"))  # a file, or a shipped detector's name (default, cifake)
    model = load_detector(ckpt, weights=cfg.get("weights", "average"), tta=cfg.get("tta", "none"))
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed)
    log.info("checkpoint %s: %s", ckpt, model.describe())
    data_cfg = cfg.data.copy()
    size_given = given(cfg)
    if size_given is None:  # the checkpoint's size and policy; its native size if that matches (reuses the cache)
        data_cfg.image_size, data_cfg.resize = None, model.hparams.resize
        if model.hparams.resize in CROP_POLICIES and "crop_size" in data_cfg:  # a crop-grid detector: its grid
            if given(cfg, "crop_size", outside_hydra=False) is None:
                data_cfg.crop_size = int(model.input_size[0])
            if given(cfg, "eval_crops", outside_hydra=False) is None and model.hparams.get("eval_crops"):
                data_cfg.eval_crops = int(model.hparams.eval_crops)
    elif tuple(size_given) != model.input_size:
        if type(model.net).fixed_input_size:
            raise ConfigError(f"data.image_size={list(size_given)}: this checkpoint's {type(model.net).__name__} "
                              f"takes exactly {list(model.input_size)}; leave data.image_size unset to use it")
        type(model.net).check_input_size(size_given)
    split = cfg.get("split", "auto")
    if split not in ("auto", "whole", "held_out"):
        raise ConfigError(f"split={split!r}; valid: auto, whole (every image of the folder), held_out (the test "
                          f"split the checkpoint's training run held out: same data settings and split seed)")
    trained_data = (model.run_config or {}).get("data") or {}
    if split == "auto":  # the data the checkpoint was trained on, split by its seed: only what it held out
        split = "held_out" if trained_data.get("name") == data_cfg.get("name") and (
            data_cfg.get("pool") or carved_from(trained_data, data_cfg)) else "whole"
    if split == "held_out":  # every setting that shapes the split as the training run had it (resolved then)
        for key in ("split_seed", "test_fraction", "val_fraction", "dedup", "min_side", "pool"):
            if key in trained_data and key in data_cfg:
                data_cfg[key] = trained_data[key]
    datamodule = build_datamodule(data_cfg, default_size=model.input_size)
    if size_given is None:
        datamodule.prepare_data()
        if datamodule.peek_size() != model.input_size:
            datamodule.image_size = model.input_size
    if split == "held_out":
        datamodule.setup("fit")  # the training split order; trainer.test then scores its test part
        datamodule.data_report["test_from"] = f"held-out test split (split seed {datamodule.split_seed})"
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, default_root_dir=str(out))
    results, logits = run_test(trainer, model, datamodule)
    threshold = float(cfg.threshold) if cfg.get("threshold") is not None else float(model.hparams.threshold)
    if not 0 <= threshold <= 1:
        raise ConfigError(f"threshold={threshold}: give a probability between 0 and 1")
    test = datamodule.splits["test"]
    # Per image, as `aidetect predict` computes them (fp32): the probabilities agree.
    logits = logits_of(model, test.images) if logits is None else logits
    probs = model.probability(logits)
    extra = score(probs, test.labels, threshold)
    results.update({f"test/{k}": v for k, v in extra.items() if f"test/{k}" not in results})
    write_predictions(out / "predictions.csv", test.names, probs, threshold, test.labels)
    reliability_diagram(probs, test.labels, out / "reliability.png", title=f"{datamodule.name} test")
    robustness = None
    if cfg.get("robustness"):
        from aidetect.robustness import run_grid

        paths = [datamodule.root / n for n in test.names]
        robustness = run_grid(model, paths, test.labels, cfg.robustness.corruptions, out, threshold,
                              title=f"{datamodule.name}", names=test.names)
    neutral = None
    if cfg.get("format_neutral"):  # true, or {short_side: 512, quality: 90}
        from omegaconf import OmegaConf

        from aidetect.robustness import format_neutral_scores

        opts = cfg.format_neutral if OmegaConf.is_dict(cfg.format_neutral) else {}
        unknown = set(opts) - {"short_side", "quality"}
        if unknown:
            raise ConfigError(f"format_neutral.{sorted(unknown)[0]}: valid keys are short_side and quality")
        neutral = format_neutral_scores(model, [datamodule.root / n for n in test.names], test.labels, threshold,
                                        published=probs, out=out, names=test.names,
                                        **{k: int(v) for k, v in opts.items()})
    saved = model.run_config or {}
    breakdown = None
    if getattr(datamodule, "rows", None):  # manifest data: per family, per content, per REAL source (breakdown.md)
        from aidetect.breakdown import score_breakdown

        breakdown = score_breakdown(model, datamodule, out, loggers, known={"test": logits}, threshold=threshold)
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "test": {k.split("/", 1)[1]: v for k, v in results.items()},
        **({"breakdown": breakdown} if breakdown else {}),
        "threshold": threshold,
        "temperature": model.hparams.temperature,
        "robustness": robustness,
        "format_neutral": neutral,
        "checkpoint": str(ckpt),
        "weights": cfg.get("weights", "average"),
        "tta": model.tta,
        "view": model.view.spec(),
        "model": model.describe(),
        "seed": saved.get("seed"),  # the training seed: lets `aidetect aggregate` pair eval sweeps
        "trained_with": {k: saved.get(k) for k in ("seed", "data", "aug")} if saved else None,
        "trained_provenance": model.provenance,
        "data": datamodule.data_report,
    }
    write_json(out / "metrics.json", metrics)
    write_skipped(out, datamodule.skipped)
    return metrics
