"""make bench-unknowns: grouping unknown faces at 10^4 and 10^5 remembered faces.

For each size (UNKNOWN_SIZES=10000,100000 or --sizes) moto's server (ThreadedMotoServer on
127.0.0.1, in this process) gets a fresh table (person HASH / image_key RANGE, on demand) and bucket,
seeded with synthetic look-alike faces through the project's own writer
(`gallery_cache.import_faces` on the UnknownStore's table: the snapshot under unknowns/snapshots/,
the counter and shards; the per-face items only up to --items-max faces, by default none, see
--items-max). A fresh process then measures what a recognition worker pays:

1. the cold load (`store.gallery()`: the snapshot), seconds and peak RSS;
2. `clustering.assign` of one new face against the loaded store (--queries faces: half near a
   remembered identity, half new identities), median and p95 ms, and whether each got the right cluster;
3. a face remembered as `unknowns.remember_photo` does it, step by step: the catch-up
   (`store.gallery()` after the previous face's change), assign, `store.remember` (one
   TransactWriteItems; moto's cost, not DynamoDB's), `store.settle`; the API calls each face makes,
   and the DynamoDB capacity units they would bill (from the sizes of the items actually written);
   `remember_photo` itself on a few more faces as a cross-check; one compaction (what every
   `gallery_compact_every`-th face pays);
4. the hourly sweep's re-grouping (`clustering.regroup`: `edges`, then dlib's Chinese whispers) on
   the seeded clusters (all right: merges should be 0), and again with --duplicates of the faces
   relabelled (in memory) into a wrong duplicate cluster of their own identity: how many it reunites.

Faces: N/5 identities with 5 faces each; an identity's centre is a random direction at radius
RADIUS, a face the centre plus Gaussian noise of a per-face scale in SIGMA, so that faces of one
identity are about 0.3-0.5 apart and faces of different identities above 0.7 (like dlib's
descriptors; the measured ranges are printed and kept in the JSON).
Prints a table, then one JSON line per size; --json writes the list.
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
import time
import zlib
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

FACES_PER_IDENTITY = 5
RADIUS = 0.65  # identity centres: random directions at this norm (different identities ~0.7-1.1 apart)
SIGMA = (0.017, 0.028)  # per-face noise scale per component (same identity ~0.27-0.5 apart)
EVENT_TIME = "2026-01-01T00:00:00.000Z"


# --- synthetic faces (the parent seeds them, the child regenerates the same arrays) ----------


def directions(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def faces_of(rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    scale = rng.uniform(*SIGMA, size=len(centres)).astype(np.float32)
    return centres + rng.normal(size=centres.shape).astype(np.float32) * scale[:, None]


def synthetic(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(identity of each face, identity centres, face embeddings), the same for the same n."""
    rng = np.random.default_rng(n)
    identities = math.ceil(n / FACES_PER_IDENTITY)
    centres = directions(rng, identities) * RADIUS
    identity = np.arange(n) // FACES_PER_IDENTITY
    return identity, centres, faces_of(rng, centres[identity])


def cluster_id(identity: int) -> str:
    return f"u-{identity:012x}"


def source_key(i: int) -> str:
    return f"uploads/cam{i % 7}/{i:08d}.jpg"


def etag(i: int) -> str:
    return f"{i:032x}"


