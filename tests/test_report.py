"""`lambdaface report` end to end: the local stack enrolls two people (and fails one enrollment),
recognises photos (one fails on purpose, under a key holding `<script>`, a space and unicode) and
the Hamilton clip; then the report is written and opened in a real headless browser (Debian's
`chromium`, driven over the DevTools protocol) whose rendered DOM is checked. A screenshot of the
page is saved as out/report.png.

Also here, because this is the suite's run of a video through the stack that it can reuse: the
clip's job is counted once in the VideoFunction's EMF metrics.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from support import ROOT
from support.browser import Browser, browser  # noqa: F401  (the fixture)
from support.cli import lambdaface
from support.images import background, encode
from support.stack import StackClients, StackProcess, handler_logs, stack_fixture

from lambdaface import report
from lambdaface.report_model import page_path
from lambdaface.report_page import render

CLIP = "video/short_hamilton_clip.mp4"
XSS_KEY = "queries/<script>window.__xss=1</script> café ü.jpg"  # not an image: fails NOT_AN_IMAGE
FAILED_ENROLL = "models/obama/background.jpg"  # no face: a failed enrollment
PHOTOS = {"queries/obama_and_biden.jpg": "multi/obama_and_biden.jpg", "queries/john1.jpg": "seed/john1.jpg"}
SCREENSHOT = ROOT / "out" / "report.png"

stack = stack_fixture("report", workers=2)  # 2 video workers share the clip's segments


@pytest.fixture(scope="module")
def scenario(stack: StackProcess, faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The jobs run, and the report of them written; {"results": {key: doc}, "out": report dir, "run": stdout}."""
    for person, photo in (("obama", "people/obama/obama.jpg"), ("lin_manuel_miranda", "people/lin_manuel_miranda/lin1.png")):
        enrolled = lambdaface("enroll", person, str(faces_dir / photo), stack=stack)
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    aws = StackClients(stack)
    aws.put(CLIP.replace("video/", "queries/"), (faces_dir / CLIP).read_bytes())
    no_face = encode(background(faces_dir).resize((300, 1166)), "JPEG", quality=85)
    aws.put(FAILED_ENROLL, no_face)
    aws.put(XSS_KEY, b"<html>this is not a photo</html>")
    for key, photo in PHOTOS.items():
        aws.put(key, (faces_dir / photo).read_bytes())
    keys = [FAILED_ENROLL, XSS_KEY, *PHOTOS, "queries/short_hamilton_clip.mp4"]
    results = {key: stack.result(key, timeout=600) for key in keys}
    out = tmp_path_factory.mktemp("report-out") / "my report"
    run = lambdaface("report", "--out", str(out), stack=stack)
    assert run.returncode == 0, run.stdout + run.stderr
    return {"results": results, "out": out, "run": run.stdout}


def test_the_jobs_did_what_the_report_shows(scenario: dict[str, Any]) -> None:
    results = scenario["results"]
    assert results[XSS_KEY]["status"] == "failed" and results[XSS_KEY]["error"]["code"] == "NOT_AN_IMAGE"
    assert results[FAILED_ENROLL]["status"] == "failed" and results[FAILED_ENROLL]["error"]["code"] == "NO_FACE"
    assert results["queries/obama_and_biden.jpg"]["people"] == ["obama"]
    assert results["queries/john1.jpg"]["people"] == []
    clip = results["queries/short_hamilton_clip.mp4"]
    assert clip["status"] == "succeeded" and "lin_manuel_miranda" in clip["people"], clip.get("error")
    assert re.search(r"report: .*index\.html: 4 results, 2 people", scenario["run"]), scenario["run"]
    page = (scenario["out"] / "index.html").read_text(encoding="utf-8")
    assert "<script" not in page  # the key is text: &lt;script&gt;
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt; café ü.jpg" in page
    assert "http://" not in page.replace(scenario_endpoint(page), "") and "https://" not in page


