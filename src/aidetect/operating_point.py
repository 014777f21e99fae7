"""Which false-positive budget on validation REAL images catches generators a detector never saw?

    python -m aidetect.operating_point --pool data/broad --families sd3,kandinsky,playground \\
        outputs/modern_detector/lofo3 outputs/modern_detector/lofo3_seed1 --out docs/results/operating_point.md \\
        --real-runs outputs/modern_detector/loso_phone --real-sources clothing_phone   # optional

Each RUN folder is a training run with generator families left out (``data.leave_out``): its
``val_predictions.csv`` scores the validation split (families it trained on), its ``predictions.csv``
the test split, where the left-out families sit. For each budget A the threshold is the one that calls
a fraction A of the run's validation REAL images FAKE (``calibrate.threshold_at_fpr``); the table gives,
per left-out family, the share of its images caught at that threshold, and the balanced accuracy
(1 - A + caught) / 2 averaged over those families: the left-out families stand in for tomorrow's
generators. The budget chosen is the smallest within 0.01 of the best mean balanced accuracy (the
curve is flat near its top, and each step up calls more real photos FAKE). The test split's REAL images are not read, so the budget chosen here can be applied to
a detector whose test split holds them (``aidetect calibrate CKPT --max-fpr A``) without touching its
test figures. Also listed: each run's own threshold (best balanced accuracy on validation), and each left-out
family's AUROC against the REAL test images (the ranking, whatever the threshold: the leave-one-family-out measure).

``--real-runs`` adds the REAL side: runs with REAL sources left out (``data.leave_out=source:...``), the
share of those sources' test images called FAKE per budget, and the balanced accuracy when both the
generator and the kind of real photo are new. A run given in both lists (families and REAL sources left out
together) also gets each left-out family's AUROC against the REAL sources it trained on and against the unseen ones.
"""

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from aidetect.calibrate import threshold_at_fpr
from aidetect.io import atomic_write

TOLERANCE = 0.01
BUDGETS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)


