"""Training and inference speed against the limit, on this machine, in one process.

    python benchmarks/epoch_speed.py --archive ../shared/data/cifake.zip --fraction 0.25 --repeats 2
    python benchmarks/epoch_speed.py --sections settings --settings fused,compile   # only some rows
    python benchmarks/epoch_speed.py --quick          # a small smoke run of every section

Sections (each row also reports its peak RSS growth, sampled every 5 ms):
  train     "limit" = a bare PyTorch loop over the data module's own uint8 tensors in memory
            (forward, backward, the model's own optimizer and schedule, then the validation
            forward; channels-last, as the framework trains) against "framework" = train.py's
            real path for one epoch (default callbacks and TensorBoard logger, no test), timed
            by the EpochStats callback that writes metrics.json; models seed_cifake_cnn and the
            SmallResNet of experiment=best_cifake_scratch, batch 32 and 256, view none.
  settings  the framework with speed settings (foreach/fused optimizer, threads=1, bf16 autocast,
            compile=true) against the same limit, seed CNN at batch 32 (or --settings-model
            best_cifake --settings-batch 128: that recipe's model, flips and EMA callback; the
            bare loop has neither flips nor EMA, and EMA starts at step 620, so it only runs in
            the timed epoch at --fraction 1), 2 epochs each with the
            second timed (compilation happens in the first); validation accuracy per epoch beside
            each, to check that the setting leaves it unchanged (within 0.003 of the default run).
  peer      the original's loading: torchvision ImageFolder + PIL + ToTensor, one process,
            NCHW seed CNN, batch 32, over the same training and validation files.
  decode    1344x768 JPEGs (made from the StyleGAN2 faces) decoded to 256x256 per second, by the
            framework's decode path and with PIL's JPEG draft mode, against the faces model's
            training and inference images/s at 256x256.
  infer     P(FAKE) images/s, eager PyTorch against the exported ONNX graph (onnxruntime).
Repeats alternate the rows, so drift in machine speed hits all alike; the table reports the
median and the spread. Ratios are within one run; this machine is noisy.
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
MODELS = {"seed_cnn": ["model=seed_cifake_cnn"], "small_resnet": ["model=small_resnet"],  # best_cifake's net
          "best_cifake": ["experiment=best_cifake_scratch"]}  # the SmallResNet recipe, named best_cifake when measured
SETTINGS = {"default": [], "foreach": ["+model.optimizer.foreach=true"], "fused": ["+model.optimizer.fused=true"],
            "threads1": ["threads=1"], "bf16": ["trainer.precision=bf16-mixed"], "compile": ["compile=true"]}


class PeakRSS:
    """Peak resident memory growth (MB) of this process while the block runs."""

    def __enter__(self):
        self.stop, self.start = False, self.rss()
        self.peak = self.start
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def rss(self):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self):
        while not self.stop:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        self.mb = round((max(self.peak, self.rss()) - self.start) / 2**20, 1)


def compose(args, *overrides):
    from conftest import compose_train

    return compose_train([f"data.archive={args.archive}", f"data.data_dir={args.data_dir}",
                          f"data.fraction={args.fraction}", "trainer.max_epochs=1",
                          "trainer.enable_progress_bar=false", "test=false", "calibrate=false", *overrides])


_DATA = {}


def datamodule(cfg):
    from aidetect.train import build_datamodule

    if cfg.data.fraction not in _DATA:
        dm = build_datamodule(cfg.data, (32, 32))
        dm.prepare_data(), dm.setup("fit")
        _DATA[cfg.data.fraction] = dm
    return _DATA[cfg.data.fraction]


def detector(cfg, channels_last=True):
    from aidetect.module import Detector
    from aidetect.train import plain

    return Detector(net=plain(cfg.model.net), view={"name": "none"}, optimizer=plain(cfg.model.optimizer),
                    scheduler=plain(cfg.model.get("scheduler")), input_size=(32, 32), channels_last=channels_last,
                    label_smoothing=cfg.model.get("label_smoothing", 0.0))


def limit_epoch(cfg, channels_last=True, epochs=1) -> dict:
    """The bare loop; the same model, optimizer, schedule, loss, batch size and images as the
    framework. With epochs > 1, the last epoch's time (steady state, as the settings rows)."""
    from aidetect.module import build_recipe

    dm = datamodule(cfg)
    train, val, bs = dm.splits["train"], dm.splits["val"], cfg.data.batch_size
    torch.manual_seed(cfg.seed)
    model = detector(cfg, channels_last)
    steps = -(-len(train) // bs) * epochs
    recipe = build_recipe(model.hparams.optimizer, model.hparams.scheduler, model.parameters(), total_steps=steps)
    opt, sched = (recipe["optimizer"], recipe["lr_scheduler"]["scheduler"]) if isinstance(recipe, dict) else (recipe, None)
    eps = model.hparams.label_smoothing
    with PeakRSS() as mem:
        for _ in range(epochs):
            t0 = time.perf_counter()
            model.train()
            for idx in torch.randperm(len(train)).split(bs):
                x, y = train[idx]
                loss = model.loss(model(x), y.float() * (1 - eps) + 0.5 * eps)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
            model.eval()
            with torch.no_grad():
                for idx in torch.arange(len(val)).split(bs):
                    model(val[idx][0])
            seconds = time.perf_counter() - t0
    return {"seconds": seconds, "images_per_second": (len(train) + len(val)) / seconds, "peak_rss_mb": mem.mb}


def framework_epoch(cfg) -> dict:
    from aidetect.train import train

    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as out, PeakRSS() as mem, open(os.devnull, "w") as quiet, \
            contextlib.redirect_stdout(quiet):  # Lightning's model summary, not the results
        cfg.output_dir = out
        m = train(cfg)
    torch.set_num_threads(threads)  # threads=1 must not leak into the next row
    e = m["epochs"][-1]  # with max_epochs > 1: the last epoch (steady state; compile happens in epoch 1)
    return {"seconds": e["seconds"], "images_per_second": e["images_per_second"],
            "val_acc": m["val_acc_per_epoch"] if len(m["epochs"]) > 1 else e.get("val/acc"), "peak_rss_mb": mem.mb}


def peer_epoch(cfg) -> dict:
    """The original project's loading: ImageFolder + PIL, decoded every epoch, NCHW, no cache."""
    from torchvision import datasets, transforms

    dm = datamodule(cfg)
    keep = {s: {str(dm.root / n) for n in dm.splits[s].names} for s in ("train", "val")}
    loaders = {}
    for s in ("train", "val"):
        ds = datasets.ImageFolder(str(dm.root / "train"), transform=transforms.ToTensor(),
                                  is_valid_file=keep[s].__contains__)
        ds.target_transform = lambda c, fake=ds.class_to_idx["FAKE"]: int(c == fake)  # FAKE = 1, not folder sort
        loaders[s] = torch.utils.data.DataLoader(ds, batch_size=cfg.data.batch_size, shuffle=s == "train")
    torch.manual_seed(cfg.seed)
    model = detector(cfg, channels_last=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        model.train()
        for x, y in loaders["train"]:
            loss = model.loss(model(x), y.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for x, _ in loaders["val"]:
                model(x)
        seconds = time.perf_counter() - t0
    n = len(loaders["train"].dataset) + len(loaders["val"].dataset)
    return {"seconds": seconds, "images_per_second": n / seconds, "peak_rss_mb": mem.mb}


def decode_rates(args, n=48) -> dict:
    """High resolution: decoding 1344x768 JPEG to 256x256 against the faces model's speed there."""
    import zipfile

    from PIL import Image

    from aidetect.data.images import _decode

    out = {}
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(args.faces) as z:
        names = [m for m in z.namelist() if m.lower().endswith((".jpg", ".jpeg", ".png"))][:n]
        paths = []
        for i, m in enumerate(names):
            with z.open(m) as f:
                p = Path(tmp) / f"{i}.jpg"
                Image.open(f).convert("RGB").resize((1344, 768), Image.BICUBIC).save(p, quality=90)
                paths.append(p)
        t0 = time.perf_counter()
        for p in paths:
            _decode((str(p), (256, 256), "center_crop", 8))
        out["decode_framework"] = len(paths) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for p in paths:
            with Image.open(p) as im:
                im.draft("RGB", (455, 256))  # DCT scaling to >= the covering size, then the same resize
                im.convert("RGB").resize((455, 256), Image.BILINEAR).crop((99, 0, 355, 256))
        out["decode_pil_draft"] = len(paths) / (time.perf_counter() - t0)
    from aidetect.module import Detector
    from aidetect.train import plain
    from conftest import compose_train

    cfg = compose_train(["experiment=best_faces"])
    model = Detector(net=plain(cfg.model.net), input_size=(256, 256))
    opt = torch.optim.AdamW(model.parameters())
    x, y = torch.randint(0, 256, (32, 3, 256, 256), dtype=torch.uint8), torch.randint(0, 2, (32,))
    for _ in range(2):  # warm-up, then timed
        t0 = time.perf_counter()
        model.train()
        loss = model.loss(model(x), y.float())
        opt.zero_grad(), loss.backward(), opt.step()
        out["faces_model_train"] = len(x) / (time.perf_counter() - t0)
    out["faces_model_infer"] = infer_rates(model, 64, onnx=False)["eager"]
    return {k: round(v, 1) for k, v in out.items()}


def infer_rates(model, n=1024, onnx=True, batch=256) -> dict:
    from aidetect.export import export_onnx

    x = torch.randint(0, 256, (n, 3, *model.input_size), dtype=torch.uint8)
    model.eval()
    out = {}
    with torch.no_grad(), PeakRSS() as mem:
        model.predict_proba(x[:batch], batch)  # warm-up (in the memory figure, not the time)
        t0 = time.perf_counter()
        model.predict_proba(x, batch)
        out["eager"] = n / (time.perf_counter() - t0)
    out["eager_peak_rss_mb"] = mem.mb
    if onnx:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            sess = ort.InferenceSession(str(export_onnx(model, Path(tmp) / "m.onnx")))
            xs = x.numpy()
            with PeakRSS() as mem:
                sess.run(None, {"images": xs[:batch]})  # warm-up
                t0 = time.perf_counter()
                for i in range(0, n, batch):
                    sess.run(None, {"images": xs[i:i + batch]})
                out["onnx"] = n / (time.perf_counter() - t0)
            out["onnx_peak_rss_mb"] = mem.mb
    return {k: round(v, 1) for k, v in out.items()}


class ProfileEpoch(L.Callback):
    """Profiles the training epoch only (validation included, not the data loading before it);
    named in the config, so train.py builds it like any other callback."""

    last = None

    def on_train_epoch_start(self, trainer, pl_module):
        import cProfile

        ProfileEpoch.last = cProfile.Profile()
        ProfileEpoch.last.enable()

    def on_train_epoch_end(self, trainer, pl_module):
        ProfileEpoch.last.disable()


def profile_epoch(a) -> dict:
    """Where a framework epoch's time goes: own (tottime) seconds per package, per step."""
    import pstats

    cfg = compose(a, *MODELS["seed_cnn"], "data.batch_size=32", "+callbacks.profile._target_=__main__.ProfileEpoch")
    r = framework_epoch(cfg)
    by = {}
    for (file, _, _), (_, _, tottime, _, _) in pstats.Stats(ProfileEpoch.last).stats.items():
        key = next((k for k in ("lightning_utilities", "lightning", "torchmetrics", "aidetect", "torch/optim",
                                "torch/utils/data", "torch/nn", "torch") if f"/{k}/" in file), "builtin (torch ops, C)"
                   if file == "~" else "other")
        by[key] = by.get(key, 0.0) + tottime
    dm = datamodule(cfg)
    steps = -(-len(dm.splits["train"]) // 32) + -(-len(dm.splits["val"]) // 32)
    framework = sum(by.get(k, 0.0) for k in ("lightning", "lightning_utilities", "torchmetrics"))
    return {"epoch_seconds_under_profiler": round(r["seconds"], 2), "steps": steps,
            "own_seconds_by_package": {k: round(v, 2) for k, v in sorted(by.items(), key=lambda kv: -kv[1])},
            "lightning_and_torchmetrics_ms_per_step": round(1000 * framework / steps, 3)}


def summarise(rows: dict) -> dict:
    return {k: {"median_images_per_second": round(statistics.median(r["images_per_second"] for r in v), 1),
                "all_images_per_second": [round(r["images_per_second"], 1) for r in v],
                "peak_rss_mb": max(r["peak_rss_mb"] for r in v),
                **({"val_acc": [r["val_acc"] for r in v]} if "val_acc" in v[0] else {})}
            for k, v in rows.items()}


def markdown(result: dict) -> str:
    """The README's tables, from the results (never typed by hand)."""
    lines = ["| row | images/s (median) | all repeats | of its limit | peak RSS growth (MB) | val/acc |",
             "|---|---|---|---|---|---|"]
    for k, v in result["rows"].items():
        acc = v.get("val_acc")
        acc = "" if acc is None else str(sorted({json.dumps(x) for x in acc})).replace("'", "").replace('"', "")
        lines.append(f"| {k} | {v['median_images_per_second']} | {v['all_images_per_second']} | "
                     f"{v.get('of_limit', '')} | {v['peak_rss_mb']} | {acc} |")
    if "decode" in result:
        lines += ["", "| decode and model at 256x256 (one process) | images/s |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in result["decode"].items()]
    if "infer" in result:
        lines += ["", "| inference, uint8 in, P(FAKE) out, batch 256 | eager images/s | ONNX Runtime images/s | "
                  "eager peak RSS growth (MB) | ONNX peak RSS growth (MB) |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['eager']} | {v.get('onnx', '')} | {v['eager_peak_rss_mb']} | {v.get('onnx_peak_rss_mb', '')} |"
                  for k, v in result["infer"].items()]
    if "profile_seed_cnn_b32" in result:
        prof = result["profile_seed_cnn_b32"]
        lines += ["", f"Profile of one framework epoch (seed CNN, batch 32, {prof['steps']} steps, "
                  f"{prof['epoch_seconds_under_profiler']} s under cProfile), own seconds per package: "
                  + ", ".join(f"{k} {v}" for k, v in prof["own_seconds_by_package"].items())
                  + f"; Lightning + torchmetrics: {prof['lightning_and_torchmetrics_ms_per_step']} ms per step."]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archive", default=str(ROOT.parent / "shared/data/cifake.zip"))
    p.add_argument("--faces", default=str(ROOT.parent / "shared/data/faces_stylegan2_300.zip"))
    p.add_argument("--data-dir", default=str(ROOT / "data"))
    p.add_argument("--fraction", type=float, default=0.25, help="share of CIFAKE's training pool per epoch")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sections", default="train,settings,peer,decode,infer")
    p.add_argument("--models", default="seed_cnn,small_resnet")
    p.add_argument("--batch-sizes", default="32,256")
    p.add_argument("--settings", default="foreach,fused,threads1,bf16,compile")
    p.add_argument("--settings-model", default="seed_cnn", choices=sorted(MODELS), help="the settings section's model")
    p.add_argument("--settings-batch", type=int, default=32, help="the settings section's batch size")
    p.add_argument("--profile", action="store_true", help="also profile one framework epoch (seed CNN, batch 32)")
    p.add_argument("--quick", action="store_true", help="a tiny fraction, one repeat: checks that every row runs")
    p.add_argument("--out", help="also write the results as JSON here")
    a = p.parse_args()
    if a.quick:
        a.fraction, a.repeats = 0.01, 1
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    sections = a.sections.split(",")
    header = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}",
              "torch": torch.__version__, "threads": torch.get_num_threads(), "fraction": a.fraction,
              "repeats": a.repeats, "view": "none"}
    print("# " + json.dumps(header), flush=True)
    rows: dict[str, list] = {}

    def add(name, r):
        rows.setdefault(name, []).append(r)
        print(f"{name:40} {r['images_per_second']:8.1f} images/s  {r['seconds']:7.1f} s  peak RSS +{r['peak_rss_mb']} MB"
              + (f"  val/acc {r['val_acc']}" if r.get("val_acc") is not None else ""), flush=True)

    datamodule(compose(a))  # decoded once, outside every timing
    for rep in range(a.repeats):
        if "train" in sections:
            for m in a.models.split(","):
                for bs in map(int, a.batch_sizes.split(",")):
                    cfg = compose(a, *MODELS[m], f"data.batch_size={bs}")
                    for kind in (("limit", "framework") if rep % 2 == 0 else ("framework", "limit")):
                        add(f"{kind} {m} b{bs}", limit_epoch(cfg) if kind == "limit" else framework_epoch(cfg))
        if "settings" in sections:  # 2 epochs each, the second one timed
            m, bs = a.settings_model, a.settings_batch
            two = [*MODELS[m], f"data.batch_size={bs}", "trainer.max_epochs=2"]
            add(f"limit {m} b{bs} (settings)", limit_epoch(compose(a, *two), epochs=2))
            for s in ["default", *a.settings.split(",")]:
                add(f"framework {m} b{bs} {s}", framework_epoch(compose(a, *two, *SETTINGS[s])))
        if "peer" in sections:
            cfg = compose(a, *MODELS["seed_cnn"], "data.batch_size=32")
            add("peer ImageFolder+PIL seed_cnn b32", peer_epoch(cfg))
            add("limit seed_cnn b32 NCHW", limit_epoch(cfg, channels_last=False))
    result = {"header": header, "rows": summarise(rows)}
    if "decode" in sections:
        result["decode"] = decode_rates(a)
        print("decode:", json.dumps(result["decode"]), flush=True)
    if "infer" in sections:
        from aidetect.module import Detector
        from aidetect.train import plain

        for m in ("seed_cnn", "small_resnet"):
            cfg = compose(a, *MODELS[m])
            result.setdefault("infer", {})[m] = infer_rates(Detector(net=plain(cfg.model.net)))
            print(f"infer {m}:", json.dumps(result["infer"][m]), flush=True)
    if a.profile:
        result["profile_seed_cnn_b32"] = profile_epoch(a)
        print("profile:", json.dumps(result["profile_seed_cnn_b32"]), flush=True)
    r = result["rows"]
    for key, row in r.items():  # "framework <model> b<batch> [setting]" against its own limit row
        parts = key.split()
        if parts[0] == "framework":
            base = r.get(" ".join(["limit", *parts[1:3]]) + (" (settings)" if len(parts) > 3 else ""))
        elif parts[0] == "peer":
            base = r.get("limit seed_cnn b32 NCHW")
        else:
            continue
        if base:
            row["of_limit"] = round(row["median_images_per_second"] / base["median_images_per_second"], 3)
    print(json.dumps(result, indent=1))
    if a.out:
        from aidetect.io import write_json

        write_json(Path(a.out), result)
        Path(a.out).with_suffix(".md").write_text(f"`{' '.join(sys.argv)}`\n\n{json.dumps(header)}\n\n" + markdown(result))


if __name__ == "__main__":
    main()