def scenario_endpoint(page: str) -> str:
    """The endpoint the header names (the only URL the page may hold: text, never fetched)."""
    found = re.search(r" at (http://127\.0\.0\.1:\d+)", page)
    return found[1] if found else "\0"


def test_the_clip_is_counted_once_in_the_metrics(stack: StackProcess, scenario: dict[str, Any]) -> None:
    clip = scenario["results"]["queries/short_hamilton_clip.mp4"]
    stack.wait_for_lines(r"^VideoFunction message \S+: done \(", 5, timeout=120)
    emf = [line for line in handler_logs(stack.state_dir, "VideoFunction") if "Jobs" in line and "_aws" in line]
    assert len(emf) == 1, emf
    [line] = emf
    assert (line["kind"], line["status"], line["service"], line["job"]) == ("video", "succeeded", "lambdaface", clip["job_id"])
    assert line["VideoSeconds"] == [pytest.approx(clip["duration_s"])]
    assert line["EngineTime"] == [pytest.approx(clip["timings_ms"]["segments"])]
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "LambdaFace"
    assert sorted(map(sorted, directive["Dimensions"])) == [["kind", "service"], ["kind", "service", "status"], ["service"]]


# --- the page in a real browser -----------------------------------------------------------------------

# What the page shows, read from the rendered DOM.
DOM = r"""(async () => {
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
  const text = el => el ? el.textContent.trim() : null;
  return {
    title: document.title,
    scripts: document.scripts.length,
    xss: window.__xss === undefined ? null : window.__xss,
    images: [...document.images].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0,
                                            shown: i.getBoundingClientRect().width > 0})),
    results: [...document.querySelectorAll('article.result')].map(a => ({
      key: text(a.querySelector('h3.key')), status: a.dataset.status, kind: a.dataset.kind,
      section: a.closest('section').id, code: text(a.querySelector('.error .code')),
      message: text(a.querySelector('.error .message')),
      names: [...a.querySelectorAll('table.faces td.name')].map(text),
      img: a.querySelector('img') ? a.querySelector('img').getAttribute('src') : null,
      timings: a.querySelectorAll('.timings span').length,
      rows: [...a.querySelectorAll('svg.timeline g.row')].map(g => g.dataset.person),
      spans: [...a.querySelectorAll('svg.timeline rect.span')].map(r => r.getBoundingClientRect().width),
      segments: a.querySelectorAll('svg.timeline rect.seg').length,
      timelineWidth: a.querySelector('svg.timeline') ? a.querySelector('svg.timeline').getBoundingClientRect().width : 0,
    })),
    people: [...document.querySelectorAll('.person')].map(p => ({name: p.dataset.person, text: p.textContent,
      thumb: p.querySelector('img') ? p.querySelector('img').naturalWidth : 0})),
    jobs: [...document.querySelectorAll('#jobs-table tr')].map(r => [...r.children].map(text)),
    top: [...document.querySelectorAll('#top-people tr td:first-child')].map(text),
  };
})()"""


