"""FAKE images through the Replicate API (FLUX-schnell by default).

    export REPLICATE_API_TOKEN=r8_...
    aidetect flux generate --n 1000 --max-cost 5.00
    aidetect flux generate --n 1000 --dry-run        # prompts and cost, no calls

Every image has a plan entry drawn from one seeded RNG (id, prompt, seed), so a re-run
makes exactly the missing ones: nothing finished is generated again, nothing twice.
Transient failures (429, 5xx, timeouts, a response that is not an image) are retried with
exponential backoff, honouring Retry-After; a failed prediction is recorded in
failures.jsonl and left for the next run. ``--max-cost`` caps what this run may spend.
"""

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from aidetect.faults import point
from aidetect.retry import retry_delay
from aidetect.flux.store import Manifest, append_jsonl, atomic_write, clean_temp_files, inspect_image, sha256

log = logging.getLogger(__name__)

TOKEN_VAR = "REPLICATE_API_TOKEN"


class GenerateError(RuntimeError):
    pass


@dataclass(frozen=True)
class Job:
    id: str
    prompt: str
    seed: int


MAX_OUTPUT_BYTES = 50_000_000  # no generated image is near this; a larger body is not an image


def plan(cfg, n: int, seed: int = 0) -> list[Job]:
    """The first n jobs; job i is the same whatever n is, so raising n extends a dataset."""
    rng = random.Random(seed)
    descriptors = list(cfg.descriptors)
    k = int(cfg.descriptors_per_image)
    if k > len(descriptors):
        raise GenerateError(f"generate.descriptors_per_image={k} but only {len(descriptors)} descriptors")
    jobs = []
    for i in range(n):
        prompt = ", ".join([cfg.base_prompt, *rng.sample(descriptors, k)])
        jobs.append(Job(f"{i:06d}", prompt, rng.randrange(2**31)))
    return jobs


class Budget:
    """Spend of this run. A reservation is made before each prediction is created and kept
    (failed predictions are billed too); only a 429, which creates nothing, is refunded."""

    def __init__(self, max_cost: float | None, price: float):
        self.max_cost, self.price, self.spent = max_cost, price, 0.0
        self._lock = threading.Lock()

    def reserve(self) -> bool:
        with self._lock:
            if self.max_cost is not None and self.spent + self.price > self.max_cost + 1e-9:
                return False
            self.spent += self.price
            return True

    def refund(self) -> None:
        with self._lock:
            self.spent -= self.price


class _RetryAfter(threading.local):
    value: str | None = None


def make_client(token: str, base_url: str | None = None, timeout_s: float = 120):
    """The real replicate client; an httpx response hook keeps the last Retry-After header,
    which replicate's exceptions do not carry."""
    import httpx
    import replicate

    retry_after = _RetryAfter()

    def remember(response):
        retry_after.value = response.headers.get("Retry-After") if response.status_code >= 400 else None

    client = replicate.Client(api_token=token, base_url=base_url,
                              timeout=httpx.Timeout(timeout_s, connect=10.0),
                              event_hooks={"response": [remember]})
    client.retry_after = retry_after
    return client


