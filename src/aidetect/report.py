"""Results tables of a sweep: one row per setting, statistics over seeds, a plot.

    aidetect aggregate outputs/cifake_seed/multirun/<time>

Runs by itself at the end of every `python train.py -m ...` (a Hydra callback), writing
results.csv, results.md and results.png into the sweep folder. A job's setting is its
view as trained (name and its own settings, read from metrics.json) plus the other
overrides that vary, without the seed; jobs are paired by seed to compare each view with
the `none` baseline (paired t-test). Jobs without metrics.json are listed, not dropped.
"""

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback

from aidetect.io import atomic_write, save_figure

METRICS = ("acc", "auroc", "f1")
BASELINE = "none"  # the view every other one is compared with
HALF_WIDTH = 0.05  # the paired 95% CI half-width a comparison should reach; each row says how many seeds would
RUN_KEYS = ("seed", "ckpt_path")  # identify a run within a setting (eval sweeps vary ckpt_path)


def resolved_view(metrics: dict) -> dict:
    """The view as trained, from metrics.json. Files older than schema 1 recorded a
    saturation factor for every view: keep only the settings the view takes."""
    view = dict(metrics["view"])
    if "schema_version" not in metrics:
        from aidetect.views import VIEWS, view_params

        if view["name"] in VIEWS:
            keep = set(view_params(view["name"]))
            view = {k: v for k, v in view.items() if k == "name" or k in keep}
    return view


def load_jobs(sweep: Path) -> tuple[list[dict], list[dict]]:
    done, broken = [], []
    for d in sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: (len(p.name), p.name)):
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((d / ".hydra/overrides.yaml").read_text()) or []
                         if "=" in o)
        cfg = yaml.safe_load((d / ".hydra/config.yaml").read_text())
        job = {"dir": d.name, "overrides": overrides, "seed": cfg["seed"],
               "leave_out": (cfg.get("data") or {}).get("leave_out")}
        if (d / "metrics.json").is_file():
            job["metrics"] = json.loads((d / "metrics.json").read_text())
            if "acc" not in (job["metrics"].get("test") or {}):  # trained with test=false: nothing to compare
                broken.append({**job, "reason": "no test metrics (test=false)"})
                continue
            job["seed"] = job["metrics"].get("seed", job["seed"])
            job["view"] = resolved_view(job["metrics"])  # as trained: name and its own settings
            done.append(job)
        else:
            broken.append(job)
    return done, broken