def test_the_page_in_a_browser(scenario: dict[str, Any], browser: Browser) -> None:
    page = scenario["out"] / "index.html"
    browser.call("Network.enable")
    browser.call("Page.enable")
    browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
    browser.call("Page.navigate", url=page.as_uri())
    browser.wait_event("Page.loadEventFired")
    dom = browser.evaluate(DOM)

    # Every request the page made was for a file beside it: no network, no CDN.
    requested = [ev["params"]["request"]["url"] for ev in browser.events if ev.get("method") == "Network.requestWillBeSent"]
    assert requested and all(url.startswith("file://") for url in requested), requested

    # The key holding <script> is text, and no script ran.
    assert dom["scripts"] == 0 and dom["xss"] is None
    by_key = {r["key"]: r for r in dom["results"]}
    assert set(by_key) == {XSS_KEY, *PHOTOS, "queries/short_hamilton_clip.mp4"}, list(by_key)
    assert [r["key"] for r in dom["results"] if r["section"] == "photos"] == \
        [k for k, _ in sorted(((k, d) for k, d in scenario["results"].items() if k in PHOTOS or k == XSS_KEY),
                              key=lambda kd: kd[1]["finished_at"], reverse=True)]  # newest first

    # Every image loaded and is on screen (no broken image); each photo result shows its annotated copy.
    assert dom["images"] and all(i["ok"] and i["shown"] for i in dom["images"]), dom["images"]
    for key in PHOTOS:
        assert by_key[key]["img"] and by_key[key]["img"].startswith("assets/"), by_key[key]
        assert by_key[key]["timings"] >= 5
    # Names and distances per face, unknowns marked; the failure with its code and message.
    assert by_key["queries/obama_and_biden.jpg"]["names"].count("obama") == 1
    assert by_key["queries/obama_and_biden.jpg"]["names"].count("unknown") == 2
    assert by_key["queries/john1.jpg"]["names"] == ["unknown"]
    xss = by_key[XSS_KEY]
    assert (xss["status"], xss["code"], xss["img"]) == ("failed", "NOT_AN_IMAGE", None)
    assert xss["message"] == scenario["results"][XSS_KEY]["error"]["message"]

    # People: both enrolled, with a face thumbnail; obama's failed enrollment with its code.
    people = {p["name"]: p for p in dom["people"]}
    assert set(people) == {"obama", "lin_manuel_miranda"}
    assert all(p["thumb"] > 0 for p in people.values())
    assert "2 images · 1 enrolled · 1 failed" in people["obama"]["text"] and "NO_FACE" in people["obama"]["text"]
    assert "background.jpg" in people["obama"]["text"]

    # The clip's timeline: one row per person seen (lin enrolled, alex unknown), drawn, with its 4 segments.
    video = by_key["queries/short_hamilton_clip.mp4"]
    assert video["section"] == "videos" and video["timelineWidth"] > 300
    assert video["rows"][0] == "lin_manuel_miranda" and "unknown faces" in video["rows"], video["rows"]
    assert len(video["spans"]) >= 2 and all(w > 0 for w in video["spans"])
    assert video["segments"] == 4

    # The summary: jobs by kind and status, people recognized most often.
    jobs = {row[0]: row[1:] for row in dom["jobs"][1:]}
    assert jobs["enroll"] == ["2", "1", "3"] and jobs["recognize"] == ["2", "1", "3"] and jobs["video"] == ["1", "0", "1"]
    assert dom["top"][0] in ("obama", "lin_manuel_miranda") and set(dom["top"]) == {"obama", "lin_manuel_miranda"}

    # A screenshot of the whole page for people to look at.
    height = browser.evaluate("document.documentElement.scrollHeight")
    shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1})
    import base64

    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
    assert SCREENSHOT.stat().st_size > 20_000


# --- the parts without a stack --------------------------------------------------------------------------


def test_since_takes_durations_and_dates() -> None:
    now = 1_800_000_000.0
    assert report.parse_since("90m", now) == now - 5400
    assert report.parse_since("2d", now) == now - 172800
    assert report.parse_since("2026-11-28", now) == 1795824000.0  # midnight UTC
    assert report.parse_since("2026-11-28T16:30:00+01:00", now) == 1795824000.0 + 15.5 * 3600
    assert report.parse_since(None, now) is None
    with pytest.raises(ValueError):
        report.parse_since("yesterday", now)


def test_bad_arguments_exit_2(stack: StackProcess) -> None:
    for args in (["--since", "yesterday"], ["--limit", "0"]):
        run = lambdaface("report", *args, stack=stack)
        assert run.returncode == 2 and args[0] in run.stderr, run.stderr


def test_limit_keeps_the_newest(scenario: dict[str, Any], stack: StackProcess, tmp_path: Path) -> None:
    run = lambdaface("report", "--out", str(tmp_path), "--limit", "1", stack=stack)
    assert run.returncode == 0, run.stderr
    assert "1 results (newest 1 of 4)" in run.stdout
    newest = max(scenario["results"].items(), key=lambda kd: kd[1]["finished_at"] if kd[0].startswith("queries/") else "")
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert page.count('<article class="result"') == 1 and "the newest 1 of 4 query results" in page
    from html import escape

    assert escape(newest[0]) in page
    assert len(list((tmp_path / "assets").glob("*.jpg"))) == 2 + (newest[0] in PHOTOS)  # 2 thumbnails (+1 photo)


