"""`lambdaface report`: a static HTML report of a bucket's results (AWS or the local stack).

    lambdaface report --out report/ [--since 2d | 2026-11-28] [--limit 200]

Reads only the bucket: the listing of `results/` and `models/` (paginated), the newest `--limit`
query results, every current enrollment's result, then the images the page shows (annotated
photos, downscaled; a face thumbnail per person) and, for videos, their segments' bounds while
`work/segments/` still holds them. Writes `DIR/index.html`, `DIR/people/*.html` (a page per person
enrolled now and per unknown cluster: their enrolled faces, then every photo and video of the
results read where they appear, newest first) and `DIR/assets/*.jpg` (file names are hashes, never
keys or names): the pages need no network and open from disk. The pages are built by
report_page.py and report_people.py; every key, name and message in them is HTML-escaped.

A document that is not JSON or not shaped like a result is skipped with a note on the page. The
names of forgotten people (no image left under `models/`) are not shown: they read "(forgotten)",
and such a result shows its source photo with the boxes drawn by the page, never its annotated
copy (the names are drawn on it), and they have no page. Each run rewrites `assets/` and `people/`
and deletes the images and pages an earlier run left there that it does not use (a forgotten
person's thumbnail, annotated photos and page go).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from lambdaface import watch
from lambdaface.since import parse_since
from lambdaface.report_model import FORGOTTEN, PAGES, Person, Report, Result, malformed, redacted, subjects
from shared.pipeline.keys import MODELS_PREFIX, QUERIES_PREFIX, RESULTS_PREFIX, WORK_PREFIX, annotated_key

DEFAULT_LIMIT = 200
THREADS = 8
IMAGE_MAX_SIDE = 1024  # annotated photos are shown at most this large (the file, not just the display)
THUMB_SIDE = 96
MAX_FACES = 12  # enrolled faces shown per person (their page)
ASSETS = "assets"


# --- arguments ----------------------------------------------------------------------------------



# --- progress -----------------------------------------------------------------------------------


class Progress:
    """`downloading [#####.....] 12/200` on a terminal (stderr), redrawn in place; silent elsewhere."""

    def __init__(self, stream: TextIO = sys.stderr, enabled: bool | None = None) -> None:
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.total = self.done = 0
        self.label = ""

    def start(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self._draw()

    def step(self) -> None:
        self.done += 1
        self._draw()

    def _draw(self) -> None:
        if self.enabled and self.total:
            width = 30
            filled = width * self.done // self.total
            print(f"\r{self.label:<22} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}",
                  end="", file=self.stream, flush=True)

    def finish(self) -> None:
        if self.enabled and self.total:
            print("\r" + " " * 72 + "\r", end="", file=self.stream, flush=True)


def fetch_all(items: list[Any], fetch: Callable[[Any], Any], progress: Progress, label: str) -> list[Any]:
    """`fetch(item)` for every item on THREADS threads, in order, advancing the progress bar."""
    progress.start(label, len(items))

    def one(item: Any) -> Any:
        try:
            return fetch(item)
        finally:
            progress.step()

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            return list(pool.map(one, items))
    finally:
        progress.finish()


# --- reading the bucket -------------------------------------------------------------------------


def list_objects(s3: Any, bucket: str, prefix: str) -> Iterable[dict[str, Any]]:
    """Every object under `prefix` (the listing is paginated: 1000 keys a request)."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def get_bytes(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if watch._missing(exc):
            return None
        raise


def get_json(s3: Any, bucket: str, key: str) -> Any:
    """The JSON document at `key` (any JSON value), or None when there is no such object."""
    data = get_bytes(s3, bucket, key)
    return None if data is None else json.loads(data)


