"""Person pages in `lambdaface report` (issue 22): a page per person enrolled now and per unknown
cluster (remembering on), linked from the summary page: their enrolled faces, then every photo
(a thumbnail) and video (its intervals) where they appear, newest first. Checked in headless
Chromium over the DevTools protocol, as tests/test_report.py checks the summary page.

The local stack remembers unknown faces; obama (two photos) and biden are enrolled; then, one
after another: obama2.jpg, john1.jpg (nobody enrolled: a cluster), a video of obama, john and
biden (HOG, 2 sampled frames a second, to stay fast), two_people.jpg (obama and biden). Then biden
is forgotten and the report run again into the same folder: his page is gone.
"""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from support import ROOT
from support.browser import Browser, browser  # noqa: F401  (the fixture)
from support.cli import lambdaface
from support.stack import StackClients, StackProcess, stack_fixture
from support.video import photo_video

from lambdaface.report_model import page_path

VIDEO_ENV = {"LAMBDAFACE_VIDEO_DETECTOR": "hog", "LAMBDAFACE_SEGMENT_S": "2", "LAMBDAFACE_SAMPLE_FPS": "2"}
ENROLL = {"obama": ["people/obama/obama.jpg", "people/obama/obama4.jpg"], "biden": ["people/biden/biden.jpg"]}
SCENES = ["people/obama/obama2.jpg", "seed/john2.jpg", "people/biden/biden2.jpg"]  # 2 s each
QUERIES = ["queries/obama2.jpg", "queries/john1.jpg", "queries/scenes.mp4", "queries/two_people.jpg"]  # in this order

SCREENSHOT = ROOT / "out" / "report_person.png"

stack = stack_fixture("people", "--remember-unknowns", workers=1, env=VIDEO_ENV)


