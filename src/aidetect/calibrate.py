"""Decision threshold, temperature and the scores that judge them, fitted on validation data.

    aidetect calibrate CKPT --data data.archive=../shared/data/cifake.zip   # any saved checkpoint
    (train.py calibrates the checkpoint it tests, on the run's own validation split)

Temperature scaling (Guo et al., 2017) divides the logit by one fitted T > 0; it changes
confidence, never the ranking, so AUROC is unchanged and ECE usually drops. The threshold
on the calibrated P(FAKE) is the one that maximises balanced accuracy on validation: REAL
and FAKE errors count equally whatever the class balance. Or, with ``--max-fpr A``, the lowest
threshold that calls at most a fraction A of the validation REAL images FAKE: a detector whose
validation generators are all ones it trained on scores new generators lower, and the
balanced-accuracy threshold then misses most of their images (docs/results/modern.md). Both are
stored in the checkpoint's hyperparameters, where predict, eval and the web page read them.
"""

import logging
from pathlib import Path

import torch
from torchmetrics.functional.classification import (binary_auroc, binary_average_precision,
                                                    binary_calibration_error, binary_roc)

from aidetect.io import save_figure, torch_save
from aidetect.module import logits_of
from aidetect.predict import write_predictions

log = logging.getLogger(__name__)

ECE_BINS = 15


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T minimising the binary cross-entropy of sigmoid(logit / T) on these labels."""
    logits, target = logits.double(), labels.double()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # T = exp(log_t) stays positive
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits / log_t.exp(), target)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return min(max(t, 0.05), 100.0)  # a degenerate split (all correct, huge logits) must not give inf


def balanced_accuracy(probs: torch.Tensor, labels: torch.Tensor, threshold: float) -> float:
    pred = probs >= threshold
    rates = [(pred[labels == c] == bool(c)).float().mean() for c in (0, 1) if (labels == c).any()]
    return float(torch.stack(rates).mean()) if rates else float("nan")


def best_threshold(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The threshold with the highest balanced accuracy; ties go to the one nearest 0.5, and the
    chosen value sits midway between neighbouring scores so it does not hinge on one image."""
    values = probs.double().unique(sorted=True)
    if len(values) < 2:
        return 0.5
    candidates = torch.cat([values[:1] - 1e-6, (values[1:] + values[:-1]) / 2, values[-1:] + 1e-6])
    pos, neg = labels == 1, labels == 0
    # counts per candidate from sorted scores: O(N log N), where an N x candidates table took ~2 GB at 20k images
    fake, real = probs.double()[pos].sort().values, probs.double()[neg].sort().values
    tpr = (len(fake) - torch.searchsorted(fake, candidates)) / len(fake) if len(fake) else torch.zeros(len(candidates))
    tnr = torch.searchsorted(real, candidates) / len(real) if len(real) else torch.zeros(len(candidates))
    bal = ((tpr + tnr) / (2 if len(fake) and len(real) else 1)).double()
    best = bal.max()
    ties = (bal >= best - 1e-12).nonzero().squeeze(1)
    pick = ties[(candidates[ties] - 0.5).abs().argmin()]
    return float(candidates[pick].clamp(0.0, 1.0))


def threshold_at_fpr(probs: torch.Tensor, labels: torch.Tensor, max_fpr: float) -> float:
    """The lowest threshold at which at most ``max_fpr`` of the REAL (label 0) scores are >= it,
    midway between neighbouring REAL scores."""
    real = probs.double()[labels == 0].sort(descending=True).values
    if not 0 <= max_fpr < 1 or not len(real):
        raise ValueError(f"max_fpr={max_fpr}: a fraction in [0, 1), with REAL validation images to fit it on")
    k = int(max_fpr * len(real))  # this many REAL images may sit at or above the threshold
    above = real[k - 1] if k else torch.tensor(1.0 + 1e-6, dtype=torch.float64)
    return float(((above + real[k]) / 2 if k < len(real) else real[-1] - 1e-6).clamp(0.0, 1.0))