def test_an_empty_bucket_makes_a_page_that_says_so(tmp_path: Path) -> None:
    empty = report.Report("b", None, 0.0, [], [], 0, 0, 200, None)
    page = render(empty)
    assert "Nobody is enrolled." in page and "No photo results." in page and "No video results." in page


def test_the_progress_bar_draws_on_a_terminal_only() -> None:
    import io

    shown = io.StringIO()
    bar = report.Progress(shown, enabled=True)
    assert report.fetch_all([1, 2, 3, 4], lambda n: n * n, bar, "reading results") == [1, 4, 9, 16]
    assert "reading results" in shown.getvalue() and "[" + "#" * 30 + "] 4/4" in shown.getvalue()
    quiet = io.StringIO()  # not a terminal: nothing
    assert report.fetch_all([1], lambda n: n, report.Progress(quiet), "x") == [1] and quiet.getvalue() == ""


def test_hostile_result_documents_are_text() -> None:
    """Result documents are JSON anyone with write access to results/ could have written."""
    evil = "<script>alert(1)</script>"
    docs = [
        {"source": f"queries/{evil}.jpg", "kind": "recognize", "status": "succeeded", "people": [evil],
         "image": {"width": evil, "height": 2}, "error": {"code": evil, "message": evil},
         "faces": [{"box": {"left": evil, "top": 1, "width": 2, "height": 3}, "person": evil, "distance": 0.2,
                    "candidates": [{"person": evil, "distance": None}]}], "timings_ms": {evil: evil}},
        {"source": f"queries/{evil}.mp4", "kind": "recognize", "media": "video", "status": "succeeded",
         "duration_s": "long", "segments": evil},  # unreadable: its card says so
        {"source": "queries/v.mp4", "kind": "recognize", "media": "video", "status": "succeeded", "duration_s": 2.0,
         "fps": 10, "frames_sampled": 2, "segments": 1, "appearances": [{"person": evil, "intervals": [[0.0, 1.0]]}],
         "frames": [{"t": 0.0, "faces": [{"person": None}]}, {"t": 1.0, "faces": []}]},
    ]
    person = report.Person(evil, [f"models/{evil}/a.jpg"], {f"models/{evil}/a.jpg": {
        "kind": "enroll", "status": "failed", "error": {"code": evil, "message": evil}}})
    page = render(report.Report(evil, evil, 0.0, [person], [report.Result(d, 0.0) for d in docs], 3, 3, 200, None))
    assert "<script" not in page and page.count("&lt;script&gt;") > 10
    assert 'data-status="unreadable"' in page and "could not be shown" in page
    assert page.count('<rect class="span') == 2  # the person's interval and the unknown face's


