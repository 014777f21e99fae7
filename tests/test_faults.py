"""Interrupted data work: each tool is killed (SIGKILL, at a named fault-injection point, not by a
timer) and run again; the result equals an uninterrupted run's, with no partial or duplicate files."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, make_image
from fakes import FakeReplicate


def py(code, fault=None, env=None):
    env = {**os.environ, **(env or {})}
    env.pop("AIDETECT_FAULT", None)
    if fault:
        env["AIDETECT_FAULT"] = fault
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def cli(*args, fault=None, env=None):
    code = f"import sys; from aidetect.cli import main; sys.exit(main({[str(a) for a in args]!r}))"
    return py(code, fault, env)


def tree(folder):
    """{relative path: sha256} of every file, hidden ones included (a leftover temp file shows)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder):
    return [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")] + \
        [str(p) for p in folder.rglob(".*tmp*")] if folder.exists() else \
        [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]


def test_archive_extraction_killed_before_rename_then_rerun(tmp_path, kaggle_zip):
    code = "import sys; from aidetect.data.archive import safe_extract; safe_extract(sys.argv[1], sys.argv[2])"
    run = lambda dest, fault=None: py(code.replace("sys.argv[1]", repr(str(kaggle_zip))).replace(  # noqa: E731
        "sys.argv[2]", repr(str(dest))), fault)
    assert run(tmp_path / "clean").returncode == 0
    assert run(tmp_path / "x" / "raw", "extract:before_rename").returncode == -9
    assert not (tmp_path / "x/raw").exists()  # all or nothing
    assert run(tmp_path / "x" / "raw").returncode == 0
    assert tree(tmp_path / "x/raw") == tree(tmp_path / "clean") and not leftovers(tmp_path / "x/raw")


@pytest.mark.slow
def test_decode_cache_killed_before_rename_then_rebuilt_once(tmp_path):
    rng = np.random.default_rng(0)
    for cls, label in (("REAL", 0), ("FAKE", 1)):
        for i in range(10):
            make_image(tmp_path / "ds" / cls / f"{i}.png", label, rng)
    def decode(data_dir, out, fault=None):
        return py("from aidetect.data.folder import FolderDataModule as F; import torch; "
                  f"d = F(root={str(tmp_path / 'ds')!r}, data_dir={str(data_dir)!r}); d.setup('fit'); "
                  f"torch.save(dict((k, v.images) for k, v in d.splits.items()), {str(out)!r})", fault)

    clean = decode(tmp_path / "clean", tmp_path / "clean.pt")
    assert clean.returncode == 0, clean.stderr
    killed = decode(tmp_path / "d", tmp_path / "d.pt", fault="before_rename")
    assert killed.returncode == -9
    cache_dir = tmp_path / "d/folder-cache"
    assert not list(cache_dir.glob("*.pt")) and list(cache_dir.glob(".*.tmp-*"))  # only the cut temp file
    again = decode(tmp_path / "d", tmp_path / "d.pt")
    assert again.returncode == 0, again.stderr
    a, b = torch.load(tmp_path / "clean.pt"), torch.load(tmp_path / "d.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(cache_dir.glob(".*.tmp-*")) and len(list(cache_dir.glob("*.pt"))) == 1


@pytest.mark.slow
def test_flux_build_killed_before_rename_then_rerun(tmp_path):
    for cls, label in (("fake", 1), ("real", 0)):
        rng = np.random.default_rng(label)
        for i in range(12):
            make_image(tmp_path / cls / f"{i}.jpg", label, rng, (48, 64))
    args = ["flux", "build", "--fake", tmp_path / "fake", "--real", tmp_path / "real", "--image-size", 32, 32]
    assert cli(*args, "--out", tmp_path / "clean").returncode == 0
    assert cli(*args, "--out", tmp_path / "built", fault="build:before_rename").returncode == -9
    assert not (tmp_path / "built").exists()
    assert cli(*args, "--out", tmp_path / "built").returncode == 0
    assert tree(tmp_path / "built") == tree(tmp_path / "clean") and not leftovers(tmp_path / "built")


@pytest.mark.slow
def test_flux_generate_killed_between_file_and_manifest_then_rerun(tmp_path):
    server = FakeReplicate().start()
    try:
        env = {"REPLICATE_API_TOKEN": "r8_test", "REPLICATE_POLL_INTERVAL": "0.01"}
        args = ["flux", "generate", "--n", 6, "--base-url", server.url, "--concurrency", 1]
        assert cli(*args, "--out", tmp_path / "clean", env=env).returncode == 0
        r = cli(*args, "--out", tmp_path / "gen", env=env, fault="generate:between_file_and_manifest@3")
        assert r.returncode == -9
        made = server.n
        r = cli(*args, "--out", tmp_path / "gen", env=env)
        assert r.returncode == 0, r.stderr
    finally:
        server.stop()
    rows = [json.loads(x) for x in (tmp_path / "gen/manifest.jsonl").read_text().splitlines()]
    clean = [json.loads(x) for x in (tmp_path / "clean/manifest.jsonl").read_text().splitlines()]
    key = lambda rs: sorted((r["id"], r["file"], r["prompt"], r["seed"]) for r in rs)  # noqa: E731
    assert key(rows) == key(clean)  # the same 6 jobs, once each
    assert server.n - made == 6 - 3  # the rerun made only the 3 missing (the orphan was recovered)
    files = {p.name for p in (tmp_path / "gen").iterdir() if p.suffix == ".jpg"}
    assert files == {r["file"] for r in rows} and not list((tmp_path / "gen").glob(".*tmp*"))
    for r in rows:
        assert hashlib.sha256((tmp_path / "gen" / r["file"]).read_bytes()).hexdigest() == r["sha256"]


@pytest.mark.slow
def test_flux_collect_killed_between_file_and_manifest_then_rerun(tmp_path):
    from PIL import Image

    (tmp_path / "photos").mkdir()
    for i in range(8):  # distinct pictures (smooth random fields), so none is a near duplicate
        field = np.random.default_rng(100 + i).integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(field).resize((400, 300), Image.BICUBIC).save(tmp_path / "photos" / f"{i}.jpg", quality=90)
    args = ["flux", "collect-real", "--source", "folder", "--folder", tmp_path / "photos", "--n", 5]
    assert cli(*args, "--out", tmp_path / "clean").returncode == 0
    assert cli(*args, "--out", tmp_path / "col", fault="collect:between_file_and_manifest@2").returncode == -9
    r = cli(*args, "--out", tmp_path / "col")
    assert r.returncode == 0, r.stderr
    manifest = lambda d: sorted(json.loads(x)["id"] for x in (d / "manifest.jsonl").read_text().splitlines())  # noqa: E731
    assert manifest(tmp_path / "col") == manifest(tmp_path / "clean")
    images = lambda d: {k: v for k, v in tree(d).items() if not k.endswith(".jsonl")}  # noqa: E731
    assert images(tmp_path / "col") == images(tmp_path / "clean")


# --- hostile input ---------------------------------------------------------------------------------

def test_downloads_refuse_other_schemes_redirects_to_them_and_oversized_bodies(tmp_path):
    """collect-real from a URL list: file:// and ftp:// URLs, a redirect to file://, a body over
    max_bytes (with and without Content-Length) are rejected with a reason; nothing is written
    for them, and a good image beside them is still collected."""
    import io
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from omegaconf import OmegaConf
    from PIL import Image

    from aidetect.flux.collect import Collector

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize(
        (400, 300), Image.BICUBIC).save(buf, "JPEG", quality=90)
    good = buf.getvalue()

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path == "/to-file":
                self.send_response(302)
                self.send_header("Location", "file:///etc/passwd")
                self.end_headers()
            elif self.path == "/hop":
                self.send_response(301)
                self.send_header("Location", "/good.jpg")
                self.end_headers()
            elif self.path in ("/big", "/big-chunked"):
                self.send_response(200)
                if self.path == "/big":
                    self.send_header("Content-Length", str(10_000_000))
                self.end_headers()
                try:
                    self.wfile.write(b"\xff" * 3_000_000)
                except OSError:
                    pass
            else:
                self.send_response(200)
                self.send_header("Content-Length", str(len(good)))
                self.end_headers()
                self.wfile.write(good)

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urls = ["file:///etc/passwd", "ftp://example.org/x.jpg", f"{base}/to-file", f"{base}/big", f"{base}/big-chunked",
            f"{base}/hop"]
    (tmp_path / "urls.txt").write_text("\n".join(urls))
    cfg = OmegaConf.load(ROOT / "src/aidetect/flux/flux.yaml").collect
    cfg.max_bytes = 1_000_000
    try:
        result = Collector(cfg, tmp_path / "out", sleep=lambda s: None).run(10, Collector.url_list(tmp_path / "urls.txt"))
    finally:
        server.shutdown()
    reasons = {json.loads(x)["source"]: json.loads(x)["reason"] for x in (tmp_path / "out/rejects.jsonl").read_text().splitlines()}
    assert "only http(s)" in reasons["file:///etc/passwd"] and "only http(s)" in reasons["ftp://example.org/x.jpg"]
    assert "only http(s)" in reasons[f"{base}/to-file"]
    assert "max_bytes" in reasons[f"{base}/big"] and "max_bytes" in reasons[f"{base}/big-chunked"]
    assert result["kept"] == 1  # the redirect within http(s) is followed to the good image
    written = [p.name for p in (tmp_path / "out").iterdir()]
    assert sorted(written) == sorted(["manifest.jsonl", "rejects.jsonl", f"{hashlib.sha256(good).hexdigest()[:16]}.jpg"])


def test_a_manifest_cannot_make_generate_touch_files_outside_its_folder(tmp_path):
    outside = tmp_path / "precious.jpg"
    outside.write_bytes(b"keep me")
    out = tmp_path / "gen"
    out.mkdir()
    (out / "manifest.jsonl").write_text(json.dumps({"id": "000000", "file": "../precious.jpg"}) + "\n")
    server = FakeReplicate().start()
    try:
        env = {"REPLICATE_API_TOKEN": "r8_test", "REPLICATE_POLL_INTERVAL": "0.01"}
        r = cli("flux", "generate", "--n", 2, "--base-url", server.url, "--out", out, env=env)
    finally:
        server.stop()
    assert r.returncode == 0, r.stderr
    assert outside.read_bytes() == b"keep me"
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert all((out / r["file"]).resolve().parent == out.resolve() for r in rows)


@pytest.mark.slow
def test_two_runs_started_at_once_decode_the_data_once_and_both_finish(tmp_path):
    rng = np.random.default_rng(3)
    for cls, label in (("REAL", 0), ("FAKE", 1)):
        for i in range(30):
            make_image(tmp_path / "ds" / cls / f"{i}.png", label, rng)
    args = lambda out: [sys.executable, str(ROOT / "train.py"), "data=folder", f"data.root={tmp_path / 'ds'}",  # noqa: E731
                        f"data.data_dir={tmp_path / 'data'}", "model=seed_cifake_cnn", "trainer.max_epochs=1",
                        "trainer.enable_progress_bar=false", "logger=none", f"hydra.run.dir={tmp_path / out}"]
    env = {k: v for k, v in os.environ.items() if k != "AIDETECT_FAULT"}
    procs = [subprocess.Popen(args(f"run{i}"), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for i in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    decoded = sum(log.count("once into") for log in logs)
    assert decoded == 1  # one unsplit folder = one cache file, decoded by whichever run got the lock first
    assert all((tmp_path / f"run{i}/metrics.json").is_file() for i in range(2))


def test_checkpoints_and_caches_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    """torch_save (last.ckpt, decode caches, calibration) flushes its temp file like atomic_write does:
    a rename of an unflushed file can leave an empty target after a host crash."""
    import aidetect.io as aio

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(aio.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    aio.torch_save({"x": torch.arange(3)}, tmp_path / "a.pt")
    assert torch.equal(torch.load(tmp_path / "a.pt")["x"], torch.arange(3))
    assert len(synced) == 1 and ".a.pt.tmp-" in synced[0] and not list(tmp_path.glob(".*tmp*"))


def test_a_failed_save_leaves_the_old_file_and_no_temp_file(tmp_path):
    """An error while writing (here: an object pickle refuses) must not touch the target."""
    import aidetect.io as aio

    target = tmp_path / "last.ckpt"
    aio.torch_save({"step": 1}, target)
    with pytest.raises(Exception):
        aio.torch_save({"step": 2, "bad": lambda: None}, target)
    assert torch.load(target) == {"step": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_write_into_a_folder_not_made_yet_makes_it(tmp_path):
    """`aidetect audit POOL --out outputs/audit/x.json` on a fresh checkout: the report is written, not lost to a
    missing folder after the whole audit ran."""
    from aidetect.io import atomic_write, write_json

    atomic_write(tmp_path / "a" / "b" / "x.bin", b"123")
    write_json(tmp_path / "c" / "r.json", {"k": 1})
    assert (tmp_path / "a/b/x.bin").read_bytes() == b"123" and (tmp_path / "c/r.json").is_file()
    assert sorted(p.name for p in (tmp_path / "a/b").iterdir()) == ["x.bin"]  # no temp file left behind