@pytest.fixture(scope="module")
def scenario(stack: StackProcess, faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The jobs run one after another (so they finish in QUERIES' order), the report written."""
    for person, photos in ENROLL.items():
        for photo in photos:
            enrolled = lambdaface("enroll", person, str(faces_dir / photo), stack=stack)
            assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    aws = StackClients(stack)
    scenes = photo_video(tmp_path_factory.mktemp("video") / "scenes.mp4", [faces_dir / p for p in SCENES], 2.0, 10.0)
    sources = {"queries/obama2.jpg": faces_dir / "people/obama/obama2.jpg", "queries/john1.jpg": faces_dir / "seed/john1.jpg",
               "queries/scenes.mp4": scenes, "queries/two_people.jpg": faces_dir / "multi/two_people.jpg"}
    results = {}
    for key in QUERIES:
        aws.put(key, sources[key].read_bytes())
        results[key] = stack.result(key, timeout=600)
        assert results[key]["status"] == "succeeded", results[key].get("error")
    out = tmp_path_factory.mktemp("report-people") / "report"
    run = lambdaface("report", "--out", str(out), stack=stack)
    assert run.returncode == 0, run.stdout + run.stderr
    return {"results": results, "out": out}


def test_the_jobs_saw_who_the_pages_show(scenario: dict[str, Any]) -> None:
    results = scenario["results"]
    assert results["queries/obama2.jpg"]["people"] == ["obama"]
    assert results["queries/two_people.jpg"]["people"] == ["biden", "obama"]
    [john] = results["queries/john1.jpg"]["faces"]
    assert john["person"] is None and john["cluster"].startswith("u-")
    video = results["queries/scenes.mp4"]
    seen = {a["person"] or a["cluster"]: a for a in video["appearances"]}
    assert {"obama", "biden"} <= set(seen) and any(k.startswith("u-") for k in seen), video["appearances"]
    finished = [results[k]["finished_at"] for k in QUERIES]
    assert finished == sorted(finished)  # one after another


# What a page shows, read from the rendered DOM.
DOM = r"""(async () => {
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
  const text = el => el ? el.textContent.trim() : null;
  return {
    title: text(document.querySelector('h1')),
    scripts: document.scripts.length,
    images: [...document.images].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0,
                                            shown: i.getBoundingClientRect().width > 0, cls: i.className})),
    links: [...document.querySelectorAll('a.page')].map(a => ({text: text(a), href: a.href})),
    back: document.querySelector('#back') ? document.querySelector('#back').href : null,
    appearances: [...document.querySelectorAll('article.appearance')].map(a => ({
      key: text(a.querySelector('h3.key')), kind: a.dataset.kind, finished: a.dataset.finished,
      thumb: a.querySelector('.thumb img') ? a.querySelector('.thumb img').naturalWidth : 0,
      intervals: [...a.querySelectorAll('li.interval')].map(text),
      bars: [...a.querySelectorAll('svg.onscreen rect.on')].map(r => r.getBoundingClientRect().width),
      distances: [...a.querySelectorAll('ul.found li')].map(text),
    })),
  };
})()"""


def open_page(browser: Browser, url: str) -> dict[str, Any]:
    """Navigate to `url` (a file:// URL), wait for it to load, read its DOM; every request it made is a file."""
    browser.events.clear()
    browser.call("Page.navigate", url=url)
    browser.wait_event("Page.loadEventFired")
    dom = browser.evaluate(DOM)
    requested = [ev["params"]["request"]["url"] for ev in browser.events if ev.get("method") == "Network.requestWillBeSent"]
    assert requested and all(u.startswith("file://") for u in requested), requested
    assert dom["scripts"] == 0
    assert all(i["ok"] and i["shown"] for i in dom["images"]), dom["images"]  # every thumbnail loaded, on screen
    return dom


def expected(results: dict[str, Any], match: Any) -> list[tuple[str, Any]]:
    """(key, what the result says of the subject) for every result naming it, newest first."""
    found = []
    for key in sorted(results, key=lambda k: results[k]["finished_at"], reverse=True):
        doc = results[key]
        if doc.get("media") == "video":
            hits = [a["intervals"] for a in doc["appearances"] if match(a)]
            if hits:
                found.append((key, hits[0]))
        elif faces := [f for f in doc["faces"] if match(f)]:
            found.append((key, faces))
    return found


def check_appearances(dom: dict[str, Any], want: list[tuple[str, Any]]) -> None:
    assert [a["key"] for a in dom["appearances"]] == [k for k, _ in want]  # every one, newest first
    finished = [a["finished"] for a in dom["appearances"]]
    assert finished == sorted(finished, reverse=True)
    for shown, (key, what) in zip(dom["appearances"], want):
        if key.endswith(".mp4"):
            assert shown["kind"] == "video" and shown["thumb"] == 0
            assert shown["intervals"] == [f"{a:.2f}–{b:.2f} s" for a, b in what]  # the intervals, as the result has them
            assert len(shown["bars"]) == len(what) and all(w > 0 for w in shown["bars"])
        else:
            assert shown["kind"] == "photo" and shown["thumb"] > 0  # the photo's thumbnail loaded
            assert [d.split(" · ")[0] for d in shown["distances"]] == [f"distance {f['distance']:.3f}" for f in what]


def test_person_and_cluster_pages_in_a_browser(scenario: dict[str, Any], browser: Browser) -> None:
    results, out = scenario["results"], scenario["out"]
    browser.call("Network.enable")
    browser.call("Page.enable")
    browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
    index = open_page(browser, (out / "index.html").as_uri())

    # The summary links every person enrolled and every cluster the results name to its page.
    clusters = sorted({x["cluster"] for d in results.values() for x in [*d.get("faces", []), *d.get("appearances", [])]
                       if x.get("cluster") and not x.get("person")})
    links = {link["text"]: link["href"] for link in index["links"]}
    assert {"obama", "biden", *(f"unknown {c}" for c in clusters)} == set(links), links
    for name in ("obama", "biden"):
        assert links[name] == (out / page_path(name)).as_uri()
    assert sorted(p.name for p in (out / "people").iterdir()) == sorted(
        Path(page_path(n, cluster=n.startswith("u-"))).name for n in ["obama", "biden", *clusters])

    # obama's page: both enrolled faces, then obama2.jpg, the video, two_people.jpg, newest first.
    obama = open_page(browser, links["obama"])
    assert obama["title"] == "obama" and obama["back"] == (out / "index.html").as_uri()
    assert len([i for i in obama["images"] if i["cls"] == "face"]) == 2
    want = expected(results, lambda x: x.get("person") == "obama")
    assert [k for k, _ in want] == ["queries/two_people.jpg", "queries/scenes.mp4", "queries/obama2.jpg"]
    check_appearances(obama, want)

    # A screenshot of obama's page for people to look at.
    height = browser.evaluate("document.documentElement.scrollHeight")
    shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1})
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))

    biden = open_page(browser, links["biden"])
    assert len([i for i in biden["images"] if i["cls"] == "face"]) == 1
    want = expected(results, lambda x: x.get("person") == "biden")
    assert [k for k, _ in want] == ["queries/two_people.jpg", "queries/scenes.mp4"]
    check_appearances(biden, want)

    # A page per unknown cluster: where its faces were seen (john1.jpg's cluster, the video's john).
    seen_in = set()
    for cluster in clusters:
        page = open_page(browser, links[f"unknown {cluster}"])
        assert page["title"] == f"unknown {cluster}"
        want = expected(results, lambda x, c=cluster: x.get("cluster") == c and not x.get("person"))
        check_appearances(page, want)
        seen_in |= {k for k, _ in want}
    assert {"queries/john1.jpg", "queries/scenes.mp4"} <= seen_in


def test_a_forgotten_persons_page_is_deleted_by_the_next_run(scenario: dict[str, Any], stack: StackProcess) -> None:
    out = scenario["out"]
    biden_page = out / page_path("biden")
    assert biden_page.exists()
    forgot = lambdaface("forget", "biden", stack=stack)
    assert forgot.returncode == 0, forgot.stdout + forgot.stderr
    run = lambdaface("report", "--out", str(out), stack=stack)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not biden_page.exists() and (out / page_path("obama")).exists()
    for page in [out / "index.html", *(out / "people").glob("*.html")]:
        assert "biden" not in page.read_text(encoding="utf-8").lower(), page