def queries(n: int, centres: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` new faces, alternately near a remembered identity and of a new identity; the
    identity of each (-1: new)."""
    rng = np.random.default_rng(n + 1)
    near = rng.choice(len(centres), size=count, replace=False)
    fresh = directions(rng, count) * RADIUS
    expected = np.where(np.arange(count) % 2 == 0, near, -1)
    base = np.where((expected >= 0)[:, None], centres[np.maximum(expected, 0)], fresh)
    return faces_of(rng, base.astype(np.float32)), expected


def distance_ranges(identity: np.ndarray, faces: np.ndarray, q: np.ndarray, expected: np.ndarray) -> dict[str, Any]:
    """Measured distances: same identity, nearest other identity (over every face), and the new
    faces' nearest remembered face."""
    rng = np.random.default_rng(7)
    sample = rng.choice(len(faces), size=min(300, len(faces)), replace=False)
    sq = np.einsum("ij,ij->i", faces, faces)

    def dist(x: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(np.einsum("ij,ij->i", x, x)[:, None] - 2 * x @ faces.T + sq[None, :], 0))

    within, other, typical = [], [], []
    for chunk in np.array_split(sample, max(1, len(sample) // 25)):  # 25 rows at a time: little memory
        d = dist(faces[chunk])
        same = identity[chunk][:, None] == identity[None, :]
        self_ = np.zeros_like(same)
        self_[np.arange(len(chunk)), chunk] = True
        within.append(d[same & ~self_])
        other.append(np.where(same, np.inf, d).min(axis=1))
        typical.append(np.median(d[~same]))
    within, other = np.concatenate(within), np.concatenate(other)
    dq = np.concatenate([dist(part).min(axis=1) for part in np.array_split(q, max(1, len(q) // 25))])
    near, new = dq[expected >= 0], dq[expected < 0]

    def r(x: np.ndarray) -> list[float]:
        return [round(float(x.min()), 3), round(float(np.median(x)), 3), round(float(x.max()), 3)]

    return {"same_identity": r(within), "nearest_other_identity": r(other),
            "typical_other_identity": round(float(np.median(typical)), 3),
            "query_near_to_nearest": r(near), "query_new_to_nearest": r(new)}


# --- the parent: moto, the table, the seed --------------------------------------------------


def names(n: int) -> tuple[str, str]:
    return f"bench-unknowns-{n}", f"bench-unknowns-{n}"


def moto_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1"}


def create(table: str, bucket: str) -> None:
    import boto3

    db = boto3.client("dynamodb")
    db.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                    KeySchema=[{"AttributeName": "person", "KeyType": "HASH"},
                               {"AttributeName": "image_key", "KeyType": "RANGE"}],
                    AttributeDefinitions=[{"AttributeName": "person", "AttributeType": "S"},
                                          {"AttributeName": "image_key", "AttributeType": "S"}])
    boto3.client("s3").create_bucket(Bucket=bucket)


def drop(table: str, bucket: str) -> None:
    """Free moto's memory before the next size."""
    import boto3

    boto3.client("dynamodb").delete_table(TableName=table)
    s3 = boto3.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)


def seed(n: int, items: bool) -> float:
    from shared.aws import gallery_cache
    from shared.aws.unknowns_table import UnknownStore, face_id

    table, bucket = names(n)
    create(table, bucket)
    identity, _, faces = synthetic(n)
    people = [cluster_id(int(i)) for i in identity]
    keys = [face_id(source_key(i), etag(i), "0") for i in range(n)]
    store = UnknownStore(table, bucket)
    part = np.array([zlib.crc32(k.encode()) % len(store.partitions) for k in keys])  # where the store puts each face
    t0 = time.perf_counter()
    for index, partition in enumerate(store.partitions):
        rows = np.flatnonzero(part == index)
        gallery_cache.import_faces(partition, bucket, [people[i] for i in rows], [keys[i] for i in rows], faces[rows],
                                   items=items, event_time=EVENT_TIME)
    return time.perf_counter() - t0


def moto_items_probe(n: int, faces: int) -> dict[str, Any]:
    """What one remembered face costs moto when the per-face items are there (`n` of them): the
    reason the sizes above are seeded without them."""
    from shared.aws.unknowns_table import UnknownFace, UnknownStore, face_id, now_iso

    table, bucket = names(n)
    seed(n, items=True)
    store = UnknownStore(table, bucket)
    _, centres, _ = synthetic(n)
    q, _ = queries(n, centres, faces)
    times = []
    for j in range(faces):
        i = n + j
        face = UnknownFace(face_id(source_key(i), etag(i), "0"), cluster_id(i), source_key(i), {}, now_iso(),
                           embedding=q[j], etag=etag(i))
        t, _ = timed(lambda: store.remember(face, f"{i:018X}", now_iso()))
        times.append(t)
    drop(table, bucket)
    return {"faces": n, "remember_ms": ms(times)["median"]}


def child(n: int, endpoint: str, args: argparse.Namespace, items: bool) -> dict[str, Any]:
    table, bucket = names(n)
    env = {**os.environ, **moto_env(endpoint), "PYTHONPATH": str(ROOT / "src"), "UNKNOWNS_TABLE": table,
           "LAMBDAFACE_BUCKET": bucket, "LAMBDAFACE_REMEMBER_UNKNOWNS": "true"}
    command = [sys.executable, __file__, "--measure", str(n), "--queries", str(args.queries), "--remember",
               str(args.remember), "--duplicates", str(args.duplicates)] + (["--items"] if items else [])
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    sys.stderr.write(run.stderr)
    if run.returncode:
        raise RuntimeError(f"measuring {n} faces failed ({run.returncode})")
    return json.loads(run.stdout.strip().splitlines()[-1])


# --- the child: what a worker pays ----------------------------------------------------------


class Calls:
    """Every AWS call this process makes (botocore events), with the items of each transaction."""

    def __init__(self) -> None:
        self.ops: Counter = Counter()
        self.transactions: list[list[dict[str, Any]]] = []

    def attach(self, service: str) -> None:
        from shared.aws.clients import client

        events = client(service).meta.events
        events.register(f"before-call.{service}", self._call)
        if service == "dynamodb":
            events.register("before-parameter-build.dynamodb.TransactWriteItems", self._transaction)

    def _call(self, model: Any, **_: Any) -> None:
        self.ops[f"{model.service_model.service_name}.{model.name}"] += 1

    def _transaction(self, params: dict[str, Any], **_: Any) -> None:
        self.transactions.append(params["TransactItems"])

    def reset(self) -> None:
        self.ops.clear()
        self.transactions.clear()


def attribute_size(value: dict[str, Any]) -> int:
    """DynamoDB's size of one attribute value (low-level form; numbers ~ digits/2 + 1)."""
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "B":
        return len(v)
    if kind == "N":
        return len(v.lstrip("-").replace(".", "")) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(x) + 1 for k, x in v.items())
    if kind == "L":
        return 3 + sum(attribute_size(x) + 1 for x in v)
    return len(str(v))


def transaction_write_units(items: list[dict[str, Any]]) -> tuple[int, list[int]]:
    """Write units of one TransactWriteItems (2 per KB of each item); Update and Delete items
    are counted as 1 KB (here: the counter, the shards, a moved face's old item: all under 1 KB)."""
    units, sizes = 0, []
    for entry in items:
        (op, body), = entry.items()
        if op == "Put":
            size = sum(len(k.encode()) + attribute_size(v) for k, v in body["Item"].items())
            sizes.append(size)
            units += 2 * math.ceil(size / 1024)
        else:
            units += 2
    return units, sizes


def ms(seconds: list[float]) -> dict[str, float]:
    values = sorted(s * 1000 for s in seconds)
    p95 = values[min(len(values) - 1, math.ceil(0.95 * len(values)) - 1)]
    return {"median": round(statistics.median(values), 2), "p95": round(p95, 2), "max": round(values[-1], 2)}


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = action()
    return time.perf_counter() - t0, value


def rss_mb() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss would include the parent's, moto's, from before exec)."""
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
        return round(int(line.split()[1]) / 1024, 1)
    except (OSError, StopIteration):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(n: int, query_count: int, remember_count: int, duplicates: float, items: bool) -> dict[str, Any]:
    import dlib

    from shared.aws import gallery_cache
    from shared.aws.unknowns_table import UnknownFace, face_id, now_iso
    from shared.config import current_config
    from shared.engine import clustering
    from shared.pipeline import unknowns

    config = current_config()
    p = config.pipeline
    threshold = p.unknown_threshold
    store = unknowns.store_for(config, p.bucket)
    calls = Calls()
    for service in ("dynamodb", "s3"):
        calls.attach(service)
    row: dict[str, Any] = {"faces": n, "identities": math.ceil(n / FACES_PER_IDENTITY), "items_seeded": items,
                           "threshold": threshold, "shards": store.partitions[0].shards,
                           "partitions": len(store.partitions)}

    # 1. The cold load.
    cold, galleries = timed(store.galleries)
    gallery = merged(galleries)  # the same faces as one Gallery, for the re-grouping figures
    assert gallery.size == n, (gallery.size, n)
    row["cold_load_s"] = round(cold, 3)
    row["peak_rss_mb_after_load"] = rss_mb()
    row["cold_load_calls"] = dict(calls.ops)

    # 2. assign: one new face at a time.
    identity, centres, faces = synthetic(n)
    q, expected = queries(n, centres, max(query_count, remember_count + 20))
    row["distances"] = distance_ranges(identity, faces, q, expected)
    clustering.assign(q[:1], galleries, threshold)  # warm
    remembered = set(gallery.names)
    times, right = [], 0
    for face, who in zip(q[:query_count], expected[:query_count]):
        t, (cluster,) = timed(lambda: clustering.assign(face[None], galleries, threshold))
        times.append(t)
        right += cluster == cluster_id(int(who)) if who >= 0 else cluster not in remembered
    row["assign_ms"] = ms(times)
    row["assign_right"] = f"{right}/{query_count}"

    # 4. Re-grouping (before the store changes: exactly the seeded faces).
    row["peak_rss_mb_before_regroup"] = rss_mb()
    row["regroup"] = regroup_figures(gallery, identity, duplicates, threshold, clustering, dlib)
    row["peak_rss_mb_after_regroup"] = rss_mb()

    # 3. Remembering, step by step as remember_photo does it.
    steps: dict[str, list[float]] = {"catch_up": [], "assign": [], "remember": [], "settle": [], "total": []}
    calls.reset()
    for j in range(remember_count):
        i = n + j
        source = source_key(i)
        t_load, g = timed(store.galleries)
        t_assign, (cluster,) = timed(lambda: clustering.assign(q[j][None], g, threshold))
        face = UnknownFace(face_id(source, etag(i), "0"), cluster, source, {"left": 10, "top": 20, "width": 96, "height": 96},
                           now_iso(), embedding=q[j], etag=etag(i))
        t_remember, outcome = timed(lambda: store.remember(face, f"{i:018X}", now_iso()))
        assert outcome.applied, outcome
        t_settle, _ = timed(lambda: store.settle(p.gallery_compact_every))
        if j:  # the first load follows no change
            steps["catch_up"].append(t_load)
        for name, t in (("assign", t_assign), ("remember", t_remember), ("settle", t_settle)):
            steps[name].append(t)
        steps["total"].append(t_load + t_assign + t_remember + t_settle)
    ops = {k: round(v / remember_count, 2) for k, v in sorted(calls.ops.items())}
    units = [transaction_write_units(items) for items in calls.transactions]
    row["remember_steps_ms"] = {k: ms(v)["median"] for k, v in steps.items()}
    row["remember_total_ms"] = ms(steps["total"])
    k = max(1, remember_count // 5)  # moto's transaction deep-copies the table: it slows as the table grows
    row["remember_ms_first_last"] = [ms(steps["remember"][:k])["median"], ms(steps["remember"][-k:])["median"]]
    row["remember_calls_per_face"] = ops
    row["remember_item_bytes"] = units[0][1] if units else []
    reads = sum(v for k, v in ops.items() if k in ("dynamodb.GetItem", "dynamodb.Query"))
    row["units_per_face"] = {"write": statistics.median(u for u, _ in units) if units else 0,
                             "read": reads,  # every read here is one small item (< 4 KB): 1 RCU each
                             "write_amortized_compaction": round(1.0, 1)}  # its log entry deleted by a later trim

    # The real remember_photo on a few more faces (the sum of the steps above, as one call).
    t_photo = []
    for j in range(remember_count, remember_count + 20):
        i = n + j
        entries = [{"person": None, "box": {"left": 10, "top": 20, "width": 96, "height": 96}}]
        event = SimpleNamespace(sequencer=f"{i:018X}", event_time=now_iso())
        t, _ = timed(lambda: unknowns.remember_photo(config, p.bucket, source_key(i), etag(i), event,
                                                     [SimpleNamespace(embedding=q[j])], entries))
        assert entries[0].get("cluster"), entries
        t_photo.append(t)
    row["remember_photo_ms"] = ms(t_photo)

    # What every compact_every-th change of a partition pays: a snapshot of that partition (1/8 of the store).
    t_compact, seq = timed(lambda: gallery_cache.compact(store.partitions[0], p.bucket))
    assert seq, "no compaction"
    row["compaction_s"] = round(t_compact, 3)
    row["compact_every"] = p.gallery_compact_every
    row["peak_rss_mb"] = rss_mb()
    return row


def merged(galleries: list[Any]) -> Any:
    """One Gallery holding the live faces of several (the partitions of the store)."""
    from shared.engine.clustering import stacked
    from shared.engine.matching import Gallery

    embeddings, clusters, keys = stacked(galleries)
    names = sorted(set(clusters))
    ids = {name: i for i, name in enumerate(names)}
    return Gallery.from_arrays(embeddings, np.array([ids[c] for c in clusters], np.int32), names, keys)


def regroup_figures(gallery: Any, identity: np.ndarray, duplicates: float, threshold: float, clustering: Any,
                    dlib: Any) -> dict[str, Any]:
    """clustering.regroup on the loaded faces, timed by step, as seeded and with duplicates."""
    rows, person_ids, _ = gallery.live()
    embeddings = gallery.embeddings[rows]
    seeded = [gallery.names[i] for i in person_ids]
    truth = np.array([int(c[2:], 16) for c in seeded])  # seeded ids encode the identity
    assert np.array_equal(np.sort(truth), np.sort(identity)), "the store's clusters are not the seeded ones"

    def run(clusters: list[str]) -> tuple[dict[str, float], dict[str, str], int]:
        spent = {"edges": 0.0, "chinese_whispers": 0.0}
        found = {"edges": 0}
        edges, whispers = clustering.edges, dlib.chinese_whispers

        def timed_edges(*a: Any) -> Any:
            t, value = timed(lambda: edges(*a))
            spent["edges"] += t
            found["edges"] = len(value)
            return value

        def timed_whispers(*a: Any) -> Any:
            t, value = timed(lambda: whispers(*a))
            spent["chinese_whispers"] += t
            return value

        clustering.edges, dlib.chinese_whispers = timed_edges, timed_whispers
        try:
            total, merges = timed(lambda: clustering.regroup(embeddings, clusters, threshold))
        finally:
            clustering.edges, dlib.chinese_whispers = edges, whispers
        return {**{k: round(v, 3) for k, v in spent.items()}, "total": round(total, 3)}, merges, found["edges"]

    out: dict[str, Any] = {}
    seconds, merges, edge_count = run(seeded)
    wrong = sum(truth_of(a) != truth_of(b) for a, b in merges.items())
    out["seeded"] = {"seconds": seconds, "edges": edge_count, "merges": len(merges), "wrong_merges": wrong}

    rng = np.random.default_rng(11)
    moved = rng.choice(len(seeded), size=int(round(duplicates * len(seeded))), replace=False)
    relabelled = list(seeded)
    for i in moved:
        relabelled[i] = f"u-f{truth[i]:011x}"  # a wrong duplicate cluster of the same identity
    dup_ids = {relabelled[i] for i in moved}
    seconds, merges, edge_count = run(relabelled)

    def final(c: str) -> str:
        while c in merges:
            c = merges[c]
        return c

    # The hourly sweep: only the clusters that the faces seen since the last run touch (1% new here).
    new_rows = rng.choice(len(seeded), size=max(1, len(seeded) // 100), replace=False)
    t_touch, looked_at = timed(lambda: clustering.touched(embeddings, relabelled, new_rows, threshold))
    subset = np.flatnonzero([c in looked_at for c in relabelled])
    t_sub, sub_merges = timed(lambda: clustering.regroup(embeddings[subset], [relabelled[i] for i in subset], threshold))
    out["hourly"] = {"new_faces": int(len(new_rows)), "clusters_looked_at": len(looked_at), "faces_looked_at": int(subset.size),
                     "seconds": {"touched": round(t_touch, 3), "regroup": round(t_sub, 3), "total": round(t_touch + t_sub, 3)},
                     "merges": len(sub_merges)}

    reunited = sum(final(d) == final(cluster_id(truth_of(d))) for d in dup_ids)
    out["duplicates"] = {"faces_moved": int(len(moved)), "duplicate_clusters": len(dup_ids), "seconds": seconds,
                         "merges": len(merges), "reunited": reunited,
                         "wrong_merges": sum(truth_of(a) != truth_of(b) for a, b in merges.items())}
    return out


def truth_of(cluster: str) -> int:
    """The identity a seeded or duplicate cluster id stands for (-1 for any other id)."""
    tail = cluster[2:]
    if tail.startswith("f"):
        return int(tail[1:], 16)
    return int(tail, 16) if tail.startswith("0") else -1


# --- the table ------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["faces", "items", "cold load s", "RSS MiB", "assign ms p50/p95", "right", "catch-up ms",
            "remember ms", "settle ms", "per face ms p50/p95", "compaction s", "edges s", "whispers s",
            "regroup s", "hourly regroup s (1% new)", "merges", "dups reunited", "WCU/RCU per face"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        s, g = r["remember_steps_ms"], r["regroup"]
        d = g["duplicates"]
        cells = [r["faces"], "yes" if r["items_seeded"] else "no", r["cold_load_s"], r["peak_rss_mb_after_load"],
                 f"{r['assign_ms']['median']}/{r['assign_ms']['p95']}", r["assign_right"], s["catch_up"], s["remember"],
                 s["settle"], f"{r['remember_total_ms']['median']}/{r['remember_total_ms']['p95']}", r["compaction_s"],
                 g["seeded"]["seconds"]["edges"], g["seeded"]["seconds"]["chinese_whispers"], g["seeded"]["seconds"]["total"],
                 g["hourly"]["seconds"]["total"],
                 f"{g['seeded']['merges']} ({g['seeded']['wrong_merges']} wrong)",
                 f"{d['reunited']}/{d['duplicate_clusters']} ({d['wrong_merges']} wrong)",
                 f"{r['units_per_face']['write']:g}/{r['units_per_face']['read']:g}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=os.environ.get("UNKNOWN_SIZES", "10000,100000"))
    parser.add_argument("--items-max", type=int, default=0,
                        help="also write the per-face items up to this size (default none: moto's TransactWriteItems "
                             "deep-copies the whole table once per item of the transaction, so with the items each "
                             "remembered face costs moto ~0.7 s at 2,000 faces and grows with the table; "
                             "DynamoDB's cost does not depend on the table's size, and nothing else measured here reads them)")
    parser.add_argument("--items-probe", type=int, default=2000,
                        help="also time moto's remember on a store of this many faces with their items (0: no)")
    parser.add_argument("--queries", type=int, default=200, help="new faces assigned (half near, half new)")
    parser.add_argument("--remember", type=int, default=100, help="faces remembered step by step")
    parser.add_argument("--duplicates", type=float, default=0.02, help="share of faces moved to a duplicate cluster")
    parser.add_argument("--json", type=Path, help="also write the rows here (a list)")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--items", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.queries, args.remember, args.duplicates, args.items)))
        return

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(moto_env(endpoint))
    rows = []
    try:
        for n in (int(s) for s in args.sizes.split(",") if s.strip()):
            items = n <= args.items_max
            seeded = seed(n, items)
            print(f"bench-unknowns: seeded {n} faces ({'with' if items else 'without'} items) in {seeded:.1f} s",
                  file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            row = child(n, endpoint, args, items)
            row["seed_s"] = round(seeded, 1)
            row["measure_s"] = round(time.perf_counter() - t0, 1)
            row["cores"] = os.cpu_count()
            row["load_average"] = round(os.getloadavg()[0], 2)
            rows.append(row)
            print(f"bench-unknowns: measured {n} faces in {row['measure_s']} s", file=sys.stderr, flush=True)
            drop(*names(n))
        if args.items_probe:
            probe = moto_items_probe(args.items_probe, 10)
            print(f"bench-unknowns: with the items of {args.items_probe} faces, moto's remember takes "
                  f"{probe['remember_ms']} ms", file=sys.stderr, flush=True)
            for row in rows:
                row["moto_with_items"] = probe
    finally:
        server.stop()
    print(table(rows))
    for row in rows:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
