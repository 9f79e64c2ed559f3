"""make bench-people-index: `lambdaface find` for a person with 10^4 appearances in an index of 10^6.

moto's server (ThreadedMotoServer on 127.0.0.1, in this process) gets the template's
PeopleIndexTable. The person measured gets PERSON_ENTRIES (10^4) entries written through the
project's adapter over HTTP (`PeopleIndexTable.put_entries`: BatchWriteItem, 25 a request, timed);
the rest of the index (TOTAL - PERSON_ENTRIES entries of 1,000 other people, the same shape) is
loaded straight into moto's in-process backend (`Table.put_item`, no HTTP: 10^6 BatchWriteItem
items over HTTP would take moto most of an hour), also timed. Then, through HTTP:

1. `find` (shared/pipeline/people_index.find, what `lambdaface find` calls): the first page
   (--limit, 50) --queries times, p50 and p95 ms; every page of the person (all 10^4, newest first),
   a few times; a `--since` page (the newest 10%);
2. write units per result: `people_index.record` of a photo with 1 face, one with 3 (two people and
   an unknown cluster), a video with 2 people, the 3-face photo recognized again (replace) and
   redelivered; items written (the adapter's count) and the write capacity units DynamoDB would
   bill (1 per started KB of each item put or deleted, from the item's size as DynamoDB counts it:
   attribute names plus values).

Prints a table, then one JSON line; --json writes it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

OTHER_PEOPLE = 1000
PERSON = "person-measured"
BASE = 1_700_000_000  # the entries' times: one a minute, newest last


def moto_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1"}


def at(i: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(BASE + 60 * i))


def entry(person: str, i: int) -> dict[str, Any]:
    """A photo appearance as the pipeline writes it (shared/pipeline/people_index.entries_of)."""
    source = f"queries/photos/{i:08d}.jpg"
    return {"pk": f"p#{person}", "sk": f"{at(i)}#{source}#0", "person": person, "source": source,
            "result_key": f"results/{source}.json", "finished_at": at(i), "expires_at": BASE + 60 * i + 31 * 86400,
            "media": "photo", "box": {"left": 120, "top": 80, "width": 160, "height": 160}, "distance": 0.4123}


def create_table(name: str) -> None:
    import boto3

    from lambdaface.template import load_template

    p = load_template(ROOT / "template.yaml")["Resources"]["PeopleIndexTable"]["Properties"]
    boto3.client("dynamodb").create_table(TableName=name, KeySchema=p["KeySchema"],
                                          AttributeDefinitions=p["AttributeDefinitions"], BillingMode=p["BillingMode"])


def load_backend(name: str, count: int) -> float:
    """`count` entries of OTHER_PEOPLE people straight into moto's backend; seconds."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    from shared.aws.dynamo import to_item

    table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_table(name)
    t0 = time.perf_counter()
    for i in range(count):
        table.put_item(to_item(entry(f"other-{i % OTHER_PEOPLE:04d}", i)))
        if i and i % 200_000 == 0:
            print(f"bench-people-index: {i:,} entries loaded, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def item_kb(item: dict[str, Any]) -> int:
    """Write capacity units of putting or deleting `item`: its size as DynamoDB counts it, per started KB."""
    def size(v: Any) -> int:
        if isinstance(v, dict):
            return 3 + sum(len(k) + size(x) for k, x in v.items())
        if isinstance(v, list):
            return 3 + sum(1 + size(x) for x in v)
        if isinstance(v, (int, float)):
            return 8
        return len(str(v).encode())
    return max(1, math.ceil(sum(len(k) + size(v) for k, v in item.items()) / 1024))


def write_units(name: str) -> list[dict[str, Any]]:
    """Items written and WCU per result, through people_index.record (the pipeline's own call)."""
    from shared.aws import people_index_table
    from shared.config import current_config
    from shared.pipeline import people_index

    os.environ["PEOPLE_INDEX_TABLE"] = name
    config = current_config()
    box = {"left": 10, "top": 20, "width": 150, "height": 150}
    one = {"job_id": "j1", "kind": "recognize", "status": "succeeded", "source": "queries/w/one.jpg",
           "finished_at": "2026-12-01T10:00:00.000Z", "faces": [{"box": box, "person": "ann", "distance": 0.41}]}
    three = {"job_id": "j3", "kind": "recognize", "status": "succeeded", "source": "queries/w/three.jpg",
             "finished_at": "2026-12-01T10:00:01.000Z",
             "faces": [{"box": box, "person": "ann", "distance": 0.41}, {"box": box, "person": "bob", "distance": 0.38},
                       {"box": box, "person": None, "cluster": "u-0123456789abcdef"}]}
    clip = {"job_id": "jv", "kind": "recognize", "status": "succeeded", "source": "queries/w/clip.mp4", "media": "video",
            "finished_at": "2026-12-01T10:00:02.000Z",
            "appearances": [{"person": "ann", "intervals": [[0.0, 4.5], [6.0, 9.0]], "seconds": 7.5},
                            {"person": "bob", "intervals": [[1.0, 2.0]], "seconds": 1.0}]}
    again = {**three, "job_id": "j3b", "finished_at": "2026-12-02T10:00:00.000Z"}
    rows = []
    original = people_index_table.PeopleIndexTable
    for label, doc in (("photo, 1 face", one), ("photo, 3 faces (2 people, 1 cluster)", three),
                       ("video, 2 people", clip), ("the 3-face photo recognized again", again),
                       ("the same result redelivered", again)):
        units: list[int] = []

        class Counting(original):  # type: ignore[misc, valid-type]
            def put_entries(self, items):  # noqa: ANN001
                items = list(items)
                units.extend(item_kb(i) for i in items)
                return super().put_entries(items)

            def delete_entries(self, keys):  # noqa: ANN001
                keys = list(keys)
                units.extend(1 for _ in keys)
                return super().delete_entries(keys)

            def put_manifest(self, source, fields, version):  # noqa: ANN001
                units.append(item_kb({"pk": f"s#{source}", "sk": "#source", **fields}))
                return super().put_manifest(source, fields, version)

        people_index.PeopleIndexTable = Counting  # type: ignore[misc]
        try:
            t0 = time.perf_counter()
            items = people_index.record(config, doc)
            ms = (time.perf_counter() - t0) * 1000
        finally:
            people_index.PeopleIndexTable = original  # type: ignore[misc]
        rows.append({"result": label, "items_written": items, "wcu": sum(units), "ms_on_moto": round(ms, 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--totals", default=os.environ.get("INDEX_TOTALS", "100000,1000000"),
                        help="index sizes, each measured on a fresh table (default: %(default)s)")
    parser.add_argument("--person-entries", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=20, help="first pages fetched (and a tenth as many --since pages, at least 5)")
    parser.add_argument("--limit", type=int, default=50, help="entries per page")
    parser.add_argument("--full-limit", type=int, default=1000, help="entries per page when reading all of them")
    parser.add_argument("--full-runs", type=int, default=1, help="times every page of the person is read")
    parser.add_argument("--json", type=Path, help="also write the figures here (a list, one row per size)")
    args = parser.parse_args()

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(moto_env(f"http://{host}:{port}"))
    rows = []
    try:
        for k, total in enumerate(int(t) for t in args.totals.split(",") if t.strip()):
            row = measure(f"bench-people-index-{k}", total, args)
            rows.append(row)
            report(row)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1) + "\n")
            import boto3

            boto3.client("dynamodb").delete_table(TableName=f"bench-people-index-{k}")  # moto's memory, before the next size
    finally:
        server.stop()


def measure(name: str, total: int, args: argparse.Namespace) -> dict[str, Any]:
    """One index size: load, then find and write units."""
    from shared.aws.people_index_table import PeopleIndexTable
    from shared.pipeline import people_index

    create_table(name)
    n = args.person_entries
    t0 = time.perf_counter()
    PeopleIndexTable(name).put_entries(entry(PERSON, i) for i in range(n))
    person_s = time.perf_counter() - t0
    print(f"bench-people-index: {n:,} entries of {PERSON} written over HTTP in {person_s:.1f} s", file=sys.stderr, flush=True)
    others = max(0, total - n)
    load_s = load_backend(name, others)
    print(f"bench-people-index: {others:,} other entries loaded in {load_s:.0f} s", file=sys.stderr, flush=True)
    first: list[float] = []
    for _ in range(args.queries):
        t = time.perf_counter()
        page, token = people_index.find(name, PERSON, None, args.limit)
        first.append((time.perf_counter() - t) * 1000)
    assert len(page) == args.limit and token and page[0]["sk"] > page[-1]["sk"], "newest first, paginated"
    page_bytes = sum(len(json.dumps(e)) for e in page)
    full: list[float] = []
    pages = 0
    for _ in range(args.full_runs):
        t, seen, token, pages = time.perf_counter(), 0, None, 0
        while True:
            got, token = people_index.find(name, PERSON, None, args.full_limit, token)
            seen, pages = seen + len(got), pages + 1
            if not token:
                break
        full.append((time.perf_counter() - t) * 1000)
        assert seen == n, seen
    since = at(int(n * 0.9))
    since_ms = []
    for _ in range(max(5, args.queries // 10)):
        t = time.perf_counter()
        people_index.find(name, PERSON, since, args.limit)
        since_ms.append((time.perf_counter() - t) * 1000)
    units = write_units(name)
    return {
        "index_entries": total, "person_entries": n, "limit": args.limit,
        "first_page_ms": {"p50": round(statistics.median(first), 2), "p95": round(pct(first, 0.95), 2), "n": len(first)},
        "first_page_rcu": math.ceil(page_bytes / 4096),  # a strongly consistent Query: 1 RCU per 4 KB read
        "all_pages_ms": {"p50": round(statistics.median(full), 1) if full else None, "pages": pages,
                         "page_size": args.full_limit, "n": len(full)},
        "since_page_ms": {"p50": round(statistics.median(since_ms), 2), "p95": round(pct(since_ms, 0.95), 2), "n": len(since_ms)},
        "write_units": units,
        "person_write_s": round(person_s, 1), "other_load_s": round(load_s, 1), "other_load": "moto's backend (no HTTP)",
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "cores": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%d"),
    }


def report(row: dict[str, Any]) -> None:
    n, pages = row["person_entries"], row["all_pages_ms"]["pages"]
    print(f"find {PERSON} ({n:,} of {row['index_entries']:,} entries), pages of {row['limit']}: first page p50 "
          f"{row['first_page_ms']['p50']} ms, p95 {row['first_page_ms']['p95']} ms; all {pages} pages "
          f"{row['all_pages_ms']['p50']} ms; --since (newest 10%) p50 {row['since_page_ms']['p50']} ms")
    for u in row["write_units"]:
        print(f"  {u['result']:<40} {u['items_written']:>3} items  {u['wcu']:>3} WCU")
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
