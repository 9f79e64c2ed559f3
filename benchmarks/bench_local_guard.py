"""What the local stack's guard and durable deletes cost: the time of one request on loopback and in
remote mode (SigV4 verified), and of one DeleteObject, which waits for a save of the whole state,
as the state grows. Prints a table; `--json PATH` writes the figures.

    .venv/bin/python benchmarks/bench_local_guard.py [--objects 100 1000] [--repeat 50]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lambdaface.local.process import StackProcess  # noqa: E402


def _median_ms(call: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    figures: dict[str, Any] = {"requests_ms": {}, "delete_ms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, extra in (("loopback", ()), ("remote", ("--allow-remote",))):
            with StackProcess(Path(tmp) / mode, *extra, workers=0) as stack:
                s3, dynamodb = stack.client("s3"), stack.client("dynamodb")
                s3.put_object(Bucket=stack.bucket, Key="queries/small.jpg", Body=b"x" * 50_000)
                figures["requests_ms"][mode] = {
                    "ListTables": _median_ms(dynamodb.list_tables, args.repeat),
                    "GetObject 50 kB": _median_ms(lambda: s3.get_object(Bucket=stack.bucket, Key="queries/small.jpg")["Body"].read(), args.repeat),
                    "PutObject 50 kB": _median_ms(lambda: s3.put_object(Bucket=stack.bucket, Key="queries/p.jpg", Body=b"y" * 50_000), args.repeat),
                }
                if mode == "loopback":
                    stored = 0
                    for count in args.objects:
                        for i in range(stored, count):  # objects and job items: what a save lists, scans and writes
                            s3.put_object(Bucket=stack.bucket, Key=f"results/queries/{i}.json", Body=b"{}" * 200)
                            dynamodb.put_item(TableName="lambdaface-JobsTable", Item={"job_id": {"S": str(i)}})
                        stored = count

                        def delete_one() -> None:
                            s3.put_object(Bucket=stack.bucket, Key="queries/gone.jpg", Body=b"g")
                            s3.delete_object(Bucket=stack.bucket, Key="queries/gone.jpg")

                        put = _median_ms(lambda: s3.put_object(Bucket=stack.bucket, Key="queries/gone.jpg", Body=b"g"), 5)
                        figures["delete_ms"][count] = _median_ms(delete_one, max(5, args.repeat // 5)) - put
                stack.stop()
    print(f"{'request (median ms)':<22} {'loopback':>9} {'remote':>9}")
    for name in figures["requests_ms"]["loopback"]:
        print(f"{name:<22} {figures['requests_ms']['loopback'][name]:>9.2f} {figures['requests_ms']['remote'][name]:>9.2f}")
    print(f"\n{'objects + items':<22} {'DeleteObject (median ms, waits for a save)':>44}")
    for count, ms in figures["delete_ms"].items():
        print(f"{count:>7} + {count:<12} {ms:>44.1f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