class Assets:
    """Images written beside the page, named by a hash of what they show."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = out_dir / ASSETS
        self.dir.mkdir(parents=True, exist_ok=True)
        self.written: set[str] = set()

    def add(self, name_of: str, data: bytes) -> str:
        name = hashlib.sha256(name_of.encode()).hexdigest()[:24] + ".jpg"
        (self.dir / name).write_bytes(data)
        self.written.add(name)
        return f"{ASSETS}/{name}"

    def prune(self) -> None:
        """Remove images an earlier report left here that this one does not use."""
        for path in self.dir.glob("*.jpg"):
            if re.fullmatch(r"[0-9a-f]{24}\.jpg", path.name) and path.name not in self.written:
                path.unlink()


def _jpeg(image: Any, max_side: int) -> tuple[bytes, tuple[int, int]]:
    from PIL import Image  # noqa: F401  (imported lazily: the CLI's other commands do not need it)

    image = image.convert("RGB")
    image.thumbnail((max_side, max_side))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue(), image.size


def shown_image(data: bytes, source: bool) -> tuple[bytes, tuple[int, int]] | None:
    """A photo as the page shows it: at most IMAGE_MAX_SIDE, JPEG; a source photo turned upright
    (EXIF) as the engine saw it. None when it does not decode."""
    from PIL import Image, ImageOps

    try:
        image = Image.open(io.BytesIO(data))
        if source:
            image = ImageOps.exif_transpose(image)
        if image.format == "JPEG" and max(image.size) <= IMAGE_MAX_SIDE and not source:
            return data, image.size  # the annotated JPEG as it is
        return _jpeg(image, IMAGE_MAX_SIDE)
    except Exception:
        return None


def face_thumbnail(data: bytes, box: dict[str, int]) -> bytes | None:
    """The enrolled face, square, with a margin, THUMB_SIDE pixels (2x for sharp screens)."""
    from PIL import Image, ImageOps

    try:
        image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        side = max(box["width"], box["height"]) * 1.5
        cx, cy = box["left"] + box["width"] / 2, box["top"] + box["height"] / 2
        crop = image.crop((round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)))
        return _jpeg(crop.resize((2 * THUMB_SIDE, 2 * THUMB_SIDE)), 2 * THUMB_SIDE)[0]
    except Exception:
        return None


def collect(s3: Any, bucket: str, out_dir: Path, limit: int = DEFAULT_LIMIT, since: float | None = None,
            progress: Progress | None = None, endpoint: str | None = None) -> Report:
    """Read what the report shows from the bucket; images go to `out_dir/assets/`."""
    progress = progress or Progress()
    listing = {o["Key"]: o for o in list_objects(s3, bucket, RESULTS_PREFIX)}
    queries = [o for k, o in listing.items() if k.startswith(RESULTS_PREFIX + QUERIES_PREFIX) and k.endswith(".json")]
    in_range = [o for o in queries if since is None or o["LastModified"].timestamp() >= since]
    newest = sorted(in_range, key=lambda o: o["LastModified"], reverse=True)[: max(0, limit)]

    people: dict[str, Person] = {}
    for o in list_objects(s3, bucket, MODELS_PREFIX):
        parts = o["Key"].split("/")
        if len(parts) == 3 and parts[2]:
            people.setdefault(parts[1], Person(parts[1])).images.append(o["Key"])
    model_keys = [k for p in people.values() for k in p.images if f"{RESULTS_PREFIX}{k}.json" in listing]
    current = {key for p in people.values() for key in p.images}
    gone = [k for k in listing if k.startswith(RESULTS_PREFIX + MODELS_PREFIX) and k.endswith(".json")
            and k[len(RESULTS_PREFIX):-len(".json")] not in current][: max(0, limit)]  # forgotten images

    problems: list[str] = []
    known = set(people)  # people with an image under models/ now: every other name is forgotten

    def read(key: str) -> dict[str, Any] | None:
        """The result document at `key`; None (and a note on the page) when it is missing, is not
        JSON, or is not shaped like a result: one bad document never breaks the page."""
        try:
            doc = get_json(s3, bucket, key)
            why = None if doc is None else malformed(doc)
        except Exception as exc:
            doc, why = None, f"it could not be read: {type(exc).__name__}: {exc}"
        if why:
            problems.append(f"{shown_key(key, known)}: skipped, {why}" if why.startswith("it could not")
                            else f"{shown_key(key, known)}: skipped, not a result document the page can show: {why}")
            return None
        return doc

    docs = fetch_all([o["Key"] for o in newest] + [f"{RESULTS_PREFIX}{k}.json" for k in model_keys]
                     + gone, read, progress, "reading results")
    results = []
    for o, doc in zip(newest, docs):
        if doc is not None:
            shown, changed = redacted(doc, known)
            results.append(Result(shown, o["LastModified"].timestamp(), redacted=changed))
    for key, doc in zip(model_keys, docs[len(newest): len(newest) + len(model_keys)]):
        if doc is not None and doc.get("kind") in ("enroll", None):
            people[key.split("/")[1]].results[key] = doc
    forgotten = [redacted(d, known)[0] for d in docs[len(newest) + len(model_keys):] if d and d.get("kind") == "forget"]

    assets = Assets(out_dir)
    jobs: list[Callable[[], None]] = []
    for result in results:
        jobs.append(_image_job(s3, bucket, result, listing, assets, problems))
    for person in people.values():
        if person.enrolled:
            jobs.append(_thumbnail_job(s3, bucket, person, assets, problems))
    fetch_all(jobs, lambda job: job(), progress, "downloading images")
    assets.prune()
    results.sort(key=lambda r: (r.doc.get("finished_at") or "", r.modified), reverse=True)
    return Report(bucket, endpoint, time.time(), sorted(people.values(), key=lambda p: p.name.lower()), results,
                  len(queries), len(in_range), limit, since, forgotten, problems)


def shown_key(key: str, known: set[str]) -> str:
    """`key` as the page may show it: the person in `results/models/<person>/...` reads FORGOTTEN
    when they have no image left under models/."""
    prefix = RESULTS_PREFIX + MODELS_PREFIX
    if key.startswith(prefix):
        person, _, rest = key[len(prefix):].partition("/")
        if person not in known:
            return f"{prefix}{FORGOTTEN}/{rest}"
    return key


def _image_job(s3: Any, bucket: str, result: Result, listing: dict[str, Any], assets: Assets,
               problems: list[str]) -> Callable[[], None]:
    """What to download for one result: the annotated photo (else the photo itself) or a video's segments."""
    doc = result.doc

    def run() -> None:
        try:
            if doc.get("media") == "video":
                result.segments = _segments(s3, bucket, doc)
                return
            if doc.get("status") != watch.SUCCEEDED or doc.get("kind") != "recognize":
                return
            annotated = doc.get("annotated") or annotated_key(doc.get("source", ""))
            if annotated in listing and not result.redacted:  # a forgotten person's name is drawn on the annotated copy
                key, source = annotated, False
            else:
                key, source = doc.get("source", ""), True  # no annotated copy: the page draws the boxes
            data = get_bytes(s3, bucket, key)
            shown = shown_image(data, source) if data else None
            if shown is None:
                return
            result.image = assets.add(f"{key}\n{doc.get('job_id')}", shown[0])
            result.image_size, result.boxes_drawn = shown[1], not source
        except Exception as exc:
            problems.append(f"{doc.get('source')}: {exc}")

    return run