def score(probs: torch.Tensor, labels: torch.Tensor, threshold: float) -> dict:
    """Every figure this project reports for a set of P(FAKE) scores."""
    labels = labels.long()
    both = bool((labels == 0).any() and (labels == 1).any())
    out = {"n": len(labels), "acc_at_0.5": float(((probs >= 0.5).long() == labels).float().mean()),
           "acc_at_threshold": float(((probs >= threshold).long() == labels).float().mean()),
           "balanced_acc_at_threshold": balanced_accuracy(probs, labels, threshold),
           "ece": float(binary_calibration_error(probs, labels, n_bins=ECE_BINS, norm="l1"))}
    if both:
        fpr, tpr, _ = binary_roc(probs, labels)
        called = probs >= threshold  # which way a drop in accuracy goes: FAKE missed, or REAL called FAKE
        out.update(auroc=float(binary_auroc(probs, labels)), average_precision=float(binary_average_precision(probs, labels)),
                   tpr_at_5fpr=float(tpr[fpr <= 0.05].max()), detection_at_threshold=float(called[labels == 1].float().mean()),
                   fpr_at_threshold=float(called[labels == 0].float().mean()))
    return out


def calibrate_model(model, images: torch.Tensor, labels: torch.Tensor, max_fpr: float | None = None,
                    logits: torch.Tensor | None = None) -> dict:
    """Fit temperature, then threshold (best balanced accuracy, or ``threshold_at_fpr`` with ``max_fpr``),
    on validation images (or their ``logits``, already computed); set them on the model; return a report."""
    logits = logits_of(model, images) if logits is None else logits
    t = fit_temperature(logits, labels)
    raw = logits.sigmoid()
    probs = (logits / t).sigmoid()
    threshold = best_threshold(probs, labels) if max_fpr is None else threshold_at_fpr(probs, labels, max_fpr)
    model.hparams.temperature, model.hparams.threshold = t, threshold
    report = {"temperature": t, "threshold": threshold, "n_val": len(labels),
              "threshold_rule": "best balanced accuracy" if max_fpr is None else f"val REAL FPR <= {max_fpr}",
              "val_fpr_at_threshold": float((probs[labels == 0] >= threshold).float().mean()),
              "val_ece_before": float(binary_calibration_error(raw, labels, n_bins=ECE_BINS)),
              "val_ece_after": float(binary_calibration_error(probs, labels, n_bins=ECE_BINS)),
              "val_balanced_acc_at_0.5": balanced_accuracy(raw, labels, 0.5),
              "val_balanced_acc_at_threshold": balanced_accuracy(probs, labels, threshold)}
    log.info("calibrated on %d validation images: temperature %.3f, threshold %.3f (%s), ECE %.4f -> %.4f",
             len(labels), t, threshold, report["threshold_rule"], report["val_ece_before"], report["val_ece_after"])
    return report


