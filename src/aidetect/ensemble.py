"""`aidetect ensemble`: several detectors' predictions.csv files scored as one detector.

    aidetect ensemble outputs/best_cifake/bf16_11ep_crop/cifake/{0,1,2}/predictions.csv
    aidetect ensemble run_a/predictions.csv run_b/predictions.csv --out ensemble.csv --md table.md

Each image's ensemble score is the mean of its members' logits (log-odds of P(FAKE)), the average
flip TTA takes too. Members are matched by path (as each file spells it); images that not every
member scored, including rows a member could not score (`aidetect predict`'s skipped files), are
left out and counted. Where the files carry true labels (train.py's and eval.py's do) it prints
accuracy and AUROC for every member and the ensemble, and how many images every member gets
wrong. An image is called FAKE at P(FAKE) >= 0.5, as everywhere in this project; a mean of
logits that are all on the wrong side of that is on the wrong side too, so those shared errors
bound any mean-logit ensemble of these members (at that threshold) from above.
"""

import csv
import logging
import math
from pathlib import Path

import torch

from aidetect import LABELS
from aidetect.config import ConfigError

log = logging.getLogger(__name__)
EPS = 1e-6  # predictions.csv keeps 6 decimals: 0 and 1 happen, and have no finite logit


def read_predictions(path: Path) -> tuple[dict[str, tuple[float, int | None]], int]:
    """(path -> (P(FAKE), true label or None), number of unscored rows) of one predictions file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such predictions file (train.py and eval.py write predictions.csv "
                          f"in the run folder; `aidetect predict --out scores.csv` writes one too)")
    rows, unscored = {}, 0
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "p_fake"} - set(reader.fieldnames or [])
        if missing:
            raise ConfigError(f"{path}: no {' or '.join(sorted(missing))} column; expected a predictions.csv "
                              f"from train.py, eval.py or `aidetect predict --out FILE.csv`")
        for row in reader:
            name, text = row["path"], row["p_fake"]
            if not text:
                unscored += 1
                continue
            try:
                p = float(text)
            except ValueError:
                p = math.nan
            if not 0 <= p <= 1:  # NaN fails too
                raise ConfigError(f"{path}: p_fake {text!r} for {name} is not a probability in [0, 1]")
            truth = row.get("true_label") or None
            if truth is not None and truth not in LABELS:
                raise ConfigError(f"{path}: true_label {truth!r} for {name}; expected one of {sorted(LABELS)}")
            label = None if truth is None else LABELS[truth]
            if name in rows and rows[name] != (p, label):
                raise ConfigError(f"{path}: {name} appears twice with different scores; "
                                  f"keep one row per image (score each file once)")
            rows[name] = (p, label)
    if not rows:
        raise ConfigError(f"{path}: no scored rows")
    return rows, unscored


def combine(members: list[dict], files: list = None):
    """(paths, members' P(FAKE) [members x images], ensemble P(FAKE), labels or None, images left
    out) over the paths every member scored. Labels come from whichever members carry them."""
    files = [str(f) for f in files] if files else [f"member {i + 1}" for i in range(len(members))]
    paths = sorted(set.intersection(*(set(m) for m in members)))
    if not paths:
        examples = "; ".join(f"{f}: {next(iter(m))}" for f, m in zip(files, members))
        raise ConfigError(f"the predictions files share no image paths (e.g. {examples}): they must score "
                          f"the same images, named the same way")
    left_out = len(set().union(*members)) - len(paths)
    probs = torch.tensor([[m[p][0] for p in paths] for m in members], dtype=torch.float64)
    labels = []
    for p in paths:
        known = [(f, m[p][1]) for f, m in zip(files, members) if m[p][1] is not None]
        if any(label != known[0][1] for _, label in known):
            other = next(f for f, label in known if label != known[0][1])
            raise ConfigError(f"{known[0][0]} and {other} disagree on the true label of {p}: "
                              f"were they made on the same data?")
        labels.append(known[0][1] if known else None)
    if any(label is None for label in labels):
        if any(label is not None for label in labels):
            log.warning("some images have no true label in any file: the ensemble is not scored")
        labels = None
    else:
        labels = torch.tensor(labels)
    ensemble = torch.sigmoid(torch.logit(probs.clamp(EPS, 1 - EPS)).mean(0))
    return paths, probs, ensemble, labels, left_out


def score(probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Accuracy with FAKE at P(FAKE) >= 0.5 (torchmetrics' own threshold is a strict >), and AUROC."""
    from torchmetrics.functional.classification import binary_accuracy, binary_auroc

    return float(binary_accuracy((probs >= 0.5).long(), labels)), float(binary_auroc(probs, labels))


def table(names: list[str], probs, ensemble, labels, left_out: int = 0) -> str:
    """Markdown: each member's and the ensemble's accuracy and AUROC, and the shared errors."""
    n = len(labels)
    lines = ["| predictions | images | test acc (FAKE at P(FAKE) >= 0.5) | AUROC |", "|---|---|---|---|"]
    for name, p in zip(names, probs):
        acc, auc = score(p, labels)
        lines.append(f"| {name} | {n} | {acc:.4f} | {auc:.4f} |")
    acc, auc = score(ensemble, labels)
    lines.append(f"| **ensemble of {len(names)}** (mean logit) | {n} | **{acc:.4f}** | **{auc:.4f}** |")
    wrong = (probs >= 0.5).long() != labels
    shared = int(wrong.all(0).sum())
    lines += ["", f"Wrong in every member: {shared} images, so no mean of these members' logits can score above "
              f"{n - shared}/{n} = {math.ceil((n - shared) / n * 1e4) / 1e4:.4f} at P(FAKE) >= 0.5; "
              f"wrong in at least one: {int(wrong.any(0).sum())}."]
    if left_out:
        lines.append(f"{left_out} images not scored by every member are left out.")
    return "\n".join(lines) + "\n"


def cmd_ensemble(args) -> int:
    from aidetect.io import atomic_write
    from aidetect.predict import write_predictions

    if len(args.predictions) < 2:
        raise ConfigError("an ensemble needs at least two predictions files")
    if args.out and Path(args.out).suffix.lower() != ".csv":
        raise ConfigError(f"--out {args.out}: the ensemble is written as a predictions.csv; name a .csv file")
    read = [read_predictions(p) for p in args.predictions]
    for file, (_, unscored) in zip(args.predictions, read):
        if unscored:
            log.warning("%s: %d rows without a score (unreadable files) are left out", file, unscored)
    paths, probs, ensemble, labels, left_out = combine([rows for rows, _ in read], args.predictions)
    if left_out:
        log.warning("%d images are not scored by every member and are left out", left_out)
    if args.out:
        write_predictions(Path(args.out), paths, ensemble, 0.5, labels)
        print(f"wrote {args.out}: {len(paths)} images")
    if labels is None:
        print("no true labels in the files, so no scores" + ("" if args.out else
              " (use --out to keep the ensemble's P(FAKE))") + (f"; {args.md} not written" if args.md else ""))
        return 0
    text = table([str(p) for p in args.predictions], probs, ensemble, labels, left_out)
    print(text, end="")
    if args.md:
        atomic_write(Path(args.md), text.encode())
    return 0
