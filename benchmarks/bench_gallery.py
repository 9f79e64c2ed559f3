"""make bench-gallery: the gallery at 10^4, 10^5 and 10^6 faces on the local stack.

For each size (GALLERY_SIZES=10000,100000,1000000 or --sizes), a local stack (`--workers 0`: moto's
S3 and DynamoDB with the template's resources) is seeded with synthetic unit-vector faces through
the project's own writer (`gallery_cache.import_faces`: the snapshot, counter and shards, plus the
per-image items up to --items-max faces), then a fresh worker process measures: the cold load,
a change applied by a warm worker, what an enrollment adds to the next recognition, peak RSS,
matching time, and DynamoDB capacity units computed from item sizes (moto's are not real).
Today's design (a consistent scan, rebuilt in Python) is measured at sizes up to --old-max.
Prints a table, then one JSON line per size (and per size of the old design).
Then a burst of --burst forgets at each of --burst-sizes (benchmarks/gallery_forget_burst.py): S3
bytes written and the time until every snapshot is clean. `--sizes ""` runs only the bursts (and
keeps the other rows of --json).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
TABLE = "lambdaface-GalleryTable"
OLD_TABLE = "bench-old-gallery"


def unit_vectors(n: int, seed: int) -> np.ndarray:
    out = np.empty((n, 128), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for start in range(0, n, 100_000):
        v = rng.normal(size=(min(100_000, n - start), 128)).astype(np.float32)
        out[start:start + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def synthetic(n: int) -> tuple[list[str], list[str], np.ndarray]:
    people = [f"person{i // 2:07d}" for i in range(n)]  # two faces a person
    keys = [f"models/{p}/{i}.jpg" for i, p in enumerate(people)]
    return people, keys, unit_vectors(n, seed=n)


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (numbers ~ digits/2 + 1)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if isinstance(value, (bytes, bytearray)):
            size += len(value)
        elif isinstance(value, bool):
            size += 1
        elif isinstance(value, (int, float)):
            size += len(str(value)) // 2 + 1
        else:
            size += len(str(value).encode())
    return size


def seed(n: int, endpoint: str, bucket: str, items: bool) -> float:  # noqa: D103
    os.environ.update(stack_env(endpoint))
    from shared.aws import gallery_cache
    from shared.aws.gallery_table import GalleryTable

    people, keys, vectors = synthetic(n)
    t0 = time.perf_counter()
    gallery_cache.import_faces(GalleryTable(TABLE), bucket, people, keys, vectors, items=items,
                               event_time="2026-01-01T00:00:00.000Z")
    return time.perf_counter() - t0


def stack_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1", "GALLERY_TABLE": TABLE}


def timed_ms(action: Any, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        action()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def measure_new(n: int) -> dict[str, Any]:
    """In a fresh worker process: what a recognize worker pays with the snapshot and the log."""
    from shared.aws import gallery_cache
    from shared.aws.gallery_table import GalleryFace, GalleryTable
    from shared.engine.matching import identify

    table = GalleryTable(TABLE)
    t0 = time.perf_counter()
    gallery = gallery_cache.load(table)
    cold = time.perf_counter() - t0
    assert gallery.size == n, (gallery.size, n)
    query = unit_vectors(1, seed=1)[0]
    match_ms = timed_ms(lambda: identify(query, gallery, 0.6, 3))
    steady_ms = timed_ms(lambda: gallery_cache.load(table), repeat=10)
    applied, added = [], []
    for i in range(5):
        table.put_face(GalleryFace(f"new{i}", f"models/new{i}/a.jpg", unit_vectors(1, seed=100 + i)[0], etag=f"e{i}"))
        t0 = time.perf_counter()
        gallery_cache.load(table)
        applied.append((time.perf_counter() - t0) * 1000)
        table.put_face(GalleryFace(f"new{i}", f"models/new{i}/b.jpg", unit_vectors(1, seed=200 + i)[0], etag=f"f{i}"))
        t0 = time.perf_counter()
        identify(query, gallery_cache.load(table), 0.6, 3)
        added.append((time.perf_counter() - t0) * 1000 - match_ms - steady_ms)
    return {
        "faces": n, "design": "snapshot+log", "cold_load_s": round(cold, 3),
        "change_applied_ms": round(statistics.median(applied), 2),
        "recognize_after_enroll_ms": round(max(0.0, statistics.median(added)), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "match_ms_per_face": round(match_ms, 2),
        "read_units_per_job": read_units_new(), "write_units_per_change": write_units_new(table.shards),
    }


def read_units_new() -> float:
    """One strongly consistent GetItem of one shard (1 RCU: items under 4 KB), plus after a change
    a Query of its log entry (a put: ~0.6 KB, 1 RCU)."""
    return 1.0


def write_units_new(shards: int) -> float:
    """A change is one transaction (2 WCU per KB of each item): counter, log entry, order item,
    face, the shards; plus removing the replaced face's vector from the log (1 WCU)."""
    vector = bytes(512)
    key = "models/person0000001/12.jpg"
    items = [
        {"person": "#meta", "image_key": "#version", "version": 10**6},
        {"person": "#log", "image_key": "0" * 20, "op": "put", "face_person": "person0000001", "face_key": key,
         "etag": "d41d8cd98f00b204e9800998ecf8427e", "vector": vector},
        {"person": "#order", "image_key": key, "sequencer": "0055AED6DCD90281E5", "event_time": "2026-11-28T12:00:00.000Z",
         "deleted": False, "log_seq": 10**6, "face_person": "person0000001", "etag": "d41d8cd98f00b204e9800998ecf8427e",
         "removed": False, "prev_log_seq": 10**6},
        {"person": "person0000001", "image_key": key, "embedding": vector, "etag": "d41d8cd98f00b204e9800998ecf8427e",
         "enrolled_at": "2026-11-28T12:00:00.000Z"},
        *({"person": "#shard", "image_key": str(i), "version": 10**6} for i in range(shards)),
    ]
    return float(2 * sum(math.ceil(item_size(i) / 1024) for i in items) + 1)