def _read(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return ([r["path"] for r in rows], np.array([float(r["p_fake"]) for r in rows]),
            np.array([int(r["true_label"] == "FAKE") for r in rows]))


def run_table(run: Path, family_of: dict[str, str], families: list[str], budgets=BUDGETS) -> dict:
    """Per budget: threshold, and the caught share of each left-out family's test images."""
    _, vp, vy = _read(run / "val_predictions.csv")
    names, tp, ty = _read(run / "predictions.csv")
    fam = np.array([family_of.get(n, "?") for n in names])
    own = None
    if (run / "metrics.json").is_file():  # train.py nests the calibration report one level down
        cal = json.loads((run / "metrics.json").read_text()).get("calibration") or {}
        own = cal.get("calibration", cal).get("threshold")
    out = {"run": str(run), "n_val_real": int((vy == 0).sum()), "n": {f: int(((fam == f) & (ty == 1)).sum()) for f in families},
           "n_real": int((ty == 0).sum()), "rows": [],
           # how well each left-out family is ranked, whatever the threshold: the leave-one-family-out measure
           "auroc": {f: auroc(tp[(fam == f) & (ty == 1)], tp[ty == 0]) for f in families}}
    points = [("own", own, float((vp[vy == 0] >= own).mean()))] if own is not None else []
    for a in budgets:
        t = threshold_at_fpr(torch.from_numpy(vp), torch.from_numpy(vy), a)
        points.append((a, t, float((vp[vy == 0] >= t).mean())))
    for a, t, fpr in points:
        caught = {f: float((tp[(fam == f) & (ty == 1)] >= t).mean()) for f in families if out["n"][f]}
        out["rows"].append({"budget": a, "threshold": t, "val_fpr": fpr, "caught": caught,
                            "balanced": float(np.mean([(1 - fpr + c) / 2 for c in caught.values()]))})
    return out


def markdown(tables: list[dict], families: list[str]) -> str:
    lines = []
    for tb in tables:
        lines += [f"**{tb['run']}** ({tb['n_val_real']} validation REAL images)", "",
                  "| budget A (val REAL FPR) | threshold | " + " | ".join(f"{f} caught (n={tb['n'][f]})" for f in families)
                  + " | mean balanced accuracy |", "|---" * (len(families) + 3) + "|"]
        for r in tb["rows"]:
            name = "own (best balanced on val)" if r["budget"] == "own" else f"{r['budget']:.2f}"
            lines.append(f"| {name} (val FPR {r['val_fpr']:.3f}) | {r['threshold']:.3f} | "
                         + " | ".join(f"{r['caught'].get(f, float('nan')):.3f}" for f in families)
                         + f" | {r['balanced']:.3f} |")
        lines += ["", f"AUROC of each left-out family against the {tb['n_real']} REAL test images: "
                  + _aurocs(tb["auroc"]), ""]
    budgets = [r["budget"] for r in tables[0]["rows"] if r["budget"] != "own"]
    mean = {b: float(np.mean([next(r["balanced"] for r in tb["rows"] if r["budget"] == b) for tb in tables])) for b in budgets}
    best = max(mean, key=mean.get)
    # the curve is flat near its top, where each step up in A costs real photos called FAKE: take the
    # smallest budget within TOLERANCE of the best
    chosen = min(b for b in budgets if mean[b] >= mean[best] - TOLERANCE)
    lines += ["Mean over the runs: " + ", ".join(f"A={b:.2f}: {v:.3f}" for b, v in mean.items())
              + f". Best: A = {best:.2f}; the smallest budget within {TOLERANCE} of it: **A = {chosen:.2f}**.", ""]
    return "\n".join(lines)


def _aurocs(per_family: dict[str, float]) -> str:
    """"sd3 0.624, kandinsky 0.730; mean 0.677" (the mean over families with test images)."""
    vals = [v for v in per_family.values() if v == v]
    return ", ".join(f"{f} {v:.3f}" for f, v in per_family.items()) + (f"; mean {np.mean(vals):.3f}" if vals else "")


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUROC of positive against negative scores (torchmetrics, as every other table here); NaN if one side is empty."""
    from torchmetrics.functional.classification import binary_auroc

    if not len(pos) or not len(neg):
        return float("nan")
    scores = torch.from_numpy(np.concatenate([pos, neg]).astype(np.float64))
    labels = torch.cat([torch.ones(len(pos), dtype=torch.long), torch.zeros(len(neg), dtype=torch.long)])
    return float(binary_auroc(scores, labels))


def real_table(run: Path, source_of: dict[str, str], sources: list[str], budgets=BUDGETS,
               family_of: dict[str, str] | None = None, families: list[str] = ()) -> dict:
    """A run with REAL sources left out (``data.leave_out=source:...``): per budget, the share of those
    sources' test images called FAKE (the unseen kind of real photo) and of the other REAL test images,
    and the FAKE test images' AUROC against each (and each of ``families``' AUROC against each)."""
    _, vp, vy = _read(run / "val_predictions.csv")
    names, tp, ty = _read(run / "predictions.csv")
    unseen = np.array([source_of.get(n) in sources for n in names]) & (ty == 0)
    other = (ty == 0) & ~unseen
    if not unseen.any():
        raise SystemExit(f"{run}: no REAL test image comes from {', '.join(sources)} (manifest source_name): "
                         f"check --real-sources against the run's data.leave_out")
    out = {"run": str(run), "n_unseen": int(unseen.sum()), "n_other": int(other.sum()), "n_fake": int((ty == 1).sum()),
           "auroc_unseen": auroc(tp[ty == 1], tp[unseen]), "auroc_other": auroc(tp[ty == 1], tp[other]), "rows": []}
    if families:  # a left-out family against REAL of the sources trained on: the generator alone is new
        fam = np.array([(family_of or {}).get(n, "?") for n in names])
        out["family_auroc_other"] = {f: auroc(tp[(fam == f) & (ty == 1)], tp[other]) for f in families}
        out["family_auroc_unseen"] = {f: auroc(tp[(fam == f) & (ty == 1)], tp[unseen]) for f in families}
    points = []
    if (run / "metrics.json").is_file():
        cal = json.loads((run / "metrics.json").read_text()).get("calibration") or {}
        if (own := cal.get("calibration", cal).get("threshold")) is not None:
            points.append(("own", own))
    points += [(a, threshold_at_fpr(torch.from_numpy(vp), torch.from_numpy(vy), a)) for a in budgets]
    for a, t in points:
        out["rows"].append({"budget": a, "threshold": t, "fpr_unseen": float((tp[unseen] >= t).mean()),
                            "fpr_other": float((tp[other] >= t).mean())})
    return out


def real_markdown(real: list[dict], tables: list[dict], sources: list[str]) -> str:
    """The unseen REAL sources' table, and balanced accuracy when both sides are unseen: per budget,
    (1 - the unseen sources' FPR + a left-out family's caught share) / 2, averaged over families and runs."""
    lines = [f"Unseen REAL sources ({', '.join(sources)}), test split:", ""]
    for rt in real:
        lines += [f"**{rt['run']}**: AUROC of the {rt['n_fake']} FAKE test images against the {rt['n_unseen']} unseen "
                  f"REAL images {rt['auroc_unseen']:.3f}, against the {rt['n_other']} other REAL images "
                  f"{rt['auroc_other']:.3f}", "",
                  "| budget A (val REAL FPR) | threshold | unseen REAL called FAKE | other REAL called FAKE |",
                  "|---|---|---|---|"]
        if "family_auroc_other" in rt:  # before the table: the ranking, then the thresholds
            lines[-2:-2] = [f"Left-out families' AUROC against the {rt['n_other']} other REAL images (only the generator "
                            f"is new): {_aurocs(rt['family_auroc_other'])}. Against the {rt['n_unseen']} unseen REAL "
                            f"images (both new): {_aurocs(rt['family_auroc_unseen'])}.", ""]
        for r in rt["rows"]:
            name = "own (best balanced on val)" if r["budget"] == "own" else f"{r['budget']:.2f}"
            lines.append(f"| {name} | {r['threshold']:.3f} | {r['fpr_unseen']:.3f} | {r['fpr_other']:.3f} |")
        lines.append("")
    if tables:
        budgets = [r["budget"] for r in real[0]["rows"] if r["budget"] != "own"]
        both = {}
        for b in budgets:
            fpr = np.mean([next(r["fpr_unseen"] for r in rt["rows"] if r["budget"] == b) for rt in real])
            caught = [c for tb in tables for r in tb["rows"] if r["budget"] == b for c in r["caught"].values()]
            both[b] = float(np.mean([(1 - fpr + c) / 2 for c in caught]))
        lines += ["Both sides unseen (the unseen REAL sources' FPR with the left-out families' caught share), "
                  "mean balanced accuracy: " + ", ".join(f"A={b:.2f}: {v:.3f}" for b, v in both.items()) + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders with val_predictions.csv and predictions.csv")
    ap.add_argument("--pool", type=Path, required=True, help="the pool (its MANIFEST.csv gives each file's family)")
    ap.add_argument("--families", required=True, help="the left-out families, comma-separated")
    ap.add_argument("--real-runs", nargs="+", type=Path, default=[],
                    help="runs with REAL sources left out (data.leave_out=source:...): their false positives per budget")
    ap.add_argument("--real-sources", default="", help="those REAL sources (manifest source_name), comma-separated")
    ap.add_argument("--out", type=Path, help="write the markdown here")
    a = ap.parse_args(argv)
    if bool(a.real_runs) != bool(a.real_sources):
        ap.error("--real-runs and --real-sources go together: the runs and the REAL sources they left out")
    with open(a.pool / "MANIFEST.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    family_of = {r["path"]: r["family"] for r in rows}
    families = [f for f in a.families.split(",") if f]
    tables = [run_table(r, family_of, families) for r in a.runs]
    md = markdown(tables, families)
    if a.real_runs:
        sources = [s for s in a.real_sources.split(",") if s]
        source_of = {r["path"]: r["source_name"] for r in rows}
        # the families' AUROC against seen / unseen REAL only for a run that left both out (one folder in both lists)
        md += "\n" + real_markdown([real_table(r, source_of, sources, family_of=family_of,
                                                families=families if r in a.runs else ()) for r in a.real_runs],
                                     tables, sources)
    print(md)
    if a.out:
        atomic_write(a.out, md.encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