class Generator:
    def __init__(self, cfg, out_dir: Path, client, seed: int = 0, sleep=time.sleep):
        self.cfg, self.out, self.client, self.seed, self.sleep = cfg, Path(out_dir), client, seed, sleep
        self.owner, _, self.name = cfg.model.partition("/")
        if not self.owner or not self.name:
            raise GenerateError(f"generate.model={cfg.model!r} must be owner/name")
        self._abort: str | None = None

    # -- one image ---------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        return retry_delay(attempt, getattr(getattr(self.client, "retry_after", None), "value", None), cap=60.0)

    def _predict(self, job: Job) -> tuple[bytes, dict]:
        from replicate.exceptions import ModelError
        from replicate.helpers import FileOutput

        inputs = {**self.cfg.input, "prompt": job.prompt}
        if self.cfg.get("seed_input"):
            inputs[self.cfg.seed_input] = job.seed
        if self.cfg.get("version"):
            pred = self.client.predictions.create(version=self.cfg.version, input=inputs, wait=True)
        else:
            pred = self.client.models.predictions.create(model=(self.owner, self.name), input=inputs, wait=True)
        pred.wait()
        if pred.status != "succeeded":
            raise ModelError(pred)
        out = pred.output[0] if isinstance(pred.output, list) and pred.output else pred.output
        if not isinstance(out, str):
            raise ValueError(f"prediction {pred.id} returned no file URL: {pred.output!r}")
        if out.split(":", 1)[0].lower() not in ("https", "http", "data"):
            raise ValueError(f"prediction {pred.id} output {out[:80]!r}: only http(s) and data: URLs are fetched")
        # FileOutput fetches through the client (auth, retries); data: URLs are decoded inline.
        data = FileOutput(out, self.client).read()
        if len(data) > MAX_OUTPUT_BYTES:
            raise ValueError(f"prediction {pred.id} output is {len(data)} bytes, over the {MAX_OUTPUT_BYTES} cap")
        return data, {"prediction_id": pred.id, "version": pred.version, "input": inputs}

    def _generate_one(self, job: Job, budget: Budget, manifest: Manifest) -> str:
        """One image within the budget: predict (retrying 429, 5xx, timeouts and non-images with backoff),
        then save it with its manifest line. Returns "ok", "failed", "budget" or "aborted"."""
        import httpx
        from replicate.exceptions import ModelError, ReplicateError

        for attempt in range(int(self.cfg.max_retries) + 1):
            if self._abort:
                return "aborted"
            if not budget.reserve():
                return "budget"
            try:
                data, meta = self._predict(job)
                info = inspect_image(data)  # ValueError when the response is no image
            except ReplicateError as e:
                if e.status == 429:
                    budget.refund()
                if e.status == 429 or (e.status or 0) >= 500:
                    wait = self._backoff(attempt)
                    log.warning("%s: HTTP %s, retrying in %.1f s", job.id, e.status, wait)
                    self.sleep(wait)
                    continue
                # Any other 4xx (bad token, unknown model, invalid input) fails every job alike.
                hint = f": check {TOKEN_VAR}" if e.status in (401, 403) else ""
                self._abort = f"Replicate refused the request (HTTP {e.status}: {e.detail or e.title}){hint}"
                return "aborted"
            except ModelError as e:
                self._fail(job, f"prediction failed: {e.prediction.error}")
                return "failed"
            except (httpx.TimeoutException, httpx.TransportError, ValueError) as e:
                wait = self._backoff(attempt)
                log.warning("%s: %s, retrying in %.1f s", job.id, e, wait)
                self.sleep(wait)
                continue
            self._save(job, data, info, meta, manifest)
            return "ok"
        self._fail(job, f"gave up after {int(self.cfg.max_retries) + 1} attempts")
        return "failed"

    def _save(self, job, data, info, meta, manifest):
        fname = f"{job.id}.{info['ext']}"
        atomic_write(self.out / fname, data)
        point("generate:between_file_and_manifest")
        manifest.add({"id": job.id, "file": fname, "prompt": job.prompt, "seed": job.seed,
                      "model": self.cfg.model, **meta, "sha256": sha256(data), "bytes": len(data),
                      "width": info["width"], "height": info["height"], "format": info["format"],
                      "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    def _fail(self, job, why):
        log.warning("%s failed: %s", job.id, why)
        append_jsonl(self.out / "failures.jsonl", {"id": job.id, "error": why, "time": time.time()})

    # -- a whole run -------------------------------------------------------------------
    def recover(self, jobs: list[Job], manifest: Manifest) -> int:
        """Manifest lines for complete files a kill left without one (from the same plan)."""
        by_id = {j.id: j for j in jobs}
        n = 0
        for p in sorted(self.out.iterdir()):
            jid = p.stem
            if p.name.startswith(".") or jid in manifest or jid not in by_id:
                continue
            data = p.read_bytes()
            try:
                info = inspect_image(data)
            except ValueError:
                p.unlink()
                continue
            job = by_id[jid]
            manifest.add({"id": jid, "file": p.name, "prompt": job.prompt, "seed": job.seed,
                          "model": self.cfg.model, "prediction_id": None, "version": None, "recovered": True,
                          "sha256": sha256(data), "bytes": len(data), "width": info["width"],
                          "height": info["height"], "format": info["format"],
                          "created": datetime.fromtimestamp(p.stat().st_mtime, timezone.utc).isoformat()})
            n += 1
        return n

    def run(self, n: int, max_cost: float | None = None) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        clean_temp_files(self.out)
        jobs = plan(self.cfg, n, self.seed)
        manifest = Manifest(self.out / "manifest.jsonl")
        # A line whose file is missing, or is not a plain file name in this folder (a hand-edited or
        # hostile manifest: "../x.jpg"), does not count: the job is made again, here.
        missing = [i for i, e in manifest.entries.items()
                   if Path(str(e.get("file", ""))).name != e.get("file") or not (self.out / e["file"]).is_file()]
        for i in missing:
            del manifest.entries[i]
        if missing:
            manifest.rewrite()
        recovered = self.recover(jobs, manifest)
        todo = [j for j in jobs if j.id not in manifest]
        budget = Budget(max_cost, float(self.cfg.cost_per_image))
        log.info("%d of %d images exist (%d recovered); generating %d, estimated $%.3f",
                 n - len(todo), n, recovered, len(todo), len(todo) * budget.price)
        with ThreadPoolExecutor(int(self.cfg.concurrency)) as ex:
            results = list(ex.map(lambda j: self._generate_one(j, budget, manifest), todo))
        if self._abort:
            raise GenerateError(self._abort)
        done = sum(1 for j in jobs if j.id in manifest)
        return {"requested": n, "done": done, "generated": results.count("ok"), "recovered": recovered,
                "failed": results.count("failed"), "skipped_for_budget": results.count("budget"),
                "spent_estimate": round(budget.spent, 4)}


def dry_run(cfg, n: int, seed: int, out_dir: Path, max_cost: float | None) -> dict:
    manifest = Manifest(out_dir / "manifest.jsonl") if (out_dir / "manifest.jsonl").exists() else {}
    todo = [j for j in plan(cfg, n, seed) if j.id not in manifest]
    for j in todo:
        print(f"{j.id}\tseed={j.seed}\t{j.prompt}")
    cost = len(todo) * float(cfg.cost_per_image)
    capped = "" if max_cost is None else f" (cap ${max_cost:.2f}: {int(max_cost // float(cfg.cost_per_image))} images)"
    print(f"{len(todo)} images to generate with {cfg.model}, estimated ${cost:.2f}{capped}")
    return {"to_generate": len(todo), "estimated_cost": cost}


def generate(cfg, n: int, out_dir: Path, seed: int = 0, max_cost: float | None = None,
             dry: bool = False, base_url: str | None = None, client=None) -> dict:
    if dry:
        return dry_run(cfg, n, seed, out_dir, max_cost)
    if client is None:
        token = os.environ.get(TOKEN_VAR)
        if not token:  # checked before anything is written
            raise GenerateError(f"{TOKEN_VAR} is not set: create a token at replicate.com/account/api-tokens "
                                f"and `export {TOKEN_VAR}=r8_...` (or use --dry-run to preview)")
        client = make_client(token, base_url, float(cfg.timeout_s))
    return Generator(cfg, out_dir, client, seed).run(n, max_cost)
