"""`lambdaface watch --events`: follow the local stack's events (`<state>/events.jsonl`, written by
lambdaface.local.event_log), one line each, optionally only those where `--person P` was seen
(enrolled, forgotten or recognized) or where an unknown face was (`--unknown`)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Iterator, TextIO

from lambdaface.local.event_log import EVENTS_FILE


def add_args(p: argparse.ArgumentParser) -> None:
    """The options of `watch --events`."""
    p.add_argument("--events", action="store_true",
                   help="follow the local stack's job events (<state-dir>/events.jsonl) instead of results/")
    p.add_argument("--state-dir", type=Path, default=Path(".lambdaface"),
                   help="with --events: the local stack's state folder (default: %(default)s)")
    p.add_argument("--person", action="append", default=[], metavar="P",
                   help="with --events: only events where P was seen (repeatable)")
    p.add_argument("--unknown", action="store_true", help="with --events: only events where an unknown face was seen")
    p.add_argument("--all", action="store_true", help="with --events: the events already written too, not only new ones")
    p.add_argument("--json", action="store_true", help="with --events: print each event as JSON")


def wanted(event: dict[str, Any], people: list[str], unknown: bool) -> bool:
    """Whether `event` passes the filters (none given: every event; several: any of them)."""
    if not people and not unknown:
        return True
    detail = event.get("detail") or {}
    return bool(set(people) & set(detail.get("people") or [])) or (unknown and bool(detail.get("unknown_seen")))


def line(event: dict[str, Any]) -> str:
    """One event, for people: time, what, the source, status, who was seen."""
    d = event.get("detail") or {}
    seen = ", ".join(d.get("people") or []) or "-"
    unknown = f"  unknown: {d.get('unknown_faces', 0)} ({', '.join(d.get('unknown_clusters') or []) or 'not remembered'})" \
        if d.get("unknown_seen") else ""
    error = f"  {d['error_code']}" if d.get("error_code") else ""
    return f"{event.get('time', '?')}  {event.get('detail-type', '?')}  {d.get('source', '?')}  {d.get('status', '?')}{error}  {seen}{unknown}"


def read_events(path: Path, start: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The whole lines of `path` from byte `start` (a line still being written waits), and the new offset."""
    if not path.exists():
        return [], 0
    with path.open("rb") as f:
        size = f.seek(0, 2)
        if size < start:  # rewritten shorter (old lines expired): read it again from the start
            start = 0
        f.seek(start)
        data = f.read()
    end = data.rfind(b"\n") + 1
    events = [json.loads(raw) for raw in data[:end].splitlines() if raw.strip()]
    return events, start + end


def follow(path: Path, people: list[str], unknown: bool, everything: bool = False,
           timeout: float | None = None, interval: float = 0.5) -> Iterator[dict[str, Any]]:
    """The events that pass the filters, as they are written, until `timeout` seconds."""
    offset = 0 if everything or not path.exists() else path.stat().st_size
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        events, offset = read_events(path, offset)
        yield from (e for e in events if wanted(e, people, unknown))
        if deadline is not None and time.monotonic() >= deadline:
            return
        time.sleep(interval)


def main(args: argparse.Namespace, out: TextIO) -> int:
    path = args.state_dir / EVENTS_FILE
    try:
        for event in follow(path, args.person, args.unknown, args.all, args.timeout, args.interval):
            print(json.dumps(event) if args.json else line(event), file=out, flush=True)
    except KeyboardInterrupt:
        pass
    return 0
