"""`aidetect ensemble`: several detectors' predictions.csv files scored as one detector.

    aidetect ensemble outputs/best_cifake/bf16_11ep_crop/cifake/{0,1,2}/predictions.csv
    aidetect ensemble run_a/predictions.csv run_b/predictions.csv --out ensemble.csv --md table.md

Each image's ensemble score is the mean of its members' logits (log-odds of P(FAKE)), the average
flip TTA takes too. Members are matched by path and must score the same images; rows a member
could not score (`aidetect predict`'s skipped files) are left out and counted. Where the files
carry true labels (train.py's and eval.py's do) it prints accuracy at P(FAKE) 0.5 and AUROC for
every member and the ensemble, and how many images every member gets wrong: a mean of logits
that are all on the wrong side is on the wrong side too, so those errors are a floor no average
of these members can go below.
"""

import csv
import logging
from pathlib import Path

import torch

from aidetect import LABELS
from aidetect.config import ConfigError

log = logging.getLogger(__name__)
EPS = 1e-6  # predictions.csv keeps 6 decimals: 0 and 1 happen, and have no finite logit


def read_predictions(path: Path) -> dict[str, tuple[float, int | None]]:
    """path -> (P(FAKE), true label or None) of one predictions file; unscored rows left out."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such predictions file (train.py and eval.py write predictions.csv "
                          f"in the run folder; `aidetect predict --out scores.csv` writes one too)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "p_fake"} - set(reader.fieldnames or [])
        if missing:
            raise ConfigError(f"{path}: no {' or '.join(sorted(missing))} column; expected a predictions.csv "
                              f"from train.py, eval.py or `aidetect predict --out FILE.csv`")
        rows = {}
        for row in reader:
            if not row["p_fake"]:
                continue
            truth = row.get("true_label") or None
            if truth is not None and truth not in LABELS:
                raise ConfigError(f"{path}: true_label {truth!r} for {row['path']}; expected one of {sorted(LABELS)}")
            if row["path"] in rows:
                raise ConfigError(f"{path}: {row['path']} appears twice")
            rows[row["path"]] = (float(row["p_fake"]), None if truth is None else LABELS[truth])
    if not rows:
        raise ConfigError(f"{path}: no scored rows")
    return rows


def combine(members: list[dict]) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(paths, members' P(FAKE) [members x images], ensemble P(FAKE), labels or None) over the
    paths every member scored."""
    paths = sorted(set.intersection(*(set(m) for m in members)))
    dropped = max(len(m) for m in members) - len(paths)
    if not paths:
        raise ConfigError("the predictions files share no image paths: were they made on the same data?")
    if dropped:
        log.warning("%d images are not scored by every member and are left out", dropped)
    probs = torch.tensor([[m[p][0] for p in paths] for m in members], dtype=torch.float64)
    truths = [[m[p][1] for p in paths] for m in members]
    labels = None
    if all(t is not None for t in truths[0]):
        if any(t != truths[0] for t in truths[1:]):
            raise ConfigError("the predictions files disagree on some images' true labels")
        labels = torch.tensor(truths[0])
    ensemble = torch.sigmoid(torch.logit(probs.clamp(EPS, 1 - EPS)).mean(0))
    return paths, probs, ensemble, labels


def score(probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    from torchmetrics.functional.classification import binary_accuracy, binary_auroc

    return float(binary_accuracy(probs, labels, threshold=0.5)), float(binary_auroc(probs, labels))


def table(names: list[str], probs, ensemble, labels) -> str:
    """Markdown: each member's and the ensemble's accuracy and AUROC, and the shared errors."""
    lines = ["| predictions | images | test acc (P(FAKE) 0.5) | AUROC |", "|---|---|---|---|"]
    for name, p in zip(names, probs):
        acc, auc = score(p, labels)
        lines.append(f"| {name} | {len(labels)} | {acc:.4f} | {auc:.4f} |")
    acc, auc = score(ensemble, labels)
    lines.append(f"| **ensemble of {len(names)}** (mean logit) | {len(labels)} | **{acc:.4f}** | **{auc:.4f}** |")
    wrong = (probs >= 0.5).long() != labels
    lines += ["", f"Wrong in every member: {int(wrong.all(0).sum())} images, so no mean of these members can "
              f"score above {1 - wrong.all(0).double().mean():.4f}; wrong in at least one: {int(wrong.any(0).sum())}."]
    return "\n".join(lines) + "\n"


def cmd_ensemble(args) -> int:
    from aidetect.io import atomic_write
    from aidetect.predict import write_predictions

    if len(args.predictions) < 2:
        raise ConfigError("an ensemble needs at least two predictions files")
    paths, probs, ensemble, labels = combine([read_predictions(p) for p in args.predictions])
    if args.out:
        write_predictions(Path(args.out), paths, ensemble, 0.5, labels)
        print(f"wrote {args.out}: {len(paths)} images")
    if labels is None:
        print("no true labels in the files: wrote the ensemble's scores only" if args.out else
              "no true labels in the files: nothing to score (use --out to keep the ensemble's P(FAKE))")
        return 0
    text = table([str(p) for p in args.predictions], probs, ensemble, labels)
    print(text, end="")
    if args.md:
        atomic_write(Path(args.md), text.encode())
    return 0
