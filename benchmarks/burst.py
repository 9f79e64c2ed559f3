"""End to end on the local stack: a burst of query uploads, timed from upload to result.

For each worker count, `lambdaface local` starts on a free port with a fresh state directory;
the photos of people/ are enrolled; a few images warm the workers (model loading) and a few more
are uploaded one at a time (latency of an idle stack); then `--images` queries, cycling every
still photo under distinct keys, are uploaded as fast as one client can, `--runs` times.
Times come from the result documents (`finished_at`, `timings_ms`), set by the workers on this
machine's clock, against the client's clock when each upload returned. Lost and duplicated work
is counted three ways: result documents, job records (attempts) and the stack's job lines.

`lambdaface local --workers N` runs N worker processes per function, so N recognize workers.

Usage: python benchmarks/burst.py [--faces DIR] [--workers 1 2] [--images 200] [--runs 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench_engine import photo_paths
from lambdaface.local import lines as stack_lines
from lambdaface.local.process import StackProcess
from shared.pipeline.keys import result_key

HERE = Path(__file__).resolve().parent
ENGINE_STAGES = ("decode", "detect_embed", "match")  # the engine's share of a job's timings_ms
PIPELINE_STAGES = ("download", "load_gallery", "annotate", "upload")


def epoch(iso: str) -> float:
    """Seconds since the epoch of an ISO 8601 UTC time such as 2024-05-01T12:00:00.123Z."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def job_outcomes(lines: list[str]) -> dict[str, list[str]]:
    """{source key: outcomes in order} of the stack's job lines (a key seen twice ran twice)."""
    outcomes: dict[str, list[str]] = {}
    for match in filter(None, map(stack_lines.JOB.match, lines)):
        outcomes.setdefault(match["key"], []).append(match["outcome"])
    return outcomes