def _segments(s3: Any, bucket: str, doc: dict[str, Any]) -> list[tuple[float, float]] | None:
    """A video's segments as [start_s, end_s), from its partial results while they last (a day)."""
    fps = float(doc.get("fps") or 0)
    if not doc.get("job_id") or fps <= 0:
        return None
    keys = [o["Key"] for o in list_objects(s3, bucket, f"{WORK_PREFIX}{doc['job_id']}/")]
    bounds = []
    for key in keys:
        part = get_json(s3, bucket, key) or {}
        if "first" in part and "end" in part:
            bounds.append((int(part["first"]) / fps, int(part["end"]) / fps))
    return sorted(bounds) or None


def _thumbnail_job(s3: Any, bucket: str, person: Person, assets: Assets, problems: list[str]) -> Callable[[], None]:
    """The enrolled faces of one person (at most MAX_FACES), for the people section and their page."""

    def run() -> None:
        for key in person.enrolled:
            if len(person.faces) >= MAX_FACES:
                break
            try:
                faces = person.results[key].get("faces") or []
                data = get_bytes(s3, bucket, key) if faces and faces[0].get("box") else None
                thumb = face_thumbnail(data, faces[0]["box"]) if data else None
            except Exception as exc:
                problems.append(f"{key}: {exc}")
                continue
            if thumb:
                person.faces.append(assets.add(f"{key}\n{person.results[key].get('job_id')}", thumb))
        if person.faces:
            person.thumbnail = person.faces[0]
        else:
            problems.append(f"{person.name}: no enrolled image could be read for a thumbnail")

    return run


def write(report: Report, out_dir: Path) -> Path:
    """Write the report: `index.html`, and under `people/` a page per person enrolled now and per
    unknown cluster the results name; pages an earlier run left there that this one does not
    write (a person forgotten since, a cluster no result names now) are deleted. The index's path."""
    from lambdaface import report_page, report_people

    out_dir.mkdir(parents=True, exist_ok=True)
    pages = out_dir / PAGES
    pages.mkdir(exist_ok=True)
    written = set()
    for subject in subjects(report.people, report.results):
        path = out_dir / subject.page
        path.write_text(report_people.render(report, subject), encoding="utf-8")
        written.add(path.name)
    for path in pages.glob("*.html"):
        if re.fullmatch(r"[0-9a-f]{24}\.html", path.name) and path.name not in written:
            path.unlink()
    page = out_dir / "index.html"
    page.write_text(report_page.render(report), encoding="utf-8")
    return page


# --- command line -------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since)
    except ValueError:
        print(f"lambdaface report: --since {args.since!r}: give a duration (90m, 12h, 2d, 1w) or an ISO date",
              file=sys.stderr)
        return 2
    if args.limit < 1:
        print("lambdaface report: --limit must be at least 1", file=sys.stderr)
        return 2
    s3 = watch.s3_client(args)
    out = Path(args.out)
    endpoint = args.endpoint_url or s3.meta.endpoint_url
    report = collect(s3, args.bucket, out, args.limit, since, endpoint=endpoint)
    page = write(report, out)
    shown = len(report.results)
    more = f" (newest {shown} of {report.query_results_in_range})" if shown < report.query_results_in_range else ""
    print(f"report: {page.resolve()}: {shown} results{more}, {len(report.people)} people")
    for problem in report.problems:
        print(f"lambdaface report: {problem}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `report` subcommand."""
    p = subparsers.add_parser(
        "report", help="write an HTML report of the bucket's results (people, photos, videos, summary)",
        description="Read the bucket's results and write a self-contained HTML report to DIR/index.html "
        "(images in DIR/assets/): the people enrolled, the newest results with their annotated photos, "
        "a timeline per video, and a summary.")
    watch.add_connection_args(p)
    p.add_argument("--out", metavar="DIR", default="report", help="where to write it (default: %(default)s/)")
    p.add_argument("--since", metavar="WHEN", help="only results written since WHEN: 90m, 12h, 2d, 1w or an ISO date")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                   help="at most this many query results, the newest (default: %(default)s)")
    p.set_defaults(func=main)