def test_without_annotated_copies_the_page_draws_the_boxes_and_the_listing_pages(aws: Any, faces_dir: Path,
                                                                                   tmp_path: Path) -> None:
    """`AnnotatedImages=false`: the source photo is shown with the boxes drawn over it. And a
    listing past one page (1000 keys) is read whole, the newest `--limit` kept."""
    from concurrent.futures import ThreadPoolExecutor

    source = "queries/sub dir/ü photo.jpg"
    aws.put(source, (faces_dir / "multi/two_people.jpg").read_bytes())
    doc = {"job_id": "j", "kind": "recognize", "source": source, "status": "succeeded", "finished_at": "2030-01-01T00:00:00.000Z",
           "image": {"width": 1126, "height": 661}, "people": ["obama"],
           "faces": [{"box": {"left": 244, "top": 62, "width": 151, "height": 150}, "person": "obama", "distance": 0.3, "candidates": []},
                     {"box": {"left": 792, "top": 95, "width": 150, "height": 150}, "person": None, "distance": 0.7, "candidates": []}]}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: aws.put(f"results/queries/filler{i:04d}.jpg.json", json.dumps(
            {"job_id": f"f{i}", "kind": "recognize", "source": f"queries/filler{i:04d}.jpg", "status": "failed",
             "finished_at": "2020-01-01T00:00:00.000Z", "error": {"code": "NO_FACE", "message": "x"}}).encode()), range(1001)))
    time.sleep(1.1)  # LastModified has a resolution of one second: ours is the newest
    aws.put(f"results/{source}.json", json.dumps(doc).encode())
    found = report.collect(aws.s3, aws.bucket, tmp_path, limit=3, progress=report.Progress(enabled=False))
    assert (found.query_results_total, found.query_results_in_range, len(found.results)) == (1002, 1002, 3)
    [ours] = [r for r in found.results if r.doc["source"] == source]
    assert ours.image and not ours.boxes_drawn and ours.image_size == (1024, 601)  # downscaled to 1024
    page = render(found)
    assert page.count('stroke="#2ecc40"') == 1 and page.count('stroke="#ff4136"') == 1  # obama, unknown
    assert '<svg viewBox="0 0 1126 661"' in page and "ü photo.jpg" in page


def test_a_video_timeline_names_remembered_unknown_clusters() -> None:
    """With remembering on, an unknown person's appearance is a row of its own, named by its cluster."""
    from lambdaface.report_page import timeline

    doc = {"duration_s": 4.0, "appearances": [
        {"person": "obama", "intervals": [[0.0, 2.0]]},
        {"person": None, "cluster": "u-3f9c0a1b2c4d", "intervals": [[2.0, 4.0]]}],
        "frames": [{"t": 0.0, "faces": [{"person": "obama"}]}, {"t": 2.0, "faces": [{"person": None, "cluster": "u-3f9c0a1b2c4d"}]}]}
    svg = timeline(doc, None)
    assert 'data-person="obama"' in svg and 'data-person="unknown u-3f9c0a1b2c4d"' in svg
    assert "None" not in svg and "unknown faces" not in svg  # every unknown face here has its cluster's row


# --- bad documents, forgotten people, the assets' lifetime (issue 20) ----------------------------------


def test_a_malformed_result_document_is_skipped_with_a_note(aws: Any, faces_dir: Path, tmp_path: Path) -> None:
    """Anyone with write access to results/ can put anything there: each document the page cannot
    show is skipped, with a note naming it; the rest of the page renders."""
    good = {"job_id": "g", "kind": "recognize", "source": "queries/good.jpg", "status": "failed",
            "finished_at": "2030-01-01T00:00:00.000Z", "error": {"code": "NO_FACE", "message": "no face"}}
    bad: dict[str, Any] = {
        "results/queries/status-list.jpg.json": {"source": "queries/status-list.jpg", "kind": "recognize", "status": ["x"]},
        "results/queries/faces-number.jpg.json": {"source": "queries/faces-number.jpg", "kind": "recognize",
                                                  "status": "succeeded", "faces": 5},
        "results/queries/finished-number.jpg.json": {"source": "queries/finished-number.jpg", "kind": "recognize",
                                                     "status": "failed", "finished_at": 5},
        "results/queries/frames-text.mp4.json": {"source": "queries/frames-text.mp4", "kind": "recognize", "media": "video",
                                                 "status": "succeeded", "duration_s": 2.0, "frames": ["x"]},
        "results/queries/a-list.jpg.json": [1, 2],
        "results/queries/not-json.jpg.json": "{nope",
    }
    for key, doc in bad.items():
        aws.put(key, (doc if isinstance(doc, str) else json.dumps(doc)).encode())
    aws.put("results/queries/good.jpg.json", json.dumps(good).encode())
    # An enrollment whose result has a face without a box: no thumbnail, said so.
    aws.put("models/obama/obama.jpg", (faces_dir / "people/obama/obama.jpg").read_bytes())
    aws.put("results/models/obama/obama.jpg.json", json.dumps(
        {"job_id": "e", "kind": "enroll", "source": "models/obama/obama.jpg", "status": "succeeded",
         "person": "obama", "faces": [{"person": "obama"}]}).encode())
    found = report.collect(aws.s3, aws.bucket, tmp_path, progress=report.Progress(enabled=False))
    page = render(found)
    assert [r.doc["source"] for r in found.results] == ["queries/good.jpg"]
    for key in bad:
        [note] = [p for p in found.problems if p.startswith(f"{key}: skipped")]
        assert f"<li>{key}: skipped" in page, note
    assert "obama: no enrolled image could be read for a thumbnail" in found.problems
    assert page.count('<article class="result"') == 1 and "queries/good.jpg" in page and 'data-person="obama"' in page


