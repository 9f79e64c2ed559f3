"""The review queue (issue 23): a face whose distance lies within LAMBDAFACE_REVIEW_BAND of the
threshold is marked `"review": true` in its result; `lambdaface review` lists exactly those faces,
and so does the report page (checked in headless Chromium).

Real photos, the real handlers against moto's server (test_people_index.World): each person of
people/ enrolled from their first photo, every other photo of labels.csv recognized. The default
band (0.6 +- 0.04) holds none of these photos' faces: their right matches are at most about 0.53
from their person, and no wrong person comes nearer than about 0.65. So the test sets the threshold
to 0.435 and the band to 0.05 ([0.385, 0.485]), chosen from the measured distances: four faces fall
inside (0.394, 0.401, 0.401 and 0.448, that one then unknown), none within 0.008 of either end.
Enrollment is without jitters here (LAMBDAFACE_ENROLL_JITTERS=1), so that distances are the same
on every run: dlib's random jitters move them by up to 0.03 from one process history to another.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest
from support.browser import Browser, browser  # noqa: F401  (the fixture)
from support.moto import moto_resources
from support.video import write_video
from test_people_index import World, enrolled_photo

from lambdaface import report
from lambdaface.cli import main
from lambdaface.review import commands, queued
from shared.config import EngineConfig, VideoConfig, load_config
from shared.engine.matching import Gallery, needs_review
from shared.engine.video import probe_video, recognize_frames

THRESHOLD, BAND = 0.435, 0.05
MARGIN = 0.005  # no face's distance this near an end of the band


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def world(moto_endpoint: str, faces_dir: Path) -> Iterator[World]:
    with moto_resources(moto_endpoint, LAMBDAFACE_THRESHOLD=str(THRESHOLD), LAMBDAFACE_REVIEW_BAND=str(BAND),
                        LAMBDAFACE_ENROLL_JITTERS="1") as aws:
        w = World(aws, "")
        people = sorted(p.name for p in (faces_dir / "people").iterdir())
        enrolled = set()
        for person in people:
            photo = enrolled_photo(faces_dir, person)
            enrolled.add(f"people/{person}/{photo}")
            aws.put(f"models/{person}/{photo}", (faces_dir / "people" / person / photo).read_bytes())
        w.drain()
        with open(faces_dir / "labels.csv", newline="") as f:
            for row in csv.DictReader(f):
                if row["path"] not in enrolled and not row["path"].startswith(("video/", "seed/")):
                    aws.put(f"queries/{row['path']}", (faces_dir / row["path"]).read_bytes())
        w.drain()
        yield w


def in_band(world: World) -> set[tuple[str, int]]:
    """(source, face number) of every face whose result distance lies in the band, from the distances alone."""
    found = set()
    for source in world.aws.result_sources():
        if not source.startswith("queries/"):
            continue
        doc = world.aws.result(source)
        assert doc["status"] == "succeeded" and doc["model"]["threshold"] == THRESHOLD
        for n, face in enumerate(doc["faces"], start=1):
            d = face["distance"]
            assert abs(abs(d - THRESHOLD) - BAND) > MARGIN, (source, d)
            if abs(d - THRESHOLD) <= BAND:
                found.add((source, n))
                assert face["review"] is True
            else:
                assert "review" not in face
    return found


def test_review_lists_exactly_the_faces_in_the_band(world: World) -> None:
    want = in_band(world)
    assert len(want) == 4  # measured: biden2, rose2, obama_and_biden's biden, kit_with_rose's rose
    code, out = cli("review", "--json")
    assert code == 0
    listed = json.loads(out)["faces"]
    assert {(f["source"], f["face"]) for f in listed} == want
    assert len(listed) == len(want)
    unknown = [f for f in listed if f["person"] is None]
    assert [f["source"] for f in unknown] == ["queries/multi/kit_with_rose.jpg"]  # 0.448: beyond 0.435, in the band
    assert unknown[0]["nearest"]["person"] == "rose_leslie"
    for f in listed:
        doc = world.aws.result(f["source"])
        face = doc["faces"][f["face"] - 1]
        assert f["box"] == face["box"] and f["distance"] == face["distance"]
        assert f["nearest"] == face["candidates"][0]
        base = f"lambdaface correct {f['source']} --face {f['face']}"
        assert f["commands"] == [f"{base} --is {f['nearest']['person']}", f"{base} --not {f['nearest']['person']}"]
    code, text = cli("review")
    assert code == 0 and text.rstrip().endswith("4 face(s) to review")
    for f in listed:
        assert f"{f['source']}  face {f['face']}  box " in text
        assert all(f"    {c}\n" in text for c in f["commands"])


def test_the_report_page_shows_the_review_queue(world: World, browser: Browser, tmp_path: Path) -> None:
    want = in_band(world)
    found = report.collect(world.aws.s3, world.aws.bucket, tmp_path, progress=report.Progress(enabled=False))
    page = report.write(found, tmp_path)
    browser.call("Page.enable")
    browser.call("Page.navigate", url=page.as_uri())
    browser.wait_event("Page.loadEventFired")
    dom = browser.evaluate("""(() => ({
        nav: [...document.querySelectorAll('nav a')].map(a => a.textContent),
        rows: [...document.querySelectorAll('#review-table tr.review-face')].map(tr => ({
            source: tr.dataset.source, face: Number(tr.dataset.face),
            commands: [...tr.querySelectorAll('code')].map(c => c.textContent),
            shown: tr.getBoundingClientRect().height > 0})),
        flagged: [...document.querySelectorAll('table.faces tr.face.review')].map(tr => ({
            source: tr.closest('article').querySelector('h3.key').textContent,
            face: Number(tr.querySelector('td.num').textContent)})),
    }))()""")
    assert "Review (4)" in dom["nav"]
    assert {(r["source"], r["face"]) for r in dom["rows"]} == want and len(dom["rows"]) == 4
    assert all(r["shown"] for r in dom["rows"])
    for r in dom["rows"]:
        doc = world.aws.result(r["source"])
        assert r["commands"] == commands(queued(doc)[[q["face"] for q in queued(doc)].index(r["face"])])
        assert len(r["commands"]) == 2 and r["commands"][0].startswith(f"lambdaface correct {r['source']} --face ")
    assert {(f["source"], f["face"]) for f in dom["flagged"]} == want  # marked in each photo's table too


def test_review_band_in_video_frames(faces_dir: Path, photos: Any, tmp_path: Path) -> None:
    """A video frame's face is marked as a photo's is: obama enrolled from obama.jpg, a short clip
    of obama2.jpg (its face 0.36 from him); the threshold moved so that 0.36 lies in the band, then out."""
    gallery = Gallery.from_pairs([("obama", photos.faces("people/obama/obama.jpg")[0].embedding)])
    frame = cv2.imread(str(faces_dir / "people/obama/obama2.jpg"))
    frame = cv2.resize(frame, (320, 614))
    clip = str(write_video(tmp_path / "obama.mp4", [frame] * 4, fps=2.0))
    seen = {}
    for threshold in (0.38, 0.5):
        cfg = VideoConfig().engine(EngineConfig(threshold=threshold, review_band=0.05))
        [frame_seen] = recognize_frames(clip, probe_video(clip), [1], gallery, cfg)
        (face,) = frame_seen["faces"]
        seen[threshold] = face
        assert face.get("review", False) is needs_review(face["distance"], threshold, 0.05)
    assert seen[0.38]["review"] is True and "review" not in seen[0.5]
    doc = {"status": "succeeded", "kind": "recognize", "source": "queries/obama.mp4", "media": "video",
           "frames": [{"t": 0.5, "faces": [seen[0.38]]}]}
    [item] = queued(doc)
    assert item["t"] == 0.5 and item["face"] == 1
    nearest = item["nearest"]["person"]  # `correct` finds a frame's face by its time
    assert commands(item) == [f"lambdaface correct queries/obama.mp4 --at 0.5 --face 1 --is {nearest}",
                              f"lambdaface correct queries/obama.mp4 --at 0.5 --face 1 --not {nearest}"]


def test_the_band_is_a_setting() -> None:
    assert EngineConfig().review_band == 0.04 and EngineConfig().threshold == 0.6
    assert load_config({"LAMBDAFACE_REVIEW_BAND": "0.1"}).engine.review_band == 0.1
    with pytest.raises(ValueError, match="review_band"):
        load_config({"LAMBDAFACE_REVIEW_BAND": "-0.1"})
    assert not needs_review(0.6, 0.6, 0.0)  # 0: nothing is marked
    assert needs_review(0.56, 0.6, 0.04) and needs_review(0.64, 0.6, 0.04) and not needs_review(0.65, 0.6, 0.04)
    assert not needs_review(None, 0.6, 0.04)
    assert np.isclose(EngineConfig().threshold - EngineConfig().review_band, 0.56)
