"""The FLUX pipeline against loopback servers speaking the Replicate and Openverse APIs,
through the real `replicate` and `requests` clients."""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from aidetect.flux.build import build
from aidetect.flux.collect import Collector, dhash
from aidetect.flux.generate import GenerateError, Generator, generate, make_client, plan
from conftest import ROOT, SHARED_DATA
from fakes import FakeOpenverse, FakeReplicate, jpeg_bytes

CFG = OmegaConf.load(ROOT / "src/aidetect/flux/flux.yaml")


def gen_cfg(**kw):
    cfg = CFG.generate.copy()
    cfg.update({"concurrency": 2, "max_retries": 3, **kw})
    return cfg


@pytest.fixture
def replicate_server(request):
    servers = []

    def start(**kw):
        s = FakeReplicate(**kw).start()
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop()


def run_gen(server, out, n, sleeps=None, max_cost=None, **kw):
    client = make_client("r8_test", server.url, 10)
    client.poll_interval = 0.01
    sleeps = [] if sleeps is None else sleeps
    g = Generator(gen_cfg(**kw), out, client, seed=0, sleep=sleeps.append)
    return g.run(n, max_cost)


def manifest(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_plan_is_seeded_and_prefix_stable():
    a, b = plan(CFG.generate, 5, seed=0), plan(CFG.generate, 8, seed=0)
    assert a == b[:5] and plan(CFG.generate, 5, seed=1) != a
    assert all(j.prompt.startswith("woman presenting on stage, ") and j.prompt.count(",") == 2 for j in a)


def test_generate_writes_images_and_manifest(tmp_path, replicate_server):
    server = replicate_server(script=["ok", "slow"])
    result = run_gen(server, tmp_path, 4)
    assert result["done"] == 4 and result["generated"] == 4
    rows = manifest(tmp_path)
    assert sorted(r["id"] for r in rows) == ["000000", "000001", "000002", "000003"]
    for r in rows:
        assert (tmp_path / r["file"]).is_file() and r["version"] == FakeReplicate.VERSION
        assert r["input"]["seed"] == r["seed"] and r["input"]["aspect_ratio"] == "16:9"
        assert r["prompt"] == r["input"]["prompt"] and len(r["sha256"]) == 64
    assert all(auth == "Bearer r8_test" for m, p, auth in server.requests if p.startswith("/v1"))


def test_429_honours_retry_after_and_500_is_retried(tmp_path, replicate_server):
    server = replicate_server(script=["429", "500"], retry_after="7")
    sleeps = []
    result = run_gen(server, tmp_path, 2, sleeps=sleeps, concurrency=1)
    assert result["done"] == 2
    assert 7.0 in sleeps and len(sleeps) == 2
    assert len(list(tmp_path.glob("*.jpg"))) == 2


def test_failed_prediction_is_recorded_and_retried_next_run(tmp_path, replicate_server):
    server = replicate_server(script=["failed"])
    result = run_gen(server, tmp_path, 3, concurrency=1)
    assert result["failed"] == 1 and result["done"] == 2
    fail = json.loads((tmp_path / "failures.jsonl").read_text())
    assert "NSFW" in fail["error"]
    again = run_gen(server, tmp_path, 3)
    assert again["done"] == 3 and again["generated"] == 1


def test_a_response_that_is_not_an_image_is_retried(tmp_path, replicate_server):
    server = replicate_server(script=["notimage"])
    result = run_gen(server, tmp_path, 1)
    assert result["done"] == 1
    assert len(list(tmp_path.glob("*.jpg"))) == 1 and server.n == 2


def test_cost_cap_is_never_exceeded(tmp_path, replicate_server):
    server = replicate_server()
    result = run_gen(server, tmp_path, 10, max_cost=0.01, cost_per_image=0.003, concurrency=4)
    assert server.n == 3 and result["done"] == 3 and result["skipped_for_budget"] == 7
    assert result["spent_estimate"] <= 0.01


def test_no_token_exits_nonzero_names_the_variable_and_writes_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REPLICATE_API_TOKEN"}
    out = tmp_path / "gen"
    r = subprocess.run([sys.executable, "-m", "aidetect.cli", "flux", "generate", "--n", "3", "--out", str(out)],
                       env=env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "REPLICATE_API_TOKEN" in r.stderr
    assert not out.exists()


def test_dry_run_prints_prompts_and_cost(tmp_path, capsys):
    res = generate(gen_cfg(), 4, tmp_path / "g", max_cost=1.0, dry=True)
    out = capsys.readouterr().out
    assert res["to_generate"] == 4 and out.count("woman presenting on stage") == 4 and "$0.01" in out
    assert not (tmp_path / "g").exists()


@pytest.mark.slow
def test_kill_then_resume_gives_exactly_n_without_duplicates(tmp_path, replicate_server):
    server = replicate_server(delay=0.3)
    out, n = tmp_path / "gen", 8
    cmd = [sys.executable, "-m", "aidetect.cli", "flux", "generate", "--n", str(n), "--out", str(out),
           "--base-url", server.url, "--concurrency", "2"]
    env = {**os.environ, "REPLICATE_API_TOKEN": "r8_test", "REPLICATE_POLL_INTERVAL": "0.01"}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob("*.jpg"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = len(list(out.glob("*.jpg")))
    assert 3 <= first < n
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = manifest(out)
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)) == n
    assert sorted(p.name for p in out.glob("*.jpg")) == sorted(row["file"] for row in rows)
    assert not list(out.glob(".*tmp*"))
    assert json.loads(r.stdout)["generated"] <= n - first


def test_orphan_file_is_recovered_not_regenerated(tmp_path, replicate_server):
    server = replicate_server()
    run_gen(server, tmp_path, 2)
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    (tmp_path / "manifest.jsonl").write_text(lines[0] + "\n" + lines[1][:20])  # kill mid-line
    before = server.n
    result = run_gen(server, tmp_path, 2)
    assert result["recovered"] == 1 and server.n == before and len(manifest(tmp_path)) == 2


# --- collect-real ---------------------------------------------------------------------

def collect_cfg(url, **kw):
    cfg = CFG.collect.copy()
    cfg.update({"openverse_url": f"{url}/v1", "page_size": 4, "min_side": 100, "max_bytes": 2_000_000, **kw})
    return cfg


def test_collect_from_openverse_checks_and_dedups(tmp_path):
    kinds = ["ok", "ok", "dup_of:0", "near_dup_of:1", "notimage", "tiny", "huge", "404", "500_once", "ok", "ok"]
    server = FakeOpenverse([{"kind": k} for k in kinds]).start()
    try:
        c = Collector(collect_cfg(server.url), tmp_path, sleep=lambda s: None)
        result = c.run(5, c.openverse())
    finally:
        server.stop()
    assert result["have"] == 5 and result["rejected"] == 6
    rows = manifest(tmp_path)
    assert {r["openverse_id"] for r in rows} == {"ov-0", "ov-1", "ov-8", "ov-9", "ov-10"}
    assert all(r["license"] == "by" and r["landing_url"] and r["creator"] for r in rows)
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert any("exact duplicate" in r for r in reasons) and any("near-duplicate" in r for r in reasons)
    assert any("max_bytes" in r for r in reasons) and any("min_side" in r for r in reasons)
    assert any("HTTP 404" in r for r in reasons) and any("not a decodable image" in r for r in reasons)
    search = [p for m, p, a in server.requests if p.startswith("/v1/images/")]
    assert all("q=woman+presenting+on+stage" in p for p in search)


def test_collect_resumes_without_refetching(tmp_path):
    server = FakeOpenverse([{"kind": "ok"} for _ in range(8)]).start()
    try:
        c = Collector(collect_cfg(server.url), tmp_path, sleep=lambda s: None)
        c.run(3, c.openverse())
        fetched = [p for m, p, a in server.requests if p.startswith("/img/")]
        c.run(6, c.openverse())
        refetched = [p for m, p, a in server.requests if p.startswith("/img/")][len(fetched):]
    finally:
        server.stop()
    assert len(manifest(tmp_path)) == 6 and not set(refetched) & set(fetched)


def test_near_duplicate_hash_is_close_for_reencoded_image():
    a = jpeg_bytes(1, (320, 240))
    from PIL import Image
    import io
    buf = io.BytesIO()
    Image.open(io.BytesIO(a)).save(buf, "JPEG", quality=50)
    assert bin(dhash(a) ^ dhash(buf.getvalue())).count("1") <= 6
    assert bin(dhash(a) ^ dhash(jpeg_bytes(2, (320, 240)))).count("1") > 6


# --- build ----------------------------------------------------------------------------

@pytest.fixture
def faces(tmp_path):
    if not (SHARED_DATA / "faces_stylegan2_300.zip").exists():
        pytest.skip("needs ../shared/data/faces_stylegan2_300.zip")
    with zipfile.ZipFile(SHARED_DATA / "faces_stylegan2_300.zip") as zf:
        zf.extractall(tmp_path / "faces")
    return tmp_path / "faces"


def test_build_on_real_faces(tmp_path, faces):
    # Use the faces set's pools the way `flux build` uses generated + collected images.
    fake_pool, real_pool = faces / "train/FAKE", faces / "train/REAL"
    summary = build(fake_pool, real_pool, tmp_path / "ds", image_size=(128, 128), seed=0)
    counts = summary["counts"]
    assert counts["train"]["FAKE"] + counts["validation"]["FAKE"] + counts["test"]["FAKE"] == 650
    assert counts["test"]["REAL"] == 53 and counts["validation"]["REAL"] == 53 and counts["train"]["REAL"] == 433
    rows = [json.loads(x) for x in (tmp_path / "ds/manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 1189 and len({r["file"] for r in rows}) == 1189
    from PIL import Image
    for r in rows[:: 200]:
        with Image.open(tmp_path / "ds" / r["file"]) as im:
            assert im.size == (128, 128) and im.format == "JPEG" and not im.info.get("exif")
    assert (tmp_path / "ds/summary.json").is_file()
    again = build(fake_pool, real_pool, tmp_path / "ds2", image_size=(128, 128), seed=0)
    assert again["counts"] == counts
    with pytest.raises(FileExistsError):
        build(fake_pool, real_pool, tmp_path / "ds", image_size=(128, 128))


def test_build_warns_when_classes_differ(tmp_path):
    from PIL import Image
    (tmp_path / "fake").mkdir(), (tmp_path / "real").mkdir()
    for i in range(10):
        Image.new("RGB", (160, 90), (i, 0, 0)).save(tmp_path / f"fake/{i}.jpg")
        Image.new("RGB", (100, 100), (0, i, 0)).save(tmp_path / f"real/{i}.png")
    s = build(tmp_path / "fake", tmp_path / "real", tmp_path / "out", image_size=(64, 64))
    text = " ".join(s["warnings"])
    assert "formats differ" in text and "aspect ratios differ" in text


def test_flux_commands_collect_from_a_folder_then_build(tmp_path, capsys):
    """`aidetect flux collect-real --source folder` and `aidetect flux build` through the CLI, in this
    process: the settings file's defaults, the command-line overrides and the JSON they print."""
    from aidetect.cli import main

    photos, fake = tmp_path / "photos", tmp_path / "fake"
    photos.mkdir(), fake.mkdir()
    for i in range(6):
        (photos / f"{i}.jpg").write_bytes(jpeg_bytes(i, (320, 256)))
    for i in range(10):
        (fake / f"{i}.jpg").write_bytes(jpeg_bytes(100 + i, (320, 256)))
    real = tmp_path / "real"
    assert main(["flux", "collect-real", "--source", "folder", "--folder", str(photos), "--n", "4",
                 "--out", str(real)]) == 0
    assert json.loads(capsys.readouterr().out)["have"] == 4 and len(manifest(real)) == 4
    with pytest.raises(SystemExit, match="--urls FILE"):
        main(["flux", "collect-real", "--source", "urls", "--out", str(real)])
    assert main(["flux", "build", "--fake", str(fake), "--real", str(real), "--out", str(tmp_path / "ds"),
                 "--image-size", "64", "64"]) == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    assert sum(c["FAKE"] for c in counts.values()) == 10 and sum(c["REAL"] for c in counts.values()) == 4
    assert (tmp_path / "ds/summary.json").is_file()
    with pytest.raises(SystemExit, match="not found"):
        main(["flux", "build", "--config", str(tmp_path / "missing.yaml")])
