"""The HTML of `lambdaface report` (report.py reads the bucket into report_model's Report): one
page, its CSS inline, no script, no network; images are files in `assets/` beside it; timelines
are inline SVG.

Every text that comes from the bucket (keys, names, messages) goes through `e()`.
"""
from __future__ import annotations

import html
import math
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Iterable

from lambdaface.report_model import FORGOTTEN, Person, Report, Result, Subject, page_path, subjects
from lambdaface.review import commands, queued


def e(value: Any) -> str:
    """HTML-escaped text (for element content and quoted attribute values alike)."""
    return html.escape("" if value is None else str(value), quote=True)


def when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def when_iso(text: str | None) -> str:
    if not text:
        return ""
    try:
        return when(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return text


def job_kind(doc: dict[str, Any]) -> str:
    return "video" if doc.get("media") == "video" else str(doc.get("kind") or "?")


def ms(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return e(value)
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms"


CSS = """
:root { --ok: #1f883d; --bad: #cf222e; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1f2328; background: #fff; }
header { background: #24292f; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #c9d1d9; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line); padding: 8px 28px; z-index: 2; }
nav a { margin-right: 18px; color: var(--accent); text-decoration: none; font-weight: 600; }
main { padding: 8px 28px 40px; max-width: 1280px; }
h2 { border-bottom: 1px solid var(--line); padding-bottom: 6px; margin-top: 32px; }
.note { color: var(--muted); }
.problems { background: #fff8c5; border: 1px solid #d4a72c; padding: 8px 12px; border-radius: 6px; }
table { border-collapse: collapse; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--bg); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.summary { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
.summary section h3 { margin: 8px 0; font-size: 15px; }
.bar { display: inline-block; height: 10px; background: var(--accent); border-radius: 2px; vertical-align: middle; }
.people { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 14px; }
.person { border: 1px solid var(--line); border-radius: 8px; padding: 12px; display: flex; gap: 12px; }
.person img, .person .noface { width: 96px; height: 96px; border-radius: 6px; object-fit: cover; flex: none; }
.person .noface { background: var(--bg); display: flex; align-items: center; justify-content: center; color: var(--muted); font-size: 12px; text-align: center; }
.person h3 { margin: 0 0 4px; font-size: 16px; overflow-wrap: anywhere; }
.person ul { margin: 6px 0 0; padding-left: 16px; }
.result { border: 1px solid var(--line); border-radius: 8px; padding: 14px; margin: 14px 0; }
.result h3 { margin: 0 0 6px; font-size: 16px; word-break: break-all; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
.meta { color: var(--muted); margin-bottom: 8px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; margin-right: 6px; }
.badge.succeeded { background: var(--ok); } .badge.failed { background: var(--bad); } .badge.other { background: var(--muted); }
.body { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.photo { position: relative; display: inline-block; max-width: 100%; }
.photo img { display: block; max-width: min(640px, 100%); max-height: 560px; width: auto; height: auto; border-radius: 4px; }
.photo svg { position: absolute; inset: 0; width: 100%; height: 100%; }
.error { border-left: 4px solid var(--bad); background: #ffebe9; padding: 8px 12px; border-radius: 4px; }
.error code { font-weight: 700; }
.unknown { color: var(--bad); font-weight: 600; }
.known { color: var(--ok); font-weight: 600; }
.timings { color: var(--muted); font-size: 12px; margin-top: 8px; }
.timings span { margin-right: 12px; white-space: nowrap; }
svg.timeline { max-width: 100%; height: auto; font: 12px system-ui, sans-serif; }
svg.timeline .span { fill: #0969da; } svg.timeline .span.unknown { fill: #cf222e; opacity: .7; }
svg.timeline .seg { fill: #f6f8fa; } svg.timeline .seg.odd { fill: #eaeef2; }
.review { background: #fff8c5; }
.review-flag { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; font-weight: 600; background: #d4a72c; color: #fff; margin-left: 4px; }
#review code { display: block; font-size: 12px; white-space: pre-wrap; word-break: break-all; }
svg.timeline .grid { stroke: #d1d9e0; } svg.timeline .tick { fill: #59636e; } svg.timeline .frame { stroke: #8c959f; }
"""


def render(report: Report) -> str:
    """The whole page."""
    photos = [r for r in report.results if job_kind(r.doc) != "video"]
    videos = [r for r in report.results if job_kind(r.doc) == "video"]
    scope = (f"the newest {len(report.results)} of {report.query_results_in_range} query results"
             if len(report.results) < report.query_results_in_range else f"all {len(report.results)} query results")
    if report.since is not None:
        scope += f" written since {when(report.since)}"
    if report.query_results_in_range < report.query_results_total:
        scope += f" ({report.query_results_total} in the bucket)"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>lambdaface report: {e(report.bucket)}</title>",
        f"<style>{CSS}</style></head><body>",
        "<header><h1>lambdaface report</h1>",
        f'<p>bucket <b id="bucket">{e(report.bucket)}</b>'
        + (f" at {e(report.endpoint)}" if report.endpoint else "")
        + f" · generated {e(when(report.generated))} · {e(scope)}</p></header>",
        '<nav><a href="#summary">Summary</a><a href="#people">People</a>'
        f'<a href="#review">Review ({len(review_items(report))})</a>'
        f'<a href="#photos">Photos ({len(photos)})</a><a href="#videos">Videos ({len(videos)})</a></nav>',
        "<main>",
    ]
    if report.problems:
        parts.append('<div class="problems"><b>Could not read everything:</b><ul>'
                     + "".join(f"<li>{e(p)}</li>" for p in report.problems[:50]) + "</ul></div>")
    pages = subjects(report.people, report.results)  # report.write writes a page for each
    parts += [summary(report), people_section(report.people, report.forgotten, pages), review_section(report)]
    parts.append('<section id="photos"><h2>Photos</h2>')
    parts.append("".join(safe_card(r) for r in photos) or '<p class="note">No photo results.</p>')
    parts.append('</section><section id="videos"><h2>Videos</h2>')
    parts.append("".join(safe_card(r) for r in videos) or '<p class="note">No video results.</p>')
    parts.append("</section></main></body></html>\n")
    return "\n".join(parts)


# --- summary ------------------------------------------------------------------------------------


def summary(report: Report) -> str:
    docs = [r.doc for r in report.results] + [d for p in report.people for d in p.results.values()] + report.forgotten
    by = Counter((job_kind(d), str(d.get("status") or "?")) for d in docs)
    kinds = [k for k in ("enroll", "forget", "recognize", "video") if any(kk == k for kk, _ in by)]
    kinds += sorted({k for k, _ in by} - set(kinds))
    statuses = ["succeeded", "failed"] + sorted({s for _, s in by} - {"succeeded", "failed"})
    rows = "".join(
        f'<tr><th>{e(k)}</th>' + "".join(f'<td class="num">{by.get((k, s), 0)}</td>' for s in statuses)
        + f'<td class="num">{sum(by.get((k, s), 0) for s in statuses)}</td></tr>' for k in kinds)
    jobs = (f'<section><h3>Jobs by kind and status</h3><table id="jobs-table"><tr><th>kind</th>'
            + "".join(f"<th>{e(s)}</th>" for s in statuses) + "<th>total</th></tr>" + rows
            + f'<tr><th>all</th>' + "".join(f'<td class="num">{sum(by.get((k, s), 0) for k in kinds)}</td>' for s in statuses)
            + f'<td class="num">{len(docs)}</td></tr></table></section>')

    photo_faces = [f for r in report.results if job_kind(r.doc) == "recognize" for f in (r.doc.get("faces") or [])]
    known = sum(1 for f in photo_faces if f.get("person"))
    video_faces = sum(len(fr.get("faces") or []) for r in report.results if job_kind(r.doc) == "video"
                      for fr in (r.doc.get("frames") or []))
    faces = (f'<section><h3>Faces found</h3><table id="faces-table">'
             f'<tr><th>in photos</th><td class="num">{len(photo_faces)}</td></tr>'
             f'<tr><th>recognized</th><td class="num">{known}</td></tr>'
             f'<tr><th>unknown</th><td class="num">{len(photo_faces) - known}</td></tr>'
             f'<tr><th>in sampled video frames</th><td class="num">{video_faces}</td></tr></table></section>')

    seen = Counter(p for r in report.results for p in set(r.doc.get("people") or []) if p != FORGOTTEN)
    top = seen.most_common(10)
    most = max((n for _, n in top), default=1)
    people = ('<section><h3>People recognized most often</h3>'
              + ('<table id="top-people"><tr><th>person</th><th>photos and videos</th></tr>'
                 + "".join(f'<tr><td>{_linked(p, report)}</td><td><span class="bar" style="width:{round(120 * n / most)}px"></span> {n}</td></tr>'
                           for p, n in top) + "</table>" if top else '<p class="note">Nobody yet.</p>') + "</section>")

    codes = Counter(str((d.get("error") or {}).get("code")) for d in docs if d.get("status") == "failed")
    errors = ('<section><h3>Failures by code</h3>'
              + ('<table id="errors-table"><tr><th>code</th><th>jobs</th></tr>'
                 + "".join(f'<tr><td><code>{e(c)}</code></td><td class="num">{n}</td></tr>' for c, n in codes.most_common())
                 + "</table>" if codes else '<p class="note">None.</p>') + "</section>")
    return f'<section id="summary"><h2>Summary</h2><div class="summary">{jobs}{faces}{people}{errors}</div></section>'


# --- people -------------------------------------------------------------------------------------


def _linked(name: str, report: Report) -> str:
    """A person's name, linked to their page when they have one (enrolled now)."""
    if any(p.name == name for p in report.people):
        return f'<a class="page" href="{e(page_path(name))}">{e(name)}</a>'
    return e(name)


def people_section(people: list[Person], forgotten: list[dict[str, Any]], pages: list[Subject] | None = None) -> str:
    """Everyone enrolled now (each linked to their page), the unknown clusters the results name
    (each linked to its page), and how many images were forgotten (never their names)."""
    cards = []
    for p in people:
        thumb = (f'<img src="{e(p.thumbnail)}" alt="{e(p.name)}" width="96" height="96">' if p.thumbnail
                 else '<div class="noface">no enrolled face</div>')
        counts = f"{len(p.images)} image{'s' if len(p.images) != 1 else ''} · {len(p.enrolled)} enrolled"
        if p.failed:
            counts += f" · {len(p.failed)} failed"
        if p.pending:
            counts += f" · {len(p.pending)} pending"
        failed = "".join(f'<li><span class="unknown"><code>{e(err.get("code"))}</code></span> {e(key.split("/", 2)[2])}: '
                         f'{e(err.get("message"))}</li>' for key, err in p.failed)
        cards.append(f'<div class="person" data-person="{e(p.name)}">{thumb}<div><h3><a class="page" href="{e(page_path(p.name))}">{e(p.name)}</a></h3>'
                     f'<div class="note">{counts}</div>' + (f"<ul>{failed}</ul>" if failed else "") + "</div></div>")
    body = f'<div class="people">{"".join(cards)}</div>' if cards else '<p class="note">Nobody is enrolled.</p>'
    clusters = [c for c in pages or [] if c.cluster]
    if clusters:
        body += ('<h3>Unknown faces, grouped</h3><ul id="clusters">' + "".join(
            f'<li><a class="page" data-cluster="{e(c.name)}" href="{e(c.page)}">unknown {e(c.name)}</a>: '
            f'seen in {len(c.appearances)} result{"s" if len(c.appearances) != 1 else ""}</li>'
            for c in clusters) + "</ul>")
    if forgotten:  # their names are not shown: only how many images were forgotten
        body += (f'<p class="note" id="forgotten">{len(forgotten)} image{"s" if len(forgotten) != 1 else ""} '
                 "forgotten (deleted from models/); the names of people with no image left are not shown.</p>")
    return f'<section id="people"><h2>People ({len(people)})</h2>{body}</section>'


# --- the review queue -----------------------------------------------------------------------------


def review_items(report: Report) -> list[dict[str, Any]]:
    """The faces of the results shown that are marked for review (as `lambdaface review` lists them)."""
    return [item for r in report.results for item in queued(r.doc)]


def review_section(report: Report) -> str:
    """Every face marked for review: where, who, how near, and the commands that confirm or reject it
    (none for a forgotten person's name, which the page does not show)."""
    items = review_items(report)
    if not items:
        return '<section id="review"><h2>Review (0)</h2><p class="note">No face is waiting for review.</p></section>'
    rows = []
    for item in items:
        box = item.get("box") or {}
        nearest = item.get("nearest") or {}
        where = f'{_number(item["t"])} s, face {item["face"]}' if "t" in item else f'face {item["face"]}'
        name = (f'<span class="known">{e(item["person"])}</span>' if item.get("person")
                else '<span class="unknown">unknown</span>')
        todo = [] if FORGOTTEN in (item.get("person"), nearest.get("person")) else commands(item)
        rows.append(f'<tr class="review-face" data-source="{e(item["source"])}" data-face="{e(item["face"])}">'
                    f'<td class="key">{e(item["source"])}</td><td>{e(where)}</td><td class="name">{name}</td>'
                    f'<td class="num">{_number(item.get("distance"))}</td>'
                    f'<td>{e(nearest.get("person") or "-")} {_number(nearest.get("distance"))}</td>'
                    f'<td class="num">{e(box.get("width", "?"))}×{e(box.get("height", "?"))} at '
                    f'{e(box.get("left", "?"))},{e(box.get("top", "?"))}</td>'
                    f'<td>{"".join(f"<code>{e(c)}</code>" for c in todo) or "-"}</td></tr>')
    return (f'<section id="review"><h2>Review ({len(items)})</h2><p class="note">Faces whose distance sits in the '
            'review band around the threshold: confirm or reject each with one command.</p>'
            '<table id="review-table"><tr><th>source</th><th>face</th><th>named</th><th>distance</th><th>nearest</th>'
            '<th>box</th><th>confirm / reject</th></tr>' + "".join(rows) + "</table></section>")


# --- results ------------------------------------------------------------------------------------


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def safe_card(r: Result) -> str:
    """A result's card; a document the page cannot make sense of (written by hand?) says so."""
    try:
        return result_card(r)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        return (f'<article class="result" data-status="unreadable"><h3 class="key">{e(r.doc.get("source"))}</h3>'
                f'<div class="error">this result could not be shown: {e(type(exc).__name__)}: {e(exc)}</div></article>')


def result_card(r: Result) -> str:
    doc = r.doc
    status = str(doc.get("status") or "?")
    badge = status if status in ("succeeded", "failed") else "other"
    source = str(doc.get("source") or "?")
    finished = when_iso(doc.get("finished_at")) or when(r.modified)
    people = doc.get("people") or []
    meta = [f'<span class="badge {badge}">{e(status)}</span>{e(job_kind(doc))}', e(finished)]
    if people:
        meta.append("people: " + ", ".join(f'<span class="known">{e(p)}</span>' for p in people))
    parts = [f'<article class="result" data-status="{e(status)}" data-kind="{e(job_kind(doc))}">',
             f'<h3 class="key">{e(source)}</h3><div class="meta">{" · ".join(meta)}</div>']
    error = doc.get("error")
    if error:
        parts.append(f'<div class="error"><code class="code">{e(error.get("code"))}</code> '
                     f'<span class="message">{e(error.get("message"))}</span></div>')
    if job_kind(doc) == "video":
        parts.append(video_body(r))
    elif status == "succeeded":
        parts.append(photo_body(r))
    timings = doc.get("timings_ms") or {}
    if timings:
        parts.append('<div class="timings">' + "".join(f"<span>{e(k)} {ms(v)}</span>" for k, v in timings.items()) + "</div>")
    parts.append("</article>")
    return "\n".join(parts)


def photo_body(r: Result) -> str:
    doc = r.doc
    faces = doc.get("faces") or []
    image = doc.get("image") or {}
    if r.image and r.image_size:
        width, height = r.image_size
        overlay = ""
        if not r.boxes_drawn and image.get("width") and image.get("height"):
            overlay = (f'<svg viewBox="0 0 {int(image["width"])} {int(image["height"])}" preserveAspectRatio="none">'
                       + "".join(_box(f) for f in faces) + "</svg>")
        picture = (f'<div class="photo"><img src="{e(r.image)}" width="{width}" height="{height}" '
                   f'alt="{e(doc.get("source"))}">{overlay}</div>')
    else:
        picture = '<p class="note">The image is no longer in the bucket.</p>'
    if not faces:
        table = '<p class="note">No face was found.</p>'
    else:
        rows = []
        for i, f in enumerate(faces, 1):
            name = (f'<span class="known">{e(f["person"])}</span>' if f.get("person")
                    else f'<span class="unknown">unknown{" " + e(f["cluster"]) if f.get("cluster") else ""}</span>')
            distance = _number(f.get("distance"))
            candidates = ", ".join(f'{e(c.get("person"))} {_number(c.get("distance"))}' for c in f.get("candidates") or [])
            box = f.get("box") or {}
            flags = ('<span class="review-flag">review</span>' if f.get("review") is True else "") + \
                ('<span class="review-flag added">added</span>' if f.get("added") is True else "")
            rows.append(f'<tr class="face{" review" if f.get("review") is True else ""}"><td class="num">{i}</td>'
                        f'<td class="name">{name}{flags}</td><td class="num">{distance}</td>'
                        f'<td>{candidates or "-"}</td><td class="num">{e(box.get("width", "?"))}×{e(box.get("height", "?"))}'
                        f' at {e(box.get("left", "?"))},{e(box.get("top", "?"))}</td></tr>')
        table = ('<table class="faces"><tr><th>#</th><th>person</th><th>distance</th><th>nearest</th><th>box</th></tr>'
                 + "".join(rows) + "</table>")
    size = f'<p class="note">{e(image.get("width"))}×{e(image.get("height"))} px, {len(faces)} face{"s" if len(faces) != 1 else ""}</p>' \
        if image else ""
    return f'<div class="body">{picture}<div>{size}{table}</div></div>'


def _box(face: dict[str, Any]) -> str:
    b = face.get("box") or {}
    colour = "#2ecc40" if face.get("person") else "#ff4136"
    return (f'<rect x="{e(b.get("left", 0))}" y="{e(b.get("top", 0))}" width="{e(b.get("width", 0))}" height="{e(b.get("height", 0))}" '
            f'fill="none" stroke="{colour}" stroke-width="4" vector-effect="non-scaling-stroke">'
            f'<title>{e(face.get("person") or ("unknown " + face["cluster"] if face.get("cluster") else "unknown"))}</title></rect>')


# --- videos -------------------------------------------------------------------------------------


def video_body(r: Result) -> str:
    doc = r.doc
    facts = []
    if doc.get("duration_s") is not None:
        facts.append(f'{float(doc["duration_s"]):.2f} s')
    if doc.get("fps"):
        facts.append(f'{float(doc["fps"]):g} fps')
    if doc.get("frames_sampled") is not None:
        facts.append(f'{e(doc["frames_sampled"])} frames sampled')
    if doc.get("segments") is not None:
        facts.append(f'{e(doc["segments"])} segment{"s" if doc["segments"] != 1 else ""}')
    head = f'<p class="note">{" · ".join(facts)}</p>' if facts else ""
    if doc.get("status") != "succeeded" or not doc.get("duration_s"):
        return head
    return head + timeline(doc, r.segments)


def _nice_step(span: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if span / step <= 10:
            return step
    return 10 ** math.ceil(math.log10(span / 10))


def timeline(doc: dict[str, Any], segments: list[tuple[float, float]] | None) -> str:
    """One row per person (their appearances), one for unknown faces, the sampled frames below and
    the segments as bands behind; seconds along the top."""
    duration = float(doc["duration_s"])
    label_w, plot_w, row_h, top = 170, 760, 24, 30
    rows: list[tuple[str, list[tuple[float, float]], bool]] = [  # people, then unknown clusters (remembered)
        (str(a.get("person") or f'unknown {a.get("cluster")}'), [(float(s), float(t)) for s, t in a.get("intervals") or []],
         not a.get("person"))
        for a in doc.get("appearances") or []]
    frames = doc.get("frames") or []
    unknown_t = sorted({float(f["t"]) for f in frames
                        if any(not x.get("person") and not x.get("cluster") for x in f.get("faces") or [])})
    if unknown_t:
        step = _sample_interval(frames)
        rows.append(("unknown faces", [(t, min(t + step, duration)) for t in unknown_t], True))
    height = top + row_h * (len(rows) + 1) + 8
    width = label_w + plot_w + 20

    def x(t: float) -> float:
        return round(label_w + plot_w * max(0.0, min(t, duration)) / duration, 2)

    out = [f'<svg class="timeline" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="who appears when in {e(doc.get("source"))}">']
    for i, (a, b) in enumerate(segments or []):
        out.append(f'<rect class="seg{" odd" if i % 2 else ""}" x="{x(a)}" y="{top - 8}" width="{max(0.5, x(b) - x(a))}" '
                   f'height="{height - top}"><title>segment {i + 1}: {a:.2f}-{b:.2f} s</title></rect>')
        if x(b) - x(a) >= 40:  # a label where it fits (every segment has its tooltip)
            out.append(f'<text class="tick" x="{x(a) + 3}" y="{height - 4}">seg {i + 1}</text>')
    step = _nice_step(duration)
    t = 0.0
    while t <= duration + 1e-9:
        out.append(f'<line class="grid" x1="{x(t)}" x2="{x(t)}" y1="{top - 6}" y2="{height - 18}"/>'
                   f'<text class="tick" x="{x(t)}" y="{top - 12}" text-anchor="middle">{t:g} s</text>')
        t += step
    for i, (name, spans, unknown) in enumerate(rows):
        y = top + i * row_h
        out.append(f'<g class="row" data-person="{e(name)}"><text x="{label_w - 8}" y="{y + row_h / 2 + 4}" '
                   f'text-anchor="end"{" font-style=\"italic\"" if unknown else ""}>{e(name)}</text>')
        for a, b in spans:
            out.append(f'<rect class="span{" unknown" if unknown else ""}" x="{x(a)}" y="{y + 4}" '
                       f'width="{max(1.5, x(b) - x(a))}" height="{row_h - 8}" rx="3">'
                       f'<title>{e(name)}: {a:.2f}-{b:.2f} s</title></rect>')
        out.append("</g>")
    y = top + len(rows) * row_h
    out.append(f'<text x="{label_w - 8}" y="{y + row_h / 2 + 4}" text-anchor="end" class="tick">sampled frames</text>')
    out += [f'<line class="frame" x1="{x(float(f["t"]))}" x2="{x(float(f["t"]))}" y1="{y + 6}" y2="{y + row_h - 6}"/>'
            for f in frames]
    out.append("</svg>")
    if not rows:
        out.append('<p class="note">Nobody was seen.</p>')
    if segments is None and doc.get("segments"):
        out.append('<p class="note">Segment boundaries are no longer stored (work/ expires after a day).</p>')
    return "".join(out)


def _sample_interval(frames: Iterable[dict[str, Any]]) -> float:
    times = sorted(float(f["t"]) for f in frames)
    gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
    return min(gaps) if gaps else 0.1