def measure_old(n: int) -> dict[str, Any]:
    """Today's design, as it was: a consistent GetItem of the version per job; on a change, a
    consistent scan of the whole table, each item parsed, the Gallery rebuilt."""
    from shared.aws import dynamo
    from shared.aws.clients import client
    from shared.aws.gallery_table import decode
    from shared.engine.matching import Gallery, identify

    def load() -> Gallery:
        pages = client("dynamodb").get_paginator("scan").paginate(TableName=OLD_TABLE, ConsistentRead=True)
        pairs = []
        for page in pages:
            for raw in page.get("Items", []):
                item = dynamo.from_item(raw)
                if "embedding" in item and not str(item["person"]).startswith("#"):
                    pairs.append((item["person"], decode(item["embedding"])))
        return Gallery.from_pairs(pairs)

    t0 = time.perf_counter()
    gallery = load()
    cold = time.perf_counter() - t0
    query = unit_vectors(1, seed=1)[0]
    match_ms = timed_ms(lambda: identify(query, gallery, 0.6, 3))
    face_bytes = item_size({"person": "person0000001", "image_key": "models/person0000001/12.jpg", "embedding": bytes(512),
                            "etag": "", "enrolled_at": "2026-01-01T00:00:00.000Z"})
    return {
        "faces": n, "design": "scan (before)", "cold_load_s": round(cold, 3),
        "change_applied_ms": round(cold * 1000, 1),  # every change: the whole scan again
        "recognize_after_enroll_ms": round(cold * 1000, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "match_ms_per_face": round(match_ms, 2),
        "read_units_per_job": 1.0, "read_units_per_rescan": math.ceil(n * face_bytes / 4096),
        "write_units_per_change": 2.0,
    }


def child(mode: str, n: int, endpoint: str) -> dict[str, Any]:
    env = {**os.environ, **stack_env(endpoint), "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run([sys.executable, __file__, f"--{mode}", str(n)], env=env, capture_output=True, text=True,
                         timeout=1800)
    if run.returncode:
        raise RuntimeError(run.stderr[-3000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def bench_size(n: int, old_max: int, items_max: int) -> list[dict[str, Any]]:
    from lambdaface.local.process import StackProcess

    with tempfile.TemporaryDirectory() as tmp:
        stderr = Path(tempfile.gettempdir()) / f"bench-gallery-stack-{n}.stderr"  # kept for a post-mortem
        with StackProcess(Path(tmp) / "state", "--autosave", "0", workers=0, stderr_path=stderr,
                          startup_s=300) as stack:
            seeded = seed(n, stack.endpoint, stack.bucket, items=n <= items_max)
            print(f"seeded {n} faces in {seeded:.1f} s", file=sys.stderr)
            rows = [child("measure-new", n, stack.endpoint)]
            if n <= old_max:
                seed_old(n, stack.endpoint)
                rows.append(child("measure-old", n, stack.endpoint))
            return rows


def seed_old(n: int, endpoint: str) -> None:
    """Today's design's table: one item per face, nothing else (its own table, so that the scan
    reads exactly what it read before)."""
    import boto3

    db = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    db.create_table(TableName=OLD_TABLE, BillingMode="PAY_PER_REQUEST",
                    KeySchema=[{"AttributeName": "person", "KeyType": "HASH"}, {"AttributeName": "image_key", "KeyType": "RANGE"}],
                    AttributeDefinitions=[{"AttributeName": "person", "AttributeType": "S"},
                                          {"AttributeName": "image_key", "AttributeType": "S"}])
    people, keys, vectors = synthetic(n)
    for start in range(0, n, 25):
        requests = [{"PutRequest": {"Item": {"person": {"S": p}, "image_key": {"S": k}, "embedding": {"B": v.tobytes()},
                                             "etag": {"S": ""}, "enrolled_at": {"S": "2026-01-01T00:00:00.000Z"}}}}
                    for p, k, v in zip(people[start:start + 25], keys[start:start + 25], vectors[start:start + 25])]
        pending: dict[str, Any] = {OLD_TABLE: requests}
        while pending:
            pending = db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["faces", "design", "cold_load_s", "change_applied_ms", "recognize_after_enroll_ms", "peak_rss_mb",
            "match_ms_per_face", "read_units_per_job", "write_units_per_change"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=os.environ.get("GALLERY_SIZES", "10000,100000,1000000"))
    parser.add_argument("--old-max", type=int, default=100_000, help="measure today's design up to this size")
    parser.add_argument("--items-max", type=int, default=10_000,
                        help="also write the per-image items up to this size (moto's TransactWriteItems deep-copies "
                             "the table once per item, which makes each change minutes long at 10^5 items)")
    parser.add_argument("--json", type=Path, help="also write the rows here (a list)")
    parser.add_argument("--burst-sizes", default=os.environ.get("GALLERY_BURST_SIZES", "100000,1000000"),
                        help="gallery sizes at which a burst of forgets is measured")
    parser.add_argument("--burst", type=int, default=100, help="forgets in a burst")
    parser.add_argument("--burst-designs", default="coalesced,each")
    parser.add_argument("--purge-delay", type=int, default=60, help="LAMBDAFACE_GALLERY_PURGE_DELAY_S of the run")
    parser.add_argument("--each-max", type=int, default=100_000,
                        help="run the design before issue 20 (a rewrite per forget) up to this size; computed above")
    parser.add_argument("--measure-new", type=int)
    parser.add_argument("--measure-old", type=int)
    args = parser.parse_args()
    if args.measure_new is not None:
        print(json.dumps(measure_new(args.measure_new)))
        return
    if args.measure_old is not None:
        print(json.dumps(measure_old(args.measure_old)))
        return
    import gallery_forget_burst

    rows = []
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    for n in sizes:
        rows += bench_size(n, args.old_max, args.items_max)
    if rows:
        print(table(rows))
    bursts = []
    for n in (int(s) for s in args.burst_sizes.split(",") if s.strip()):
        bursts += gallery_forget_burst.bench(n, args.burst, args.burst_designs.split(","), args.purge_delay, args.each_max)
    for row in rows + bursts:
        print(json.dumps(row))
    if args.json:
        if not sizes and args.json.exists():  # only bursts were run: keep the other rows
            rows = json.loads(args.json.read_text())
        args.json.write_text(json.dumps(gallery_forget_burst.merge(rows, bursts), indent=1) + "\n")


if __name__ == "__main__":
    main()
