"""`aidetect soup`: one detector whose weights are the mean of several detectors' weights.

    aidetect soup outputs/modern_detector/v1_4_wider/checkpoints/best_epoch_007.ckpt v1_3.ckpt --out soup.ckpt
    aidetect calibrate soup.ckpt --max-fpr 0.20      # a soup's threshold and temperature are fitted anew

A "model soup" (Wortsman et al., ICML 2022): networks fine-tuned from the same pretrained weights
usually stay in one basin, so the mean of their weights scores about like the mean of their logits
(an ensemble) at the cost and size of one network. Here it joins detectors trained on different
pools. Members must be the same network (same settings, same tensors and shapes); their
threshold and temperature do not carry over, so the soup is written with 0.5 and 1.0 and must be
calibrated. Its run config (which says its validation split, for `calibrate` and `ship`) is the
first member's; the members are named in the checkpoint's ``aidetect.soup``.

Batch-norm statistics do not average like weights: the mean of the members' running means and
variances is not what the averaged network's layers see. ``--bn-batches N`` re-estimates them on N
batches of the first member's training data, drawn and augmented as in training (SWA's remedy,
``torch.optim.swa_utils.update_bn``; Izmailov et al., 2018).
"""

import hashlib
from pathlib import Path

import torch

from aidetect.config import ConfigError
from aidetect.io import torch_save

SAME = ("net", "view", "input_size", "resize", "eval_crops", "labels")  # what every member must share


def soup(paths: list[Path], out: Path, bn_batches: int = 0) -> dict:
    from aidetect.module import load_detector

    if len(paths) < 2:
        raise ConfigError("aidetect soup: give at least two checkpoints to average")
    if int(bn_batches) < 0:
        raise ConfigError(f"aidetect soup --bn-batches {bn_batches}: a number of training batches, 0 (keep the "
                          f"averaged statistics) or more (e.g. 100)")
    ckpts = []
    for p in paths:
        load_detector(p)  # refuses anything that would not load, with its own message
        ckpts.append(torch.load(p, map_location="cpu", weights_only=True))
    first_hp = ckpts[0]["hyper_parameters"]
    for p, c in zip(paths[1:], ckpts[1:]):
        hp = c["hyper_parameters"]
        for k in SAME:
            if hp.get(k) != first_hp.get(k):  # checkpoints load as plain containers (weights_only)
                raise ConfigError(f"aidetect soup: {p} has {k}={hp.get(k)} but {paths[0]} has "
                                  f"{first_hp.get(k)}; only detectors of the same network can be averaged")
    states = [c["state_dict"] for c in ckpts]
    for p, s in zip(paths[1:], states[1:]):
        if s.keys() != states[0].keys() or any(s[k].shape != states[0][k].shape for k in s):
            raise ConfigError(f"aidetect soup: {p} holds other tensors than {paths[0]}; not the same network")
    mean = {}
    for k, v in states[0].items():  # float tensors (weights, batch-norm statistics) averaged in float32
        mean[k] = torch.stack([s[k].float() for s in states]).mean(0) if v.is_floating_point() else v
    meta = soup_meta(paths, ckpts)
    hp = {**first_hp, "threshold": 0.5, "temperature": 1.0, "optimizer": None, "scheduler": None}
    if bn_batches:
        mean = refit_batchnorm(hp, mean, meta.get("run_config"), int(bn_batches), paths[0])
        meta["soup_bn_batches"] = int(bn_batches)
    torch_save({"hyper_parameters": hp, "state_dict": mean, "aidetect": meta}, out)
    return meta


def soup_meta(paths, ckpts) -> dict:
    """The soup's own "aidetect" block, made fresh: this process's provenance (not the first member's), the
    first member's run config (its data say the validation split), and each member named with its file's
    sha256, its detector name, pool and provenance. No calibration: a soup is calibrated anew."""
    from aidetect.config import provenance
    from aidetect.module import SCHEMA_VERSION

    def pool(c):
        return ((c["aidetect"].get("run_config") or {}).get("data") or {}).get("root")

    return {"schema_version": SCHEMA_VERSION, "provenance": provenance(),
            "run_config": ckpts[0]["aidetect"].get("run_config"),
            "soup": [{"path": str(p), "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest(),
                      "detector": c["aidetect"].get("detector") or {}, "trained_on": pool(c),
                      "provenance": c["aidetect"].get("provenance")} for p, c in zip(paths, ckpts)]}


def refit_batchnorm(hp: dict, state: dict, run_config: dict | None, batches: int, source) -> dict:
    """``state`` with every batch-norm layer's running statistics re-estimated (a cumulative mean)
    on ``batches`` training batches of ``run_config``'s data."""
    import itertools

    from omegaconf import OmegaConf
    from torch.optim.swa_utils import update_bn

    from aidetect.module import Detector
    from aidetect.runs import build_datamodule

    if not run_config or "data" not in run_config:
        raise ConfigError(f"aidetect soup --bn-batches: {source} carries no run config, so its training data "
                          f"is unknown; leave --bn-batches out")
    net = {**hp["net"], **({"pretrained": False} if "pretrained" in hp["net"] else {})}
    model = Detector(**{**hp, "net": net})
    model.load_state_dict(state)
    dm = build_datamodule(OmegaConf.create(run_config["data"]))
    dm.setup("fit")
    torch.manual_seed(0)  # which training crops are drawn
    # update_bn puts the model in train mode and calls it on each batch's first item, the uint8 images
    with torch.no_grad():
        update_bn(itertools.islice(dm.train_dataloader(), batches), model)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def cmd_soup(args) -> int:
    out = Path(args.out)
    meta = soup([Path(p) for p in args.ckpts], out, args.bn_batches)
    print(f"wrote {out}: the mean of {len(meta['soup'])} detectors' weights "
          f"({', '.join(m['path'] for m in meta['soup'])}); threshold 0.5 and temperature 1.0 until "
          f"`aidetect calibrate {out}` fits them on the first member's validation split")
    return 0
