"""The synchronous API on the local stack: latency of a one-face photo through POST /recognize (one
warm API worker) beside the engine's own time for the same photo and beside upload-to-result
through S3; the API's overhead above the engine; throughput with 1 and 2 API workers.

    .venv/bin/python benchmarks/bench_sync_api.py [--requests 60] [--uploads 15] [--json PATH]

The photo is ../shared/faces/seed/john1.jpg (one face), john0 enrolled. Each API call is what
`lambdaface recognize --sync` sends (SigV4, one kept-open connection). The engine's time is the
worker's own `timings_ms` for the call (decode + detect_embed + match), and, as a check, the same
stages in this process; the overhead is latency minus the worker's engine time, per call (HTTP,
the guard, the event's base64 and pipe to the worker, the gallery's freshness check on moto).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lambdaface import client, sync_client, watch  # noqa: E402
from lambdaface.local.process import REGION, StackProcess  # noqa: E402

ENGINE_STAGES = ("decode", "detect_embed", "match")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(pct(values, 0.5), 2), "p95": round(pct(values, 0.95), 2), "mean": round(statistics.mean(values), 2),
            "n": len(values)}


def api_client(stack: StackProcess) -> sync_client.ApiClient:
    from botocore.credentials import Credentials

    return sync_client.ApiClient(stack.endpoint, REGION, Credentials(stack.keys.access_key_id, stack.keys.secret_access_key))


def enroll(stack: StackProcess, faces: Path) -> None:
    s3 = stack.client("s3")
    sent = client.upload(s3, stack.bucket, faces / "seed" / "john0.jpg", "models/john/john0.jpg", "enroll")
    found = watch.wait_for(s3, stack.bucket, [sent], timeout=300)
    assert found[sent.source] and found[sent.source]["status"] == "succeeded", found


def latency(stack: StackProcess, photo: bytes, count: int) -> dict[str, Any]:
    api = api_client(stack)
    for _ in range(5):  # warm: models, the gallery, the connection
        api.recognize(photo)
    total, engine, overhead, check = [], [], [], []
    for _ in range(count):
        started = time.perf_counter()
        doc = api.recognize(photo)
        ms = (time.perf_counter() - started) * 1000
        assert doc["people"] == ["john"], doc
        own = sum(doc["timings_ms"].get(stage, 0.0) for stage in ENGINE_STAGES)
        total.append(ms)
        engine.append(own)
        overhead.append(ms - own)
        check.append(doc["timings_ms"].get("load_gallery", 0.0))
    return {"latency_ms": summary(total), "engine_in_worker_ms": summary(engine), "overhead_ms": summary(overhead),
            "gallery_check_ms": summary(check)}


def engine_here(photo: bytes, count: int) -> dict[str, float]:
    """decode + detect_embed + match of the photo in this process (warm), against a one-face gallery."""
    import numpy as np

    from shared.config import EngineConfig
    from shared.engine.decode import decode_image
    from shared.engine.faces import find_faces
    from shared.engine.matching import Gallery, identify

    cfg = EngineConfig()
    gallery = Gallery.from_pairs([("john", np.random.default_rng(1).normal(size=128).astype(np.float32))])
    times = []
    for i in range(count + 3):
        started = time.perf_counter()
        faces = find_faces(decode_image(photo, cfg), cfg)
        identify(np.asarray([f.embedding for f in faces], dtype=np.float32), gallery, cfg.threshold, cfg.top_k)
        if i >= 3:
            times.append((time.perf_counter() - started) * 1000)
    return summary(times)


def upload_to_result(stack: StackProcess, photo: bytes, count: int) -> dict[str, float]:
    """One upload at a time to queries/, until its result is there (polled every 10 ms)."""
    s3 = stack.client("s3")
    times = []
    for i in range(count):
        key = f"queries/bench/sync-{i}.jpg"
        started = time.perf_counter()
        s3.put_object(Bucket=stack.bucket, Key=key, Body=photo, ContentType="image/jpeg")
        while True:
            try:
                s3.get_object(Bucket=stack.bucket, Key=f"results/{key}.json")["Body"].read()
                break
            except s3.exceptions.NoSuchKey:
                time.sleep(0.01)
        times.append((time.perf_counter() - started) * 1000)
    return summary(times)


def throughput(stack: StackProcess, photo: bytes, clients: int, seconds: float) -> dict[str, float]:
    """Calls per second with `clients` callers in a loop for `seconds` (429s retried by the client)."""
    apis = [api_client(stack) for _ in range(clients)]
    for api in apis:
        api.recognize(photo)
    done = [0] * clients
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        while time.monotonic() < stop:
            apis[i].recognize(photo)
            done[i] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {"calls": sum(done), "seconds": round(elapsed, 2), "per_s": round(sum(done) / elapsed, 2),
            "clients": clients, "retries": sum(a.retries for a in apis)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=Path(os.environ.get("LAMBDAFACE_FACES", ROOT.parent / "shared" / "faces")))
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--uploads", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=20.0, help="each throughput run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    photo = (args.faces / "seed" / "john1.jpg").read_bytes()
    figures: dict[str, Any] = {"photo": "seed/john1.jpg", "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                               "throughput": {}}
    with tempfile.TemporaryDirectory() as tmp:
        with StackProcess(Path(tmp) / "one", "--api-workers", "1", workers=1) as stack:
            enroll(stack, args.faces)
            figures.update(latency(stack, photo, args.requests))
            figures["upload_to_result_ms"] = upload_to_result(stack, photo, args.uploads)
            figures["throughput"]["1"] = throughput(stack, photo, 2, args.seconds)
            figures["api_worker_peak_rss_mb"] = round(stack.peak_rss_mb("ApiFunction"), 1)
            stack.stop()
        figures["engine_here_ms"] = engine_here(photo, args.requests)
        with StackProcess(Path(tmp) / "two", "--api-workers", "2", workers=1) as stack:
            enroll(stack, args.faces)
            figures["throughput"]["2"] = throughput(stack, photo, 4, args.seconds)
            stack.stop()
    figures["load_average"] = round(os.getloadavg()[0], 1)
    lat, eng, over = figures["latency_ms"], figures["engine_in_worker_ms"], figures["overhead_ms"]
    print(f"one-face photo, 1 warm API worker ({lat['n']} calls)   p50 ms   p95 ms")
    print(f"  through the API (client to client)       {lat['p50']:>7.1f}  {lat['p95']:>7.1f}")
    print(f"  the engine in the worker                  {eng['p50']:>7.1f}  {eng['p95']:>7.1f}")
    print(f"  the engine in this process                {figures['engine_here_ms']['p50']:>7.1f}  {figures['engine_here_ms']['p95']:>7.1f}")
    print(f"  API overhead (latency - engine)           {over['p50']:>7.1f}  {over['p95']:>7.1f}   target < 30 at p50")
    print(f"    of which the gallery's freshness check   {figures['gallery_check_ms']['p50']:>7.1f}  {figures['gallery_check_ms']['p95']:>7.1f}")
    up = figures["upload_to_result_ms"]
    print(f"  upload to result through S3 ({up['n']})        {up['p50']:>7.1f}  {up['p95']:>7.1f}")
    print(f"  the API worker's peak memory: {figures['api_worker_peak_rss_mb']} MiB")
    for workers, t in figures["throughput"].items():
        print(f"throughput, {workers} API worker(s), {t['clients']} callers: {t['per_s']:.2f} calls/s "
              f"({t['calls']} in {t['seconds']} s, {t['retries']} retries)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
