"""Per-family and per-content metrics with n and a 95% CI in every cell.

    from aidetect.breakdown import breakdown, breakdown_markdown
    table = breakdown(rows, logits, threshold)     # rows: the test split's manifest rows

Per family: that family's FAKE test images against ALL REAL test images (AUROC; detection rate =
share of its FAKE images at or above the threshold). Per content: photo FAKE vs photo REAL, art vs
art. Overall: false-positive rate on REAL at the threshold, and the detection rate at 1% and 5%
false positives (the threshold set on the REAL test scores themselves: an optimistic operating
point, labelled as such). AUROC CIs are a seeded percentile bootstrap (1,000 resamples, each class
resampled alone); rate CIs are Wilson intervals.

    python -m aidetect.breakdown --pool data/wider A/predictions.csv:0.36 B/predictions.csv:0.42
re-tables runs on the images all of them scored and ends with each later run's AUROC minus the first
run's, per family and content, with a bootstrap paired by image (the same images drawn for both): an
interval over images, not over training runs.
"""

import math
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc


# the fewest REAL test images of one content a content-matched matrix cell is drawn on: a pool's REAL art is
# scarce (18 in `wide`'s test split), and the cell's bootstrap CI shows how little 18 say
MIN_REAL_CONTENT = 10


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def auroc_ci(fake: np.ndarray, real: np.ndarray, n_boot: int = 1000, seed: int = 0):
    """(AUROC, low, high): FAKE scores against REAL scores."""
    if len(fake) == 0 or len(real) == 0:
        return float("nan"), float("nan"), float("nan")

    def auc(f, r):  # Mann-Whitney U with ties counted half: the AUROC torchmetrics computes
        return float(_auc_many(np.asarray(f, dtype=float)[None], np.asarray(r, dtype=float)[None])[0])

    point = auc(fake, real)
    if len(fake) < 2 or len(real) < 2:  # a bootstrap of one image says nothing
        return float(point), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boots = [auc(rng.choice(fake, len(fake)), rng.choice(real, len(real))) for _ in range(n_boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(point), float(lo), float(hi)


def _cell(fake: np.ndarray, real: np.ndarray, threshold: float) -> dict:
    auc, lo, hi = auroc_ci(fake, real)
    k = int((fake >= threshold).sum())
    dlo, dhi = wilson(k, len(fake))
    return {"n_fake": len(fake), "n_real": len(real), "auroc": auc, "auroc_ci": [lo, hi],
            "detection": k / len(fake) if len(fake) else float("nan"), "detection_ci": [dlo, dhi]}


def breakdown(rows: list[dict], logits: torch.Tensor, threshold: float = 0.5, temperature: float = 1.0) -> dict:
    """rows[i] (family, content, y 0/1) scored by logits[i]; threshold on P(FAKE)."""
    p = (logits.float() / temperature).sigmoid().numpy()
    y = np.array([r["y"] for r in rows])
    real = p[y == 0]
    out = {"threshold": threshold, "n": len(rows)}
    allfake = p[y == 1]
    overall = _cell(allfake, real, threshold)
    overall["auroc_check"] = float(binary_auroc(torch.from_numpy(p), torch.from_numpy(y))) if len(set(y)) > 1 else None
    fp = int((real >= threshold).sum())
    overall["fpr"], overall["fpr_ci"] = (fp / len(real) if len(real) else float("nan")), list(wilson(fp, len(real)))
    for rate in (0.01, 0.05):
        if len(real):
            t = float(np.quantile(real, 1 - rate, method="higher"))
            k = int((allfake > t).sum())
            overall[f"detection_at_{int(rate * 100)}pct_fpr"] = k / len(allfake) if len(allfake) else float("nan")
            overall[f"detection_at_{int(rate * 100)}pct_fpr_ci"] = list(wilson(k, len(allfake)))
    out["overall"] = overall
    fams = sorted({r["family"] for r in rows if r["y"] == 1})
    fam_of = np.array([r["family"] for r in rows])
    out["family"] = {f: _cell(p[(y == 1) & (fam_of == f)], real, threshold) for f in fams}
    out["content"], out["family_content"] = {}, {}
    for c in sorted({r["content"] for r in rows}):
        is_c = np.array([r["content"] == c for r in rows])
        if (is_c & (y == 1)).any() and (is_c & (y == 0)).any():
            out["content"][c] = _cell(p[is_c & (y == 1)], p[is_c & (y == 0)], threshold)
            for f in fams:  # content-matched: a family's art against REAL art, its photos against REAL photos
                if (is_c & (y == 1) & (fam_of == f)).any():
                    out["family_content"].setdefault(f, {})[c] = _cell(p[is_c & (y == 1) & (fam_of == f)],
                                                                        p[is_c & (y == 0)], threshold)
    src_of = np.array([r["source_name"] for r in rows])
    out["fake_source"] = {s: _cell(p[(y == 1) & (src_of == s)], real, threshold)  # finer than the family: a version,
                          for s in sorted(set(src_of[y == 1]))}                  # a gallery, a way of publishing
    srcs = sorted({r["source_name"] for r in rows if r["y"] == 0})
    out["real_source_fpr"] = {}
    for s in srcs:
        v = p[(y == 0) & (src_of == s)]
        k = int((v >= threshold).sum())
        out["real_source_fpr"][s] = {"n": len(v), "fpr": k / len(v), "fpr_ci": list(wilson(k, len(v)))}
    return out


def _num(v) -> str:
    return "n/a" if v != v else f"{v:.3f}"


def _fmt(v, ci):
    if v != v:  # nan
        return "n/a"
    if ci[0] != ci[0]:
        return f"{v:.3f} [n too small]"
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def breakdown_markdown(tables: dict[str, dict]) -> str:
    """One markdown table per scoring (e.g. as published, format-neutral)."""
    lines = []
    for title, b in tables.items():
        o = b["overall"]
        lines += [f"### {title} (threshold {b['threshold']:.3f} on P(FAKE))", "",
                  "| FAKE set vs REAL | n FAKE | n REAL | AUROC [95% CI] | detection at threshold [95% CI] |",
                  "|---|---|---|---|---|",
                  f"| all | {o['n_fake']} | {o['n_real']} | {_fmt(o['auroc'], o['auroc_ci'])} | "
                  f"{_fmt(o['detection'], o['detection_ci'])} |"]
        for f, c in b["family"].items():
            lines.append(f"| family {f} | {c['n_fake']} | {c['n_real']} | {_fmt(c['auroc'], c['auroc_ci'])} | "
                         f"{_fmt(c['detection'], c['detection_ci'])} |")
        for f, c in b["content"].items():
            lines.append(f"| content {f} (vs REAL {f}) | {c['n_fake']} | {c['n_real']} | "
                         f"{_fmt(c['auroc'], c['auroc_ci'])} | {_fmt(c['detection'], c['detection_ci'])} |")
        lines += ["", f"False-positive rate on REAL at the threshold: {_fmt(o['fpr'], o['fpr_ci'])}; detection at 1% / "
                  f"5% false positives (thresholds from the REAL test scores): "
                  f"{_fmt(o.get('detection_at_1pct_fpr', float('nan')), o.get('detection_at_1pct_fpr_ci', [0, 0]))} / "
                  f"{_fmt(o.get('detection_at_5pct_fpr', float('nan')), o.get('detection_at_5pct_fpr_ci', [0, 0]))}.", ""]
        fc = b.get("family_content") or {}
        n_real = {c: v["n_real"] for cs in fc.values() for c, v in cs.items()}  # one REAL set per content
        if n_real:
            lines += ["Content-matched, per family (its FAKE images of a content against the REAL images of that "
                      "content): AUROC [95% CI] (n FAKE).", "",
                      "| family | " + " | ".join(f"vs REAL {c} (n={n_real[c]})" for c in sorted(n_real)) + " |",
                      "|---|" + "---|" * len(n_real)]
            for f in sorted(fc):
                lines.append(f"| {f} | " + " | ".join(
                    f"{_fmt(fc[f][c]['auroc'], fc[f][c]['auroc_ci'])} ({fc[f][c]['n_fake']})" if c in fc[f] else "–"
                    for c in sorted(n_real)) + " |")
            lines.append("")
        if b.get("fake_source"):
            lines.append("AUROC / detection at the threshold per FAKE source (against all REAL test images; under 10 "
                         "images a cell says little): " + ", ".join(
                f"{s} {_num(v['auroc'])} / {_num(v['detection'])} (n={v['n_fake']})" for s, v in b["fake_source"].items()) + ".")
            lines.append("")
        if b.get("real_source_fpr"):
            lines.append("False positives per REAL source: " + ", ".join(
                f"{s} {v['fpr']:.3f} (n={v['n']})" for s, v in b["real_source_fpr"].items()) + ".")
            lines.append("")
    return "\n".join(lines)


def score_breakdown(model, datamodule, out, loggers=(), known: dict | None = None,
                    threshold: float | None = None) -> dict | None:
    """For a datamodule with manifest rows (data=modern, data=flux): the test split's breakdown as
    published and as format-neutral copies, written to ``out/breakdown.md`` and logged to TensorBoard.
    ``known``: raw logits already computed for a split (``{"test": ...}``), not scored again;
    ``threshold``: on P(FAKE), default the model's."""
    from pathlib import Path

    from aidetect.io import atomic_write
    from aidetect.module import logits_of

    rows = getattr(datamodule, "rows", {}).get("test")
    if not rows:
        return None
    thr = float(model.hparams.threshold if threshold is None else threshold)
    temp = float(model.hparams.temperature)
    tables = {}
    for key, title in (("test", "as published"), ("test_neutral", "format-neutral copies (short side "
                                                                   f"{getattr(datamodule, 'neutral_side', '?')}, JPEG q90)")):
        if key in datamodule.splits:
            logits = (known or {}).get(key)
            if logits is None:
                logits = logits_of(model, datamodule.splits[key].images, batch_size=32)
            tables[title] = breakdown(rows, logits, thr, temp)
            tables[title]["key"] = key
    atomic_write(Path(out) / "breakdown.md", breakdown_markdown(tables).encode())
    for lg in loggers:
        exp = getattr(lg, "experiment", None)
        if exp is not None and hasattr(exp, "add_scalar"):
            for title, b in tables.items():
                for fam, c in b["family"].items():
                    if c["auroc"] == c["auroc"]:
                        exp.add_scalar(f"{b['key']}/auroc_family_{fam}", c["auroc"])
                for con, c in b["content"].items():
                    if c["auroc"] == c["auroc"]:
                        exp.add_scalar(f"{b['key']}/auroc_content_{con}", c["auroc"])
    return {b.pop("key"): b for b in tables.values()}


def _matrix_cell(c: dict | None) -> str:
    if not c or c["auroc"] != c["auroc"]:
        return "–"
    return f"{c['auroc']:.3f} [{c['ci'][0]:.2f}, {c['ci'][1]:.2f}] (n={c['n_fake']})"


def matrix_markdown(m: dict) -> str:
    """The cross-generator table: a row per training family, then the leave-one-family-out row."""
    fams = m["test_families"]
    lines = ["| train on \\ test on | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
    for a, cells in m["cells"].items():
        lines.append(f"| {a} | " + " | ".join(_matrix_cell(cells.get(b)) for b in fams) + " |")
    if m["lofo"]:
        lines.append("| **all others (leave-one-family-out)** | "
                     + " | ".join(_matrix_cell(m["lofo"].get(b)) for b in fams) + " |")
        vals = [m["lofo"][b]["auroc"] for b in fams if b in m["lofo"]]
        lines += ["", f"Leave-one-family-out mean AUROC: {np.mean(vals):.3f} over {len(vals)} families."]
    n_real = {c["n_real"] for cells in [*m["cells"].values(), m["lofo"]] for c in cells.values()}
    lines += ["", "Each cell: that family's FAKE test images against the REAL test images "
              f"(n REAL = {', '.join(map(str, sorted(n_real)))}); AUROC [bootstrap 95% CI] (n FAKE)."]
    if m.get("lofo_content"):
        lines += ["", "Leave-one-family-out, content-matched: the left-out family's FAKE images of one content against "
                  "the REAL test images of the same content.", "",
                  "| content \\ left out | " + " | ".join(fams) + " | mean |", "|---|" + "---|" * (len(fams) + 1)]
        for c, cells in m["lofo_content"].items():
            n_r = sorted({v["n_real"] for v in cells.values()})
            vals = [v["auroc"] for v in cells.values() if v["auroc"] == v["auroc"]]
            lines.append(f"| {c} (n REAL = {', '.join(map(str, n_r))}) | "
                         + " | ".join(_matrix_cell(cells.get(b)) for b in fams)
                         + (f" | {np.mean(vals):.3f} over {len(vals)} |" if vals else " | – |"))
    return "\n".join(lines)


def matrix_from_runs(runs: list[tuple], key: str = "test", min_test: int = 30) -> dict | None:
    """The cross-generator table from training runs on manifest data, each ``(leave_out, breakdown)``
    with ``leave_out`` the run's ``data.leave_out`` and ``breakdown`` its metrics.json block:
    a run leaving out one family (``family:X``) is X's leave-one-family-out cell; a run leaving out
    every family but A is the row "trained on A" (the left-out families' images are all in its test
    split); a run leaving nothing out is the row "all". ``key``: test (as published) or test_neutral."""
    cells, lofo, lofo_content, fams = {}, {}, {}, set()

    def cell(c):
        return {"auroc": c["auroc"], "ci": c["auroc_ci"], "n_fake": c["n_fake"], "n_real": c["n_real"]}

    for leave_out, b in runs:
        if not b or key not in b:
            continue
        fam = {f: c for f, c in b[key]["family"].items() if c["n_fake"] >= min_test}
        fams |= set(fam)
        out = [leave_out] if isinstance(leave_out, str) else list(leave_out or [])
        left = {v.split(":", 1)[1] for v in out if str(v).startswith("family:")}
        if len(out) != len(left):
            continue  # a REAL source left out: not a family row
        trained = set(b[key]["family"]) - left
        if not left:
            cells["all"] = {f: cell(c) for f, c in fam.items()}
        elif len(left) == 1 and next(iter(left)) in fam:
            f = next(iter(left))
            lofo[f] = cell(fam[f])
            for c, v in (b[key].get("family_content") or {}).get(f, {}).items():  # older runs: none
                if v["n_fake"] >= min_test and v["n_real"] >= MIN_REAL_CONTENT:
                    lofo_content.setdefault(c, {})[f] = cell(v)
        if len(trained) == 1:
            cells[next(iter(trained))] = {f: cell(c) for f, c in fam.items()}
    if not fams or (not cells and not lofo):  # no family with enough FAKE test images: no table
        return None
    return {"train_families": sorted(cells), "test_families": sorted(fams),
            "cells": dict(sorted(cells.items())), "lofo": dict(sorted(lofo.items())),
            "lofo_content": {c: dict(sorted(v.items())) for c, v in sorted(lofo_content.items())}}


def heatmap(m: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aidetect.io import save_figure

    nan = float("nan")
    fams = m["test_families"]
    per_content = m.get("lofo_content") or {}
    rows = list(m["cells"]) + (["leave-out"] if m["lofo"] else []) + [f"leave-out, {c} vs REAL {c}" for c in per_content]
    data = [[m["cells"][a].get(b, {}).get("auroc", nan) for b in fams] for a in m["cells"]]
    if m["lofo"]:
        data.append([m["lofo"].get(b, {}).get("auroc", nan) for b in fams])
    data += [[cells.get(b, {}).get("auroc", nan) for b in fams] for cells in per_content.values()]
    fig, ax = plt.subplots(figsize=(0.7 * len(fams) + 3, 0.55 * len(rows) + 2))  # square cells, little margin
    im = ax.imshow(np.array(data, dtype=float), vmin=0.5, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(fams)), fams, rotation=45, ha="right")  # family names never run into each other
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("test family (FAKE test images vs REAL test images)")
    ax.set_ylabel("trained on / left out")
    for i, row in enumerate(data):
        for j, v in enumerate(row):
            if v == v:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.8 else "k", fontsize=8)
    fig.colorbar(im, ax=ax, label="AUROC", shrink=0.8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def write_matrices(out: Path, runs: list[tuple]) -> dict | None:
    """matrix.md (as published and format-neutral), matrix.png and matrix_neutral.png from the runs
    of a leave-family-out sweep (``matrix_from_runs``); None, writing nothing, if no run left a family out."""
    from aidetect.io import atomic_write

    got = {key: matrix_from_runs(runs, key) for key in ("test", "test_neutral")}
    if not any(m and (m["lofo"] or set(m["cells"]) - {"all"}) for m in got.values()):
        return None
    text = ["# Cross-generator table of the fine-tuned detector", ""]
    for key, title, png in (("test", "as published", "matrix.png"), ("test_neutral", "format-neutral copies", "matrix_neutral.png")):
        if got[key]:
            text += [f"## {title}", "", matrix_markdown(got[key]), "", f"![{title}]({png})", ""]
            heatmap(got[key], out / png, f"fine-tuned detector, {title}")
    atomic_write(out / "matrix.md", "\n".join(text).encode())
    return got


def _common_predictions(pool: Path, runs: list[tuple[Path, float]]):
    """The pool's manifest rows by path, each run's P(FAKE) by path, and the paths every run scored (in the
    last run's order, which seeds the bootstrap draws); a scored path the manifest lacks is an error naming it (the wrong --pool)."""
    import csv

    man = {r["path"]: r for r in csv.DictReader(open(Path(pool) / "MANIFEST.csv", newline=""))}
    preds = [{r["path"]: float(r["p_fake"]) for r in csv.DictReader(open(f, newline=""))} for f, _ in runs]
    common = [p for p in preds[-1] if all(p in q for q in preds)]
    missing = [p for p in common if p not in man]
    if missing:
        from aidetect.config import ConfigError

        raise ConfigError(f"breakdown: {len(missing)} scored images are not in {Path(pool) / 'MANIFEST.csv'} "
                          f"(first: {missing[0]}); give the pool the runs scored as --pool")
    return man, preds, common


def from_predictions(pool: Path, runs: list[tuple[Path, float]]) -> dict:
    """The breakdown of several runs' predictions.csv (train.py, eval.py) on the images all of them scored,
    rows labelled from the pool's MANIFEST.csv: a paired comparison of detectors on the same test images.
    ``runs``: (predictions.csv, threshold on P(FAKE)) each; the file's p_fake is already calibrated."""
    man, preds, common = _common_predictions(pool, runs)
    rows = [{"family": man[p]["family"], "content": man[p]["content"], "source_name": man[p]["source_name"],
             "y": int(man[p]["label"] == "FAKE")} for p in common]
    out = {}
    for (f, thr), q in zip(runs, preds):
        p = torch.tensor([min(max(q[k], 1e-7), 1 - 1e-7) for k in common], dtype=torch.float64)
        out[str(f)] = breakdown(rows, torch.log(p / (1 - p)), threshold=thr)
    return out


def _auc_many(f: np.ndarray, r: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``f`` (FAKE scores) against the same row of ``r`` (REAL scores), ties half."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([f, r], 1), axis=1)
    nf, nr = f.shape[1], r.shape[1]
    return (ranks[:, :nf].sum(1) - nf * (nf + 1) / 2) / (nf * nr)


def paired_auroc_difference(fake_a, real_a, fake_b, real_b, n_boot: int = 1000, seed: int = 0):
    """(AUROC_b - AUROC_a, low, high): two detectors' scores of the SAME images (row i of fake_a and
    fake_b is one image), the 95% CI from a bootstrap that draws the same images for both detectors
    (each class resampled alone). Pairing removes the images' own difficulty from the interval, so it
    is much narrower than the two detectors' separate CIs suggest."""
    fa, ra, fb, rb = (np.asarray(v, dtype=float) for v in (fake_a, real_a, fake_b, real_b))
    if fa.shape != fb.shape or ra.shape != rb.shape:
        raise ValueError("paired_auroc_difference: both detectors must score the same images")
    if len(fa) == 0 or len(ra) == 0:
        return float("nan"), float("nan"), float("nan")
    point = float(_auc_many(fb[None], rb[None])[0] - _auc_many(fa[None], ra[None])[0])
    if len(fa) < 2 or len(ra) < 2 or n_boot < 1:
        return point, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, n_boot, 100):  # in chunks: 100 resamples of a few thousand images at a time
        k = min(100, n_boot - start)
        i, j = rng.integers(0, len(fa), (k, len(fa))), rng.integers(0, len(ra), (k, len(ra)))
        diffs.append(_auc_many(fb[i], rb[j]) - _auc_many(fa[i], ra[j]))
    lo, hi = np.percentile(np.concatenate(diffs), [2.5, 97.5])
    return point, float(lo), float(hi)


def paired_differences(pool: Path, runs: list[tuple[Path, float]]) -> dict:
    """Per FAKE set (all, each family, each content against REAL of that content), each run's AUROC minus
    the first run's, with a paired bootstrap CI, on the images every run scored."""
    man, preds, common = _common_predictions(pool, runs)
    y = np.array([man[p]["label"] == "FAKE" for p in common])
    fam = np.array([man[p]["family"] for p in common])
    con = np.array([man[p]["content"] for p in common])
    sets = {"all": (y, ~y)}
    sets.update({f"family {f}": (y & (fam == f), ~y) for f in sorted(set(fam[y]))})
    sets.update({f"content {c} (vs REAL {c})": (y & (con == c), ~y & (con == c))
                 for c in sorted(set(con[y]) & set(con[~y]))})
    scores = [np.array([q[p] for p in common]) for q in preds]
    out = {}
    for (f, _), s in zip(runs[1:], scores[1:]):
        out[str(f)] = {name: {"n_fake": int(fm.sum()), "n_real": int(rm.sum()),
                              "diff": paired_auroc_difference(scores[0][fm], scores[0][rm], s[fm], s[rm])}
                       for name, (fm, rm) in sets.items()}
    return out


def paired_markdown(first: str, diffs: dict) -> str:
    lines = []
    for run, table in diffs.items():
        lines += [f"### {run} minus {first}: AUROC difference [paired bootstrap 95% CI]", "",
                  "| FAKE set vs REAL | n FAKE | n REAL | AUROC difference [95% CI] |", "|---|---|---|---|"]
        for name, c in table.items():
            d, lo, hi = c["diff"]
            f = lambda v: f"{v + 0.0:+.3f}".replace("-0.000", "+0.000")  # a bound that rounds to 0 prints as +0.000
            cell = "n/a" if d != d else (f"{f(d)} [n too small]" if lo != lo else f"{f(d)} [{f(lo)}, {f(hi)}]")
            lines.append(f"| {name} | {c['n_fake']} | {c['n_real']} | {cell} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    """python -m aidetect.breakdown --pool data/broad RUN_A/predictions.csv:0.337 RUN_B/predictions.csv:0.470
    (with two or more runs, a last table per later run: its AUROC minus the first run's, paired by image)"""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--pool", required=True, help="the pool (its MANIFEST.csv labels the rows)")
    ap.add_argument("runs", nargs="+", help="predictions.csv:threshold, one per detector")
    ap.add_argument("--out", help="write the markdown here")
    a = ap.parse_args(argv)
    runs = [(Path(r.rsplit(":", 1)[0]), float(r.rsplit(":", 1)[1])) for r in a.runs]
    text = breakdown_markdown(from_predictions(Path(a.pool), runs))
    if len(runs) > 1:
        text += "\n" + paired_markdown(str(runs[0][0]), paired_differences(Path(a.pool), runs))
    if a.out:
        from aidetect.io import atomic_write

        atomic_write(Path(a.out), text.encode())
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
