"""The page of one person (or one unknown cluster) in `lambdaface report`: their enrolled faces,
then every photo (a thumbnail, their faces' distances) and every video (their intervals, seconds on
screen) of the results the report read where they appear, newest first.

The page lives in `DIR/people/` beside `index.html`: assets and the summary are one folder up. As on
the summary page: no script, no network, every text from the bucket through `e()`.
"""
from __future__ import annotations

from typing import Any

from lambdaface.report_model import Appearance, Report, Subject
from lambdaface.report_page import CSS, e, job_kind, when, when_iso

UP = "../"  # from DIR/people/ to DIR/

PAGE_CSS = """
.faces-row { display: flex; flex-wrap: wrap; gap: 10px; }
.faces-row img { width: 96px; height: 96px; border-radius: 6px; object-fit: cover; }
.appearance { border: 1px solid var(--line); border-radius: 8px; padding: 12px; margin: 12px 0; display: flex; gap: 16px; }
.appearance h3 { margin: 0 0 4px; font-size: 15px; word-break: break-all; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
.appearance .thumb { position: relative; flex: none; align-self: flex-start; }
.appearance .thumb img { display: block; max-width: 240px; max-height: 180px; width: auto; height: auto; border-radius: 4px; }
.appearance .thumb p { width: 240px; }
.appearance .thumb svg { position: absolute; inset: 0; width: 100%; height: 100%; }
.appearance ul { margin: 4px 0; padding-left: 18px; }
svg.onscreen { display: block; margin-top: 6px; max-width: 100%; height: auto; }
svg.onscreen .all { fill: #eaeef2; } svg.onscreen .on { fill: #0969da; }
"""


def title(subject: Subject) -> str:
    return f"unknown {subject.name}" if subject.cluster else subject.name


def render(report: Report, subject: Subject) -> str:
    """The whole page of `subject`."""
    scope = (f"the newest {len(report.results)} of {report.query_results_in_range} query results"
             if len(report.results) < report.query_results_in_range else f"all {len(report.results)} query results")
    if report.since is not None:
        scope += f" written since {when(report.since)}"
    photos = sum(1 for a in subject.appearances if not a.intervals and a.faces)
    videos = len(subject.appearances) - photos
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title(subject))}: lambdaface report</title>",
        f"<style>{CSS}{PAGE_CSS}</style></head><body>",
        f'<header><h1 id="subject" data-cluster="{str(subject.cluster).lower()}">{e(title(subject))}</h1>'
        f'<p>bucket {e(report.bucket)} · generated {e(when(report.generated))} · {e(scope)}</p></header>',
        f'<nav><a id="back" href="{UP}index.html">Summary</a><a href="#faces">Faces</a>'
        f'<a href="#appearances">Appearances ({len(subject.appearances)})</a></nav>',
        "<main>",
        faces_section(subject),
        f'<section id="appearances"><h2>Where {"this cluster appears" if subject.cluster else "they appear"}, newest first</h2>'
        f'<p class="note">{photos} photo{"s" if photos != 1 else ""}, {videos} video{"s" if videos != 1 else ""} '
        f"in {e(scope)}.</p>",
        "".join(appearance_card(a) for a in subject.appearances)
        or '<p class="note">Not seen in the results the report read.</p>',
        "</section></main></body></html>\n",
    ]
    return "\n".join(parts)


def faces_section(subject: Subject) -> str:
    if subject.cluster:
        return ('<section id="faces"><h2>Faces</h2><p class="note">An unknown face: nobody enrolled matches it. '
                "Name it with <code>lambdaface name " + e(subject.name) + " PERSON</code>.</p></section>")
    person = subject.person
    faces = person.faces if person else []
    imgs = "".join(f'<img class="face" src="{e(UP + f)}" alt="{e(subject.name)}" width="96" height="96">' for f in faces)
    enrolled = len(person.enrolled) if person else 0
    return (f'<section id="faces"><h2>Enrolled faces ({enrolled})</h2>'
            + (f'<div class="faces-row">{imgs}</div>' if imgs else '<p class="note">No enrolled face could be shown.</p>')
            + "</section>")


def appearance_card(a: Appearance) -> str:
    doc = a.result.doc
    finished = doc.get("finished_at") or ""
    kind = "video" if job_kind(doc) == "video" else "photo"
    head = (f'<article class="appearance" data-kind="{kind}" data-finished="{e(finished)}">'
            f'{_thumb(a) if kind == "photo" else ""}<div><h3 class="key">{e(doc.get("source"))}</h3>'
            f'<div class="meta">{e(when_iso(finished) or when(a.result.modified))}</div>')
    if kind == "photo":
        body = "<ul class=\"found\">" + "".join(
            f'<li>distance {_number(f.get("distance"))} · box {e((f.get("box") or {}).get("width", "?"))}×'
            f'{e((f.get("box") or {}).get("height", "?"))} at {e((f.get("box") or {}).get("left", "?"))},'
            f'{e((f.get("box") or {}).get("top", "?"))}</li>' for f in a.faces) + "</ul>"
    else:
        body = (f'<p class="seconds">{_number(a.seconds)} s on screen'
                + (f' of {float(doc["duration_s"]):.2f} s' if isinstance(doc.get("duration_s"), (int, float)) else "")
                + "</p><ul class=\"intervals\">"
                + "".join(f'<li class="interval">{s:.2f}–{t:.2f} s</li>' for s, t in a.intervals) + "</ul>"
                + _bar(a, doc))
    return head + body + "</div></article>"


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _thumb(a: Appearance) -> str:
    r = a.result
    if not r.image or not r.image_size:
        return '<div class="thumb"><p class="note">The image is no longer in the bucket.</p></div>'
    width, height = r.image_size
    image = r.doc.get("image") or {}
    overlay = ""
    if not r.boxes_drawn and image.get("width") and image.get("height"):  # the source photo: the page draws their boxes
        overlay = (f'<svg viewBox="0 0 {int(image["width"])} {int(image["height"])}" preserveAspectRatio="none">'
                   + "".join(f'<rect x="{e(b.get("left", 0))}" y="{e(b.get("top", 0))}" width="{e(b.get("width", 0))}" '
                             f'height="{e(b.get("height", 0))}" fill="none" stroke="#2ecc40" stroke-width="3" '
                             'vector-effect="non-scaling-stroke"/>' for b in (f.get("box") or {} for f in a.faces))
                   + "</svg>")
    return (f'<div class="thumb"><img src="{e(UP + r.image)}" width="{width}" height="{height}" '
            f'alt="{e(r.doc.get("source"))}">{overlay}</div>')


def _bar(a: Appearance, doc: dict[str, Any]) -> str:
    """The video's length as a bar, the intervals on it."""
    duration = doc.get("duration_s")
    if not isinstance(duration, (int, float)) or duration <= 0:
        return ""
    w = 480

    def x(t: float) -> float:
        return round(w * max(0.0, min(t, float(duration))) / float(duration), 2)

    spans = "".join(f'<rect class="on" x="{x(s)}" y="0" width="{max(1.5, x(t) - x(s))}" height="12">'
                    f"<title>{s:.2f}–{t:.2f} s</title></rect>" for s, t in a.intervals)
    return f'<svg class="onscreen" viewBox="0 0 {w} 12" width="{w}" height="12"><rect class="all" width="{w}" height="12"/>{spans}</svg>'
