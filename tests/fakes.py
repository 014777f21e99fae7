"""Loopback HTTP servers that speak the Replicate predictions API and the Openverse image
search API, well enough for the real clients (replicate, requests) to talk to them."""

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image


def jpeg_bytes(seed: int, size=(96, 54)) -> bytes:
    rng = np.random.default_rng(seed)
    w, h = size
    arr = (rng.random((h // 6 + 1, w // 6 + 1, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(arr).resize((w, h), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


class FakeServer:
    """Base: start() on a free loopback port, stop(); `requests` records (method, path)."""

    def __init__(self):
        self.requests, self.lock = [], threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer._record(self)
                outer.handle(self, "GET")

            def do_POST(self):
                outer._record(self)
                outer.handle(self, "POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _record(self, h):
        with self.lock:
            self.requests.append((h.command, h.path, h.headers.get("Authorization")))

    def start(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def send(h, status, body=b"", ctype="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)


class FakeReplicate(FakeServer):
    """POST /v1/models/{owner}/{name}/predictions, GET /v1/predictions/{id}, GET /files/{id}.jpg.

    ``script`` is a list of behaviours consumed one per prediction request, then "ok":
    "ok", "429" (with Retry-After), "500", "failed" (prediction fails), "notimage"
    (the output URL serves HTML), "slow" (processing first, needs polling).
    ``delay`` seconds are spent on each creation (for kill tests).
    """

    VERSION = "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637"

    def __init__(self, script=(), delay=0.0, retry_after="1"):
        super().__init__()
        self.script, self.delay, self.retry_after = list(script), delay, retry_after
        self.predictions, self.n = {}, 0

    def handle(self, h, method):
        path = h.path.split("?")[0]
        if method == "POST" and path.startswith("/v1/models/") and path.endswith("/predictions"):
            body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
            with self.lock:
                action = self.script.pop(0) if self.script else "ok"
                self.n += 1
                pid = f"p{self.n:04d}"
            if self.delay:
                time.sleep(self.delay)
            if action == "429":
                return self.send(h, 429, {"title": "Too Many Requests", "detail": "slow down", "status": 429},
                                 headers={"Retry-After": self.retry_after})
            if action == "500":
                return self.send(h, 500, {"title": "Internal Server Error", "status": 500})
            model = path[len("/v1/models/"):-len("/predictions")]
            pred = {"id": pid, "model": model, "version": self.VERSION, "input": body["input"], "logs": "",
                    "error": None, "metrics": {}, "created_at": "2026-01-01T00:00:00Z", "started_at": None,
                    "completed_at": None, "urls": {"get": f"{self.url}/v1/predictions/{pid}"},
                    "status": "succeeded", "output": [f"{self.url}/files/{pid}.jpg"]}
            if action == "failed":
                pred.update(status="failed", output=None, error="NSFW content detected")
            elif action == "slow":
                pred.update(status="processing", output=None)
            self.predictions[pid] = {"pred": pred, "action": action, "seed": body["input"].get("seed", 0)}
            return self.send(h, 201, pred)
        if method == "GET" and path.startswith("/v1/predictions/"):
            rec = self.predictions.get(path.rsplit("/", 1)[1])
            if rec is None:
                return self.send(h, 404, {"detail": "not found", "status": 404})
            pred = dict(rec["pred"])
            if rec["action"] == "slow":
                pred.update(status="succeeded", output=[f"{self.url}/files/{pred['id']}.jpg"])
            return self.send(h, 200, pred)
        if method == "GET" and path.startswith("/files/"):
            pid = path.rsplit("/", 1)[1].split(".")[0]
            rec = self.predictions.get(pid)
            if rec is None:
                return self.send(h, 404, b"")
            if rec["action"] == "notimage":
                return self.send(h, 200, b"<html>rate limited</html>", "text/html")
            return self.send(h, 200, jpeg_bytes(rec["seed"]), "image/jpeg")
        self.send(h, 404, {"detail": f"no route {method} {path}", "status": 404})


class FakeOpenverse(FakeServer):
    """GET /v1/images/?q=...&page=N&page_size=K over a fixed catalogue; GET /img/{k}.jpg."""

    def __init__(self, catalogue):
        """catalogue: list of dicts with 'kind': 'ok' | 'dup_of:<k>' | 'near_dup_of:<k>' |
        'notimage' | 'tiny' | 'huge' | '404' | '500_once'."""
        super().__init__()
        self.catalogue, self.served_500 = catalogue, set()

    def image_bytes(self, k):
        kind = self.catalogue[k]["kind"]
        if kind.startswith("dup_of:"):
            return self.image_bytes(int(kind.split(":")[1]))
        if kind.startswith("near_dup_of:"):
            src = Image.open(io.BytesIO(self.image_bytes(int(kind.split(":")[1]))))
            buf = io.BytesIO()
            src.save(buf, "JPEG", quality=60)  # re-encoded: other bytes, same picture
            return buf.getvalue()
        if kind == "tiny":
            return jpeg_bytes(k, (40, 30))
        return jpeg_bytes(1000 + k, (320, 240))

    def handle(self, h, method):
        from urllib.parse import parse_qs, urlparse
        u = urlparse(h.path)
        if u.path == "/v1/images/":
            q = {k: v[0] for k, v in parse_qs(u.query).items()}
            size, page = int(q.get("page_size", 20)), int(q.get("page", 1))
            items = self.catalogue[(page - 1) * size: page * size]
            results = [{"id": f"ov-{(page - 1) * size + i}", "title": f"photo {i}",
                        "url": f"{self.url}/img/{(page - 1) * size + i}.jpg", "creator": f"creator{i}",
                        "creator_url": None, "license": "by", "license_version": "4.0",
                        "license_url": "https://creativecommons.org/licenses/by/4.0/",
                        "foreign_landing_url": f"https://example.org/photo/{i}", "provider": "flickr"}
                       for i, _ in enumerate(items)]
            return self.send(h, 200, {"result_count": len(self.catalogue), "page": page, "page_size": size,
                                      "page_count": -(-len(self.catalogue) // size), "results": results})
        if u.path.startswith("/img/"):
            k = int(u.path.rsplit("/", 1)[1].split(".")[0])
            kind = self.catalogue[k]["kind"]
            if kind == "404":
                return self.send(h, 404, b"")
            if kind == "500_once" and k not in self.served_500:
                self.served_500.add(k)
                return self.send(h, 500, b"")
            if kind == "notimage":
                return self.send(h, 200, b"<html>login</html>", "text/html")
            if kind == "huge":
                return self.send(h, 200, b"\xff\xd8" + b"0" * 3_000_000, "image/jpeg")
            return self.send(h, 200, self.image_bytes(k), "image/jpeg")
        self.send(h, 404, b"")