def wait_for_jobs(stack: StackProcess, keys: list[str], timeout: float) -> bool:
    """True when every key has a job line before `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        done = job_outcomes(stack.lines)
        if all(k in done for k in keys):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def spec_names() -> dict[str, str]:
    """Physical names of the jobs table and the recognize queues, as the local stack creates them."""
    from lambdaface.local.spec import stack_spec
    from lambdaface.template import load_template

    spec = stack_spec(load_template(), region="us-east-1", bucket="faces")
    queue = spec.queues[spec.functions["RecognizeFunction"].queue]
    return {"bucket": spec.bucket, "jobs_table": spec.tables["JobsTable"].name,
            "queue": queue.name, "dlq": spec.queues[queue.dlq].name if queue.dlq else ""}


def upload(s3: Any, bucket: str, items: list[tuple[str, Path]]) -> dict[str, float]:
    """Upload each (key, photo), one after the other; {key: time.time() when its PUT returned}."""
    done = {}
    for key, path in items:
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        done[key] = time.time()
    return done


def enroll(stack: StackProcess, bucket: str, faces_dir: Path) -> int:
    """Enroll every photo of people/<person>/; the number enrolled."""
    items = [(f"models/{p.parent.name}/{p.name}", p) for p in sorted((faces_dir / "people").glob("*/*")) if p.is_file()]
    upload(stack.client("s3"), bucket, items)
    keys = [k for k, _ in items]
    if not wait_for_jobs(stack, keys, timeout=60 + 10 * len(keys)):
        raise RuntimeError("enrollment did not finish")
    outcomes = job_outcomes(stack.lines)
    failed = [k for k in keys if not outcomes[k][-1].startswith("succeeded")]
    if failed:
        raise RuntimeError(f"enrollment failed for {failed}")
    return len(keys)


def read_results(s3: Any, bucket: str, keys: list[str]) -> dict[str, dict]:
    """The result document of each key that has one."""
    docs = {}
    for key in keys:
        try:
            docs[key] = json.loads(s3.get_object(Bucket=bucket, Key=result_key(key))["Body"].read())
        except s3.exceptions.NoSuchKey:
            pass
    return docs


def job_records(dynamodb: Any, table: str, prefix: str) -> list[dict]:
    """Job records whose key starts with `prefix` (key, status, attempts)."""
    records = []
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=table, FilterExpression="begins_with(#k, :p)", ExpressionAttributeNames={"#k": "key"},
        ExpressionAttributeValues={":p": {"S": prefix}}, ConsistentRead=True,
    ):
        for item in page["Items"]:
            records.append({"key": item["key"]["S"], "status": item["status"]["S"],
                            "attempts": int(item.get("attempts", {}).get("N", "0"))})
    return records


def queue_depth(sqs: Any, name: str) -> int:
    """Messages still in the queue (visible, in flight or delayed)."""
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(int(attributes.get(a, 0)) for a in
               ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"))


def engine_ms(doc: dict) -> float:
    return sum(doc.get("timings_ms", {}).get(s, 0.0) for s in ENGINE_STAGES)


def analyse(uploaded: dict[str, float], started: float, docs: dict[str, dict], records: list[dict],
            lines: dict[str, list[str]], workers: int) -> dict:
    """Throughput, latency, overhead and lost/duplicated work of one burst."""
    keys = list(uploaded)
    finished = {k: epoch(d["finished_at"]) for k, d in docs.items()}
    latencies = [finished[k] - uploaded[k] for k in keys if k in finished]
    wall = max(finished.values()) - started if finished else float("nan")
    engine = [engine_ms(d) for d in docs.values()]
    per_key_records: dict[str, int] = {}
    for r in records:
        per_key_records[r["key"]] = per_key_records.get(r["key"], 0) + 1
    worker_ms_per_image = workers * wall * 1000 / len(keys)
    return {
        "images": len(keys),
        "wall_s": wall,
        "images_per_s": len(keys) / wall,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_max_s": max(latencies),
        "latencies_s": latencies,
        "engine_ms_per_image": statistics.fmean(engine),
        "handler_ms_per_image": statistics.fmean(d["timings_ms"]["total"] for d in docs.values()),
        "worker_ms_per_image": worker_ms_per_image,
        "overhead_ms_per_image": worker_ms_per_image - statistics.fmean(engine),
        "pipeline_stage_ms": {s: statistics.fmean(d["timings_ms"].get(s, 0.0) for d in docs.values())
                              for s in PIPELINE_STAGES},
        "results": len(docs),
        "succeeded": sum(d.get("status") == "succeeded" for d in docs.values()),
        "faces": sum(len(d.get("faces", [])) for d in docs.values()),
        "lost": len(keys) - len(docs),
        "duplicated": sum(max(0, len(lines.get(k, [])) - 1) for k in keys)
                      + sum(max(0, r["attempts"] - 1) for r in records)
                      + sum(n - 1 for n in per_key_records.values()),
        "job_records": len(records),
        "job_lines": sum(len(lines.get(k, [])) for k in keys),
    }


def burst(stack: StackProcess, workers: int, names: dict[str, str], photos: list[Path], prefix: str, n: int) -> dict:
    """Upload n queries under `prefix`, wait for their results and account for every one."""
    items = [(f"{prefix}{i:04d}-{photos[i % len(photos)].name}", photos[i % len(photos)]) for i in range(n)]
    s3 = stack.client("s3")
    started = time.time()
    uploaded = upload(s3, names["bucket"], items)
    wait_for_jobs(stack, list(uploaded), timeout=120 + 10 * n / workers)
    docs = read_results(s3, names["bucket"], list(uploaded))
    records = job_records(stack.client("dynamodb"), names["jobs_table"], prefix)
    result = analyse(uploaded, started, docs, records, job_outcomes(stack.lines), workers)
    sqs = stack.client("sqs")
    result["left_in_queue"] = queue_depth(sqs, names["queue"])
    result["dead_letters"] = queue_depth(sqs, names["dlq"]) if names["dlq"] else 0
    result["upload_s"] = max(uploaded.values()) - started
    return result


def idle_latency(stack: StackProcess, names: dict[str, str], photos: list[Path], prefix: str, n: int = 5) -> dict:
    """Upload one query at a time into the idle stack: upload-to-result seconds and overhead."""
    s3 = stack.client("s3")
    samples = []
    for i in range(n):
        key = f"{prefix}{i:04d}-{photos[i % len(photos)].name}"
        uploaded = upload(s3, names["bucket"], [(key, photos[i % len(photos)])])
        wait_for_jobs(stack, [key], timeout=120)
        doc = read_results(s3, names["bucket"], [key])[key]
        latency = epoch(doc["finished_at"]) - uploaded[key]
        samples.append({"latency_s": latency, "engine_ms": engine_ms(doc), "overhead_ms": latency * 1000 - engine_ms(doc)})
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]} | {"samples": n}


def measure_workers(faces_dir: Path, workers: int, images: int, runs: int, env: dict[str, str] | None = None) -> dict:
    """Start a stack with `workers` recognize workers, enroll, warm up, then idle samples and bursts.
    `env`: LAMBDAFACE_* settings for the functions (e.g. {"LAMBDAFACE_ANNOTATE": "false"})."""
    photos = photo_paths(faces_dir)
    names = spec_names()
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        # --workers N: N processes per function, so N recognize workers
        with StackProcess(Path(tmp) / "state", "--autosave", "0", "--bucket", names["bucket"], workers=workers,
                          env=env, new_session=True) as stack:  # Ctrl-C on `make bench` must not reach it first
            enrolled = enroll(stack, names["bucket"], faces_dir)
            warm = burst(stack, workers, names, photos, "queries/bench/warmup/", 5 * workers)  # loads the models
            idle = idle_latency(stack, names, photos, "queries/bench/idle/")
            bursts = [burst(stack, workers, names, photos, f"queries/bench/run{r}/", images) for r in range(runs)]
            peak_rss = stack.peak_rss_mb("RecognizeFunction")
            recognize_pids = len(stack.worker_pids("RecognizeFunction"))
    median = {k: statistics.median(b[k] for b in bursts) for k, v in bursts[0].items()
              if isinstance(v, (int, float))}
    return {"workers": workers, "env": env or {}, "recognize_processes": recognize_pids, "enrolled": enrolled,
            "warmup_lost": warm["lost"], "idle": idle, "runs": bursts, "median": median,
            "worker_peak_rss_mb": peak_rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path,
                        default=Path(os.environ.get("LAMBDAFACE_FACES") or HERE.parent.parent / "shared" / "faces"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    for w in args.workers:
        result = measure_workers(args.faces, w, args.images, args.runs)
        for run in result["runs"]:
            run.pop("latencies_s")
        print(json.dumps(result, indent=2), flush=True)


if __name__ == "__main__":
    main()
