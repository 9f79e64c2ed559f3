"""A burst of forgets against a big gallery (part of `make bench-gallery`): S3 bytes written and the
time until no snapshot holds a forgotten face.

On the local stack with `--workers 0` (moto's S3, DynamoDB and SQS in their own process): the
gallery is seeded with n synthetic faces (`gallery_cache.import_faces`: one snapshot; plus the
face and order items of the `burst` faces to forget). Then one fresh process plays the enroll
function: it forgets the `burst` faces one after the other, each the way a forget job does it
(`GalleryTable.apply`, `gallery_cache.after_changes`, and, with the coalesced design,
`gallery_purge.request`), and serves the enroll queue's purge messages as a worker would
(`gallery_purge.run`). Every S3 PutObject/UploadPart body it sends is counted. *clean*: seconds
from the first forget until no object under gallery/snapshots/ lists a forgotten image.

Designs: `coalesced` (in use: one delayed purge message, `--purge-delay` seconds, for the burst)
and `each` (before issue 20: each forget compacts at once, before its result), measured up to
`--each-max` faces and computed above it (burst x snapshot size).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TABLE = "lambdaface-GalleryTable"
QUEUE = "bench-enroll-purges"


def seed(n: int, burst: int, env: dict[str, str], bucket: str) -> float:
    """The gallery of n faces (the bench's own synthetic faces); the first `burst` also as items."""
    os.environ.update(env)
    from bench_gallery import synthetic

    from shared.aws import gallery_cache
    from shared.aws.gallery_table import GalleryTable

    people, keys, vectors = synthetic(n)
    t0 = time.perf_counter()
    table = GalleryTable(TABLE)
    gallery_cache.import_faces(table, bucket, people, keys, vectors, items=False, event_time="2026-01-01T00:00:00.000Z")
    table.write_faces(people[:burst], keys[:burst], vectors[:burst], "2026-01-01T00:00:00.000Z")
    return time.perf_counter() - t0


def victims(burst: int) -> list[str]:
    """The image keys of the first `burst` faces (bench_gallery.synthetic's scheme)."""
    return [f"models/person{i // 2:07d}/{i}.jpg" for i in range(burst)]


def play(design: str, n: int, burst: int, bucket: str, delay_s: int) -> dict[str, Any]:
    """In this (fresh) process: the burst, then the purge, as the enroll function runs them."""
    from shared.aws import clients, gallery_cache, gallery_purge, gallery_snapshot
    from shared.aws.gallery_table import Change, GalleryTable

    s3 = clients.client("s3")
    written = {"bytes": 0, "snapshots": 0}

    def count(model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name in ("PutObject", "UploadPart"):
            body = params.get("body", b"")
            written["bytes"] += len(body) if isinstance(body, (bytes, bytearray)) else len(body.getvalue())
            written["snapshots"] += params.get("url_path", "").endswith("/index.json")

    s3.meta.events.register("before-call.s3", count)
    sqs = clients.client("sqs")
    queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    table = GalleryTable(TABLE)
    keys = victims(burst)
    t_load = time.perf_counter()
    gallery_cache.load(table)  # a warm enroll worker
    load_s = time.perf_counter() - t_load
    t0 = time.perf_counter()
    for i, key in enumerate(keys):
        change = Change(key.split("/")[1], key, "", f"2026-06-01T00:00:00.{i:03d}Z")
        outcome = table.apply(change)
        if gallery_cache.after_changes(table, bucket, [outcome], 1000, purge_now=design == "each"):
            gallery_purge.request(table, bucket, queue_url, outcome.seq, delay_s)
        if design == "coalesced":
            gallery_cache.drop(table)  # as the enroll function does now: the purge loads the gallery cold
    forgets_s = time.perf_counter() - t0
    rounds = 0
    while gallery_purge.pending(table) is not None:
        for message in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", []):
            purge = gallery_purge.parse(message["Body"])
            assert purge is not None
            rounds += gallery_purge.run(table, purge.bucket, queue_url, purge.token, delay_s)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    clean_s = time.perf_counter() - t0
    gone = set(keys)
    for prefix in gallery_snapshot.prefixes(bucket):
        index = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "index.json")["Body"].read())
        assert not gone & set(index["keys"]), f"{prefix} still holds a forgotten face"
    return {"kind": "forget_burst", "faces": n, "design": design, "burst": burst,
            "purge_delay_s": delay_s if design == "coalesced" else 0, "measured": True,
            "snapshot_rewrites": written["snapshots"], "s3_bytes_written": written["bytes"],
            "forgets_s": round(forgets_s, 2), "clean_s": round(clean_s, 1), "purge_compactions": rounds,
            "worker_cold_load_s": round(load_s, 2)}


def computed_each(n: int, burst: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The design before issue 20, not run at this size: each forget rewrote the whole snapshot
    (the coalesced run's one rewrite, measured, else the embeddings and person ids alone)."""
    measured = [r["s3_bytes_written"] // r["snapshot_rewrites"] for r in rows
                if r.get("kind") == "forget_burst" and r["faces"] == n and r["design"] == "coalesced"
                and r.get("snapshot_rewrites")]
    per_snapshot = measured[0] if measured else n * 128 * 4 + n * 4
    return {"kind": "forget_burst", "faces": n, "design": "each", "burst": burst, "purge_delay_s": 0, "measured": False,
            "snapshot_rewrites": burst, "s3_bytes_written": burst * per_snapshot}


def merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a results file with `new` burst rows in place of those of the same size and
    design; computed rows follow the measured coalesced rewrite of their size."""
    fresh = {(r["faces"], r["design"]) for r in new}
    rows = [r for r in old if r.get("kind") != "forget_burst" or (r["faces"], r["design"]) not in fresh] + new
    for row in rows:
        if row.get("kind") == "forget_burst" and row.get("measured") is False:
            row.update(computed_each(row["faces"], row["burst"], [r for r in rows if r.get("measured", True)]))
    return rows


def bench(n: int, burst: int, designs: list[str], delay_s: int, each_max: int) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "src"))
    from lambdaface.local.process import StackProcess

    rows = []
    for design in designs:
        if design == "each" and n > each_max:
            rows.append(computed_each(n, burst, rows))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            stderr = Path(tempfile.gettempdir()) / f"bench-gallery-burst-{n}.stderr"
            with StackProcess(Path(tmp) / "state", "--autosave", "0", workers=0, stderr_path=stderr, startup_s=300) as stack:
                env = {"AWS_ENDPOINT_URL": stack.endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "GALLERY_TABLE": TABLE}
                seeded = seed(n, burst, env, stack.bucket)
                print(f"seeded {n} faces in {seeded:.1f} s; burst of {burst} forgets, design {design}", file=sys.stderr)
                run = subprocess.run(
                    [sys.executable, __file__, "--play", design, str(n), str(burst), stack.bucket, str(delay_s)],
                    env={**os.environ, **env, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'benchmarks'}"},
                    capture_output=True, text=True, timeout=3600)
                if run.returncode:
                    raise RuntimeError(run.stderr[-3000:])
                rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


if __name__ == "__main__" and sys.argv[1:2] == ["--play"]:
    design, n, burst, bucket, delay = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
    print(json.dumps(play(design, n, burst, bucket, delay)))