def test_forgotten_people_leave_the_page_and_its_assets(aws: Any, faces_dir: Path, tmp_path: Path) -> None:
    """A person whose images were all deleted is named nowhere on the next report: not in the
    people section, not in the results that recognized them (they read "(forgotten)"), not drawn on
    a photo (the source photo is shown with the page's boxes instead of the annotated copy); and
    that run deletes the assets the earlier run wrote for them (thumbnail, annotated photo)."""
    from handlers import enroll, recognize
    from support.lambda_events import OK, context

    for person in ("obama", "biden"):
        key = f"models/{person}/{person}.jpg"
        aws.put(key, (faces_dir / f"people/{person}/{person}.jpg").read_bytes())
        assert enroll.handler(aws.event(key), context()) == OK
    aws.put("queries/two.jpg", (faces_dir / "multi/two_people.jpg").read_bytes())
    assert recognize.handler(aws.event("queries/two.jpg"), context()) == OK
    assert aws.result("queries/two.jpg")["people"] == ["biden", "obama"]

    out = tmp_path / "report"
    first = report.collect(aws.s3, aws.bucket, out, progress=report.Progress(enabled=False))
    assert "obama" in render(first)
    report.write(first, out)
    obama_page = out / page_path("obama")
    assert "obama" in obama_page.read_text(encoding="utf-8") and (out / page_path("biden")).exists()
    thumbnail = {p.name: out / p.thumbnail for p in first.people}
    [shown] = first.results
    annotated = out / shown.image
    assert shown.boxes_drawn and annotated.exists() and thumbnail["obama"].exists()

    aws.delete("models/obama/obama.jpg")
    assert enroll.handler(aws.event("models/obama/obama.jpg", event_name="ObjectRemoved:Delete"), context()) == OK
    assert aws.result("models/obama/obama.jpg")["kind"] == "forget"

    aws.put("results/models/obama/other.jpg.json", b"{not json")  # a bad document of theirs: its note hides the name
    second = report.collect(aws.s3, aws.bucket, out, progress=report.Progress(enabled=False))
    page = render(second)
    report.write(second, out)  # their page goes too; biden's stays
    assert not obama_page.exists() and [p.name for p in (out / "people").iterdir()] == [Path(page_path("biden")).name]
    assert "obama" not in (out / page_path("biden")).read_text(encoding="utf-8").lower()
    assert "obama" not in page.lower()
    assert any(p.startswith("results/models/(forgotten)/other.jpg.json: skipped, it could not be read")
               for p in second.problems), second.problems
    assert "(forgotten)" in page and 'data-person="biden"' in page and "1 image forgotten" in page
    [shown] = second.results
    assert shown.redacted and not shown.boxes_drawn and (out / shown.image).exists()  # the source photo
    assert sorted(f["person"] for f in shown.doc["faces"]) == ["(forgotten)", "biden"]
    assert not thumbnail["obama"].exists() and not annotated.exists()  # deleted by the second run
    assert thumbnail["biden"].exists()
    assert sorted(p.name for p in (out / "assets").iterdir()) == sorted({Path(second.people[0].thumbnail).name,
                                                                          Path(shown.image).name})