def mean_ci(values: list[float], bounds=(-math.inf, math.inf)) -> dict:
    """Mean, sample std and Student-t 95% interval (clipped to the metric's range)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    half = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n) if n > 1 else float("nan")
    lo, hi = (max(bounds[0], mean - half), min(bounds[1], mean + half)) if n > 1 else (math.nan, math.nan)
    return {"mean": mean, "std": std, "ci_low": lo, "ci_high": hi, "n": n}


def paired(a: dict[int, float], b: dict[int, float]) -> dict | None:
    """a - b over the seeds both have: mean difference, its 95% CI and the t-test p-value."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    ci = mean_ci(diffs)
    p = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue if ci["std"] > 0 else float("nan")
    return {"diff": ci["mean"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"], "p": float(p), "n": len(seeds),
            "half_width": ci["mean"] - ci["ci_low"], "seeds_needed": seeds_needed(ci["std"])}


def seeds_needed(std: float, half_width: float = HALF_WIDTH, most: int = 10_000) -> int | None:
    """The fewest seeds whose paired 95% CI half-width, t(n-1) * std / sqrt(n), is at most
    ``half_width`` if the differences keep the spread seen so far (a planning estimate, not a
    promise). None: no spread measured yet (fewer than two seeds), or more than ``most``."""
    from scipy import stats

    if not 0 <= std < math.inf:  # NaN (one seed) or infinite
        return None
    n = max(2, math.ceil((1.96 * std / half_width) ** 2))  # the normal approximation never overshoots t
    while n <= most and stats.t.ppf(0.975, n - 1) * std / math.sqrt(n) > half_width:
        n += 1
    return n if n <= most else None


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down), in the input order; NaN stays NaN."""
    idx = sorted((i for i, p in enumerate(pvalues) if p == p), key=lambda i: pvalues[i])
    out, running = [float("nan")] * len(pvalues), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (len(idx) - rank) * pvalues[i]))
        out[i] = running
    return out


def _order(v) -> tuple:
    """Sort key for a setting of any type: missing first, then numbers by value, then text."""
    if v is None:
        return (0, 0.0, "")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (1, float(v), "")
    return (2, 0.0, str(v))


def view_key(view: dict) -> tuple:
    return (view["name"], *sorted((k, v) for k, v in view.items() if k != "name"))


def setting_of(job: dict, varying: list[str]) -> tuple:
    other = tuple((k, job["overrides"].get(k)) for k in varying)
    return (view_key(job["view"]), other)


def baseline_spec(baseline: str, varying: list[str], jobs: list[dict]) -> dict | None:
    """``--baseline``: a view name (None here), or overrides that name the baseline setting,
    ``key=value[,key=value]`` (e.g. ``model=lite0_s16,model.net.pretrained=true``), each key one that
    varies in the sweep. Values match as YAML does (``true`` names Hydra's ``True``); the spec returned
    holds each value as the jobs' overrides spell it. Refused, naming what there is, when no job has it."""
    from aidetect.config import ConfigError

    if "=" not in baseline:
        return None
    parts = [part.split("=", 1) for part in baseline.split(",")]
    if any(len(p) != 2 for p in parts):
        raise ConfigError(f"--baseline {baseline}: give a view name (e.g. none) or key=value pairs joined by commas")
    spec = dict(parts)
    if bad := sorted(set(spec) - set(varying)):
        raise ConfigError(f"--baseline {baseline}: {', '.join(bad)} does not vary in this sweep; "
                          f"name a view (e.g. none) or overrides among: {', '.join(varying) or '(none vary)'}")
    for k, v in spec.items():
        spelled = sorted({j["overrides"][k] for j in jobs if k in j["overrides"]})
        same = [raw for raw in spelled if yaml.safe_load(raw) == yaml.safe_load(v)]
        if not same:
            raise ConfigError(f"--baseline {baseline}: no job has {k}={v}; the sweep has {k}={', '.join(spelled)}")
        spec[k] = same[0]
    if not any(all(j["overrides"].get(k) == v for k, v in spec.items()) for j in jobs):
        raise ConfigError(f"--baseline {baseline}: no job has all of these overrides together")
    return spec


def aggregate(sweep: str | Path, baseline: str = BASELINE) -> dict:
    """Rows keyed on each job's resolved view settings (whatever they are) and the other
    overrides that vary; each row is compared over shared seeds with the ``baseline``: the view of
    that name with the same other overrides, or (``key=value,...``) the row with those overrides and
    the same view and remaining overrides."""
    sweep = Path(sweep)
    done, broken = load_jobs(sweep)
    all_jobs = done + broken
    keys = {k for j in all_jobs for k in j["overrides"]
            if k not in RUN_KEYS and k != "aug" and not k.startswith("aug.")}  # the view is keyed as trained
    varying = sorted(k for k in keys if len({j["overrides"].get(k) for j in all_jobs}) > 1)
    spec = baseline_spec(baseline, varying, done)

    def base_key(vkey: tuple, other: tuple) -> tuple:
        if spec is None:
            return ((baseline,), other)
        return (vkey, tuple((k, spec.get(k, v)) for k, v in other))
    groups: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for j in done:
        groups[setting_of(j, varying)].setdefault(j["seed"], j)  # a repeated (setting, seed) counts once
    view_settings = sorted({k for j in done for k in j["view"] if k != "name"})
    rows = []
    for (vkey, other), by_seed in groups.items():
        view = dict(vkey[1:], name=vkey[0])
        row = {"view": view["name"], **{k: view.get(k) for k in view_settings}, **dict(other),
               "seeds": sorted(by_seed)}
        for m in METRICS:
            row[m] = mean_ci([j["metrics"]["test"][m] for j in by_seed.values()], bounds=(0.0, 1.0))
        curves = [j["metrics"].get("val_acc_per_epoch") or [] for j in by_seed.values()]  # none for eval runs
        row["val_acc_per_epoch"] = []  # None where no seed validated that epoch (check_val_every_n_epoch > 1)
        for e in range(min(map(len, curves))):
            seen = [c[e] for c in curves if c[e] is not None]
            row["val_acc_per_epoch"].append(sum(seen) / len(seen) if seen else None)
        is_base = base_key(vkey, other) == (vkey, other)
        base = groups.get(base_key(vkey, other))
        row["vs_baseline"] = None if base is None or is_base else paired(
            {s: j["metrics"]["test"]["acc"] for s, j in by_seed.items()},
            {s: j["metrics"]["test"]["acc"] for s, j in base.items()})
        for kind in ("content", "family"):
            row[f"per_{kind}"] = per_group(by_seed, None if is_base else base, kind)
        rows.append(row)
    rows.sort(key=lambda r: (tuple(str(r.get(k)) for k in varying), r["view"] != baseline, r["view"],
                             tuple(_order(r.get(k)) for k in view_settings)))
    compared = [r for r in rows if r["vs_baseline"]]  # Holm over every comparison with the baseline
    for r, p in zip(compared, holm([r["vs_baseline"]["p"] for r in compared])):
        r["vs_baseline"]["p_holm"] = p
    result = {"sweep": str(sweep), "varying": varying, "view_settings": view_settings, "baseline": baseline,
              "rows": rows, "failed": [{"dir": j["dir"], "overrides": j["overrides"],
                                        **({"reason": j["reason"]} if "reason" in j else {})} for j in broken]}
    write_csv(sweep / "results.csv", result)
    atomic_write(sweep / "results.md", markdown(result).encode())
    plot(sweep / "results.png", result)
    # a sweep over data.leave_out on manifest data: the cross-generator table and heatmaps too
    from aidetect.breakdown import write_matrices  # here: `aidetect --help` imports report.py, never torch

    result["matrix"] = write_matrices(sweep, [(j["leave_out"], j["metrics"].get("breakdown")) for j in done])
    return result


def per_group(by_seed: dict[int, dict], base: dict[int, dict] | None, kind: str = "content") -> dict:
    """Test AUROC overall ("all") and per ``kind`` (content: photo, art, ...; family: flux, sdxl, ... with the
    REAL test images) on manifest data, as published and on the format-neutral copies:
    {split: {group: {"mean", "n_seeds", "vs_baseline"}}}, the difference paired by seed. Empty for data
    without a breakdown (CIFAKE, folders) and for a single family (the same as "all")."""
    def auroc(job, split, group):
        table = (job["metrics"].get("breakdown") or {}).get(split) or {}
        cell = table.get("overall") if group == "all" else (table.get(kind) or {}).get(group)
        v = None if cell is None else cell.get("auroc")
        return v if v is not None and v == v else None  # no AUROC (one class only) or NaN: not a value

    out = {}
    for split in ("test", "test_neutral"):
        groups = sorted({g for j in by_seed.values()
                         for g in (((j["metrics"].get("breakdown") or {}).get(split) or {}).get(kind) or {})})
        if kind == "family" and len(groups) < 2:
            continue
        for g in (["all", *groups] if groups else []):
            mine = {s: v for s, j in by_seed.items() if (v := auroc(j, split, g)) is not None}
            theirs = {s: v for s, j in (base or {}).items() if (v := auroc(j, split, g)) is not None}
            if mine:
                out.setdefault(split, {})[g] = {
                    "mean": sum(mine.values()) / len(mine), "n_seeds": len(mine),
                    "vs_baseline": paired(mine, theirs) if base is not None else None}
    return out


def group_markdown(result: dict, kind: str = "content") -> list[str]:
    rows = [r for r in result["rows"] if r.get(f"per_{kind}")]
    vs, var = result["view_settings"], result["varying"]
    lines = []
    for split, title in (("test", "as published"), ("test_neutral", "format-neutral copies")):
        groups = sorted({g for r in rows for g in r[f"per_{kind}"].get(split, {})}, key=lambda g: (g != "all", g))
        if not groups:
            continue
        lines += ["", f"Test AUROC overall and per {kind}, {title} (mean over seeds; paired difference with "
                      f"{result['baseline']} [95% CI] where there are 2+ shared seeds):", "",
                  "| view | " + ("settings | " if vs else "") + "".join(f"{k} | " for k in var) + " | ".join(groups) + " |",
                  "|---|" + ("---|" if vs else "") + "---|" * len(var) + "---|" * len(groups)]
        for r in rows:
            cells = []
            for g in groups:
                cell = r[f"per_{kind}"].get(split, {}).get(g)
                v = None if cell is None else cell["vs_baseline"]
                cells.append("" if cell is None else f"{cell['mean']:.4f}" + (
                    "" if v is None else f" ({v['diff']:+.4f} [{v['ci_low']:+.4f}, {v['ci_high']:+.4f}])"))
            lines.append(f"| {r['view']} | " + (f"{settings_text(r, vs)} | " if vs else "")
                         + "".join(f"{r.get(k)} | " for k in var) + " | ".join(cells) + " |")
    return lines


def _fmt(v) -> str:
    return "" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def write_csv(path: Path, result: dict) -> None:
    import io

    base = result["baseline"]
    fields = ["view", *result["view_settings"], *result["varying"], "n", "seeds"]
    for m in METRICS:
        fields += [f"test_{m}_mean", f"test_{m}_std", f"test_{m}_ci_low", f"test_{m}_ci_high"]
    fields += [f"acc_diff_vs_{base}", "acc_diff_ci_low", "acc_diff_ci_high", "acc_diff_p", "acc_diff_p_holm",
               "acc_diff_half_width", f"seeds_for_half_width_{HALF_WIDTH:g}"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fields)
    w.writeheader()
    for r in result["rows"]:
        out = {k: r.get(k) for k in ["view", *result["view_settings"], *result["varying"]]}
        out.update(n=r["acc"]["n"], seeds=" ".join(map(str, r["seeds"])))
        for m in METRICS:
            for s in ("mean", "std", "ci_low", "ci_high"):
                out[f"test_{m}_{s}"] = round(r[m][s], 6)
        if r["vs_baseline"]:
            v = r["vs_baseline"]
            out.update({f"acc_diff_vs_{base}": round(v["diff"], 6), "acc_diff_ci_low": round(v["ci_low"], 6),
                        "acc_diff_ci_high": round(v["ci_high"], 6), "acc_diff_p": round(v["p"], 6),
                        "acc_diff_p_holm": round(v["p_holm"], 6), "acc_diff_half_width": round(v["half_width"], 6),
                        f"seeds_for_half_width_{HALF_WIDTH:g}": v["seeds_needed"]})
        w.writerow(out)
    atomic_write(path, buf.getvalue().encode())


def mean_std_ci(c: dict) -> str:
    """"0.9400 ± 0.0030 [0.9326, 0.9474]": mean ± std over seeds [95% CI], or the mean alone for one seed."""
    if c["n"] < 2:
        return f"{c['mean']:.4f}"
    return f"{c['mean']:.4f} ± {c['std']:.4f} [{c['ci_low']:.4f}, {c['ci_high']:.4f}]"


def settings_text(r: dict, keys) -> str:
    return ", ".join(f"{k}={_fmt(r[k])}" for k in keys if r.get(k) is not None)


def markdown(result: dict) -> str:
    var, vs = result["varying"], result["view_settings"]
    head = ["view", *(["settings"] if vs else []), *var, "n", "test acc (mean ± std [95% CI])", "test AUROC",
            "test F1", f"acc − {result['baseline']} (95% CI, p, Holm-adjusted p)", f"seeds for ±{HALF_WIDTH:g}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        v = r["vs_baseline"]
        diff = "" if v is None else (f"{v['diff']:+.4f} [{v['ci_low']:+.4f}, {v['ci_high']:+.4f}], "
                                     f"p={v['p']:.3g}, p_holm={v['p_holm']:.3g}")
        cells = [r["view"], *([settings_text(r, vs)] if vs else []), *[str(r.get(k)) for k in var],
                 str(r["acc"]["n"]), mean_std_ci(r["acc"]), mean_std_ci(r["auroc"]), mean_std_ci(r["f1"]), diff,
                 "" if v is None or v["seeds_needed"] is None else str(v["seeds_needed"])]
        lines.append("| " + " | ".join(cells) + " |")
    n_ep = max((len(r["val_acc_per_epoch"]) for r in result["rows"]), default=0)
    if n_ep:  # eval.py's results have no training curve
        lines += ["", "Validation accuracy per epoch (mean over seeds):", "",
                  "| view | " + ("settings | " if vs else "") + "".join(f"{k} | " for k in var)
                  + " | ".join(f"Epoch {e + 1} Val Accuracy" for e in range(n_ep)) + " |",
                  "|---|" + ("---|" if vs else "") + "---|" * len(var) + "---|" * n_ep]
        for r in result["rows"]:
            lines.append(f"| {r['view']} | " + (f"{settings_text(r, vs)} | " if vs else "") + "".join(f"{r.get(k)} | " for k in var)
                         + " | ".join("" if a is None else f"{a:.4f}" for a in r["val_acc_per_epoch"]) + " |")
    lines += group_markdown(result, "content") + group_markdown(result, "family")
    if result["failed"]:
        lines += ["", f"Failed or unfinished jobs ({len(result['failed'])}), not in the table:", ""]
        lines += [f"- `{f['dir']}`: {' '.join(f'{k}={v}' for k, v in f['overrides'].items())}"
                  + (f" ({f['reason']})" if "reason" in f else "") for f in result["failed"]]
    return "\n".join(lines) + "\n"


def plot(path: Path, result: dict) -> None:
    """Test accuracy against the one numeric view setting that varies (e.g. the saturation
    factor), a line per view, with the baseline as a band; else a bar per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    numeric = [k for k in result["view_settings"]
               if len({r.get(k) for r in rows if isinstance(r.get(k), (int, float))}) > 1]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        if r["view"] == result["baseline"] and all(r.get(k) is None for k in result["view_settings"]):
            a = r["acc"]
            lo, hi = (a["ci_low"], a["ci_high"]) if a["n"] > 1 else (a["mean"], a["mean"])
            ax.axhspan(lo, hi, color="grey", alpha=0.25)
            ax.axhline(a["mean"], color="grey", ls="--", label=f"{r['view']} (baseline), n={a['n']}")
            break
    if len(numeric) == 1:
        x_key = numeric[0]
        by_view = defaultdict(list)
        for r in rows:
            if isinstance(r.get(x_key), (int, float)):
                by_view[r["view"]].append(r)
        for view, rs in sorted(by_view.items()):
            rs.sort(key=lambda r: r[x_key])
            x = [r[x_key] for r in rs]
            (line,) = ax.plot(x, [r["acc"]["mean"] for r in rs], marker="o", label=view)
            if all(r["acc"]["n"] > 1 for r in rs):
                ax.fill_between(x, [r["acc"]["ci_low"] for r in rs], [r["acc"]["ci_high"] for r in rs],
                                color=line.get_color(), alpha=0.2)
        if min(r[x_key] for rs in by_view.values() for r in rs) > 0:
            ax.set_xscale("log")
        ax.set_xlabel(x_key.replace("_", " "))
    else:
        labels = [" ".join([r["view"], *(f"{k}={_fmt(r[k])}" for k in result["view_settings"] if r.get(k) is not None),
                            *(f"{k}={r.get(k)}" for k in result["varying"])]) for r in rows]
        means = [r["acc"]["mean"] for r in rows]
        err = [[m - (r["acc"]["ci_low"] if r["acc"]["n"] > 1 else m) for m, r in zip(means, rows)],
               [(r["acc"]["ci_high"] if r["acc"]["n"] > 1 else m) - m for m, r in zip(means, rows)]]
        ax.bar(range(len(rows)), means, yerr=err, capsize=3, color="tab:blue", alpha=0.7)
        ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(max(0.0, min(means, default=0.5) - 0.1), 1.0)
    ax.set_ylabel("test accuracy (mean, 95% CI)")
    parts = Path(result["sweep"]).parts  # outputs/<task>/multirun/<time> or outputs/<task>/<name>
    where = [p for p in parts[parts.index("outputs") + 1:] if p != "multirun"][:2] if "outputs" in parts else parts[-2:]
    ax.set_title(" / ".join(where) + " sweep")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no baseline band (a baseline named by overrides) and no lines
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


class AggregateCallback(Callback):
    """Hydra callback: aggregate the sweep folder when a multirun ends."""

    def on_multirun_end(self, config, **kwargs) -> None:
        result = aggregate(config.hydra.sweep.dir)
        print(f"[aggregate] {len(result['rows'])} settings, {len(result['failed'])} failed jobs -> "
              f"{config.hydra.sweep.dir}/results.md")


def cmd_aggregate(args) -> int:
    result = aggregate(args.sweep_dir, args.baseline)
    print(Path(args.sweep_dir, "results.md").read_text())
    return 1 if result["failed"] and args.strict else 0