def store_calibration(path: Path, temperature: float, threshold: float, report: dict | None = None) -> None:
    """Write threshold and temperature into a checkpoint file's hyperparameters (atomically)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["temperature"] = float(temperature)
    ckpt["hyper_parameters"]["threshold"] = float(threshold)
    if report is not None:
        ckpt.setdefault("aidetect", {})["calibration"] = report
    torch_save(ckpt, path)


def reliability_diagram(probs: torch.Tensor, labels: torch.Tensor, path: Path, title: str = "") -> None:
    """Observed FAKE rate against mean P(FAKE) per confidence bin, with the bins' counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = torch.linspace(0, 1, ECE_BINS + 1)
    idx = torch.bucketize(probs.clamp(0, 1), edges[1:-1])
    mean_p, frac, count = [], [], []
    for b in range(ECE_BINS):
        m = idx == b
        count.append(int(m.sum()))
        mean_p.append(float(probs[m].mean()) if m.any() else float("nan"))
        frac.append(float(labels[m].float().mean()) if m.any() else float("nan"))
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(4.5, 5.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfectly calibrated")
    ax.plot(mean_p, frac, marker="o", label="this model")
    ece = float(binary_calibration_error(probs, labels.long(), n_bins=ECE_BINS))
    ax.set(ylabel="fraction FAKE", title=f"{title} ECE {ece:.4f}".strip(), xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    ax2.bar((edges[:-1] + edges[1:]).numpy() / 2, count, width=1 / ECE_BINS, color="grey")
    ax2.set(xlabel="predicted P(FAKE)", ylabel="images", yscale="log")
    fig.tight_layout()
    save_figure(fig, path)


def calibrate_and_score(model, splits: dict, out: Path, ckpt_file: Path | None = None, title: str = "",
                        test_logits: torch.Tensor | None = None, max_fpr: float | None = None) -> dict:
    """Calibrate on ``splits["val"]`` (stored in ``ckpt_file`` too), then score ``splits["test"]``
    at the stored threshold: the test figures, predictions.csv and reliability.png in ``out``, and the
    validation scores in val_predictions.csv (what the threshold was fitted on)."""
    val = splits["val"]
    val_logits = logits_of(model, val.images)
    report = calibrate_model(model, val.images, val.labels, max_fpr=max_fpr, logits=val_logits)
    val_probs = (val_logits / report["temperature"]).sigmoid()
    write_predictions(out / "val_predictions.csv", val.names or [str(i) for i in range(len(val_probs))],
                      val_probs, report["threshold"], val.labels)
    if ckpt_file is not None:
        store_calibration(ckpt_file, report["temperature"], report["threshold"], report)
    test = splits.get("test")
    extra = {}
    if test is not None and len(test):
        probs = model.probability(logits_of(model, test.images) if test_logits is None else test_logits)
        extra = score(probs, test.labels, report["threshold"])
        reliability_diagram(probs, test.labels, out / "reliability.png", title=f"{title} test".strip())
        write_predictions(out / "predictions.csv", test.names, probs, report["threshold"], test.labels)
    return {"calibration": report, "test": extra}


def cmd_calibrate(args) -> int:
    """`aidetect calibrate CKPT [data overrides]`: refit threshold and temperature on validation data."""
    import json
    import sys

    from omegaconf import OmegaConf

    from aidetect.config import ConfigError, compose
    from aidetect.module import load_detector
    from aidetect.runs import build_datamodule

    ckpt = Path(args.ckpt)
    model = load_detector(ckpt)
    trained = (model.run_config or {}).get("data")
    if any(o.startswith("data=") for o in args.overrides):  # another dataset, composed as on the command line
        data = compose("train", list(args.overrides)).data
    elif trained:  # the data the checkpoint was trained on, resolved as it ran (root, split seed...)
        data = OmegaConf.create(trained)
        data = OmegaConf.merge(data, OmegaConf.from_dotlist([o[len("data."):] for o in args.overrides
                                                              if o.startswith("data.")]))
    else:
        raise ConfigError(f"{ckpt} does not record its training data; name one, e.g. data=faces or "
                          f"data=folder data.root=/my/images")
    data.image_size, data.resize = list(model.input_size), model.hparams.resize
    dm = build_datamodule(data, default_size=model.input_size)
    dm.prepare_data()
    dm.setup("fit")
    out = Path(args.out) if args.out else ckpt.parent / f"calibration-{ckpt.stem}"
    out.mkdir(parents=True, exist_ok=True)
    splits = {"val": dm.splits["val"]} if args.val_only else dm.splits
    result = calibrate_and_score(model, splits, out, ckpt, title=dm.name, max_fpr=args.max_fpr)
    print(json.dumps(result, indent=2))
    print(f"stored in {ckpt}; val_predictions.csv{'' if args.val_only else ', test predictions and reliability.png'} "
          f"in {out}", file=sys.stderr)
    return 0
