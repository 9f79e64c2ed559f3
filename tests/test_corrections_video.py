"""Corrections on a video (issue 23): a face of one sampled frame corrected with `correct --at T`;
the result's frames and appearances follow at once, and the video's next recognition (segments,
then the merge) comes out corrected too. The real handlers against moto's server, on the clip of
../shared/faces (CNN at 2 frames a second, 3-second segments, as tests/test_people_index.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.moto import moto_resources
from test_corrections import Corrections, create_corrections, no_rewrite, sources_of
from test_people_index import create_index

from shared.pipeline.video_copy import drop_local_copy

CLIP = "video/short_hamilton_clip.mp4"
ENV = {"LAMBDAFACE_SEGMENT_S": "3", "LAMBDAFACE_SAMPLE_FPS": "2"}
LIN = "lin_manuel_miranda"


def seconds_of(doc: dict[str, Any], person: str) -> float:
    return sum(a["seconds"] for a in doc["appearances"] if a["person"] == person)


def test_a_corrected_video_frame_stays_corrected_through_the_next_recognition(
        moto_endpoint: str, faces_dir: Path, template: dict[str, Any]) -> None:
    with moto_resources(moto_endpoint, **ENV) as aws:
        w = Corrections(aws, create_index(aws, template), create_corrections(aws, template))
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PEOPLE_INDEX_TABLE", w.index)
            mp.setenv("CORRECTIONS_TABLE", w.table)
            mp.setenv("VIDEO_QUEUE_URL", w.queues["video"].url)
            drop_local_copy()
            photo = sorted((faces_dir / "people" / LIN).iterdir())[0]
            aws.put(f"models/{LIN}/{photo.name}", photo.read_bytes())
            key, data = f"queries/{CLIP}", (faces_dir / CLIP).read_bytes()
            w.upload(key, data)
            engine = aws.result(key)
            frame = next(f for f in engine["frames"] if any(face["person"] == LIN for face in f["faces"]))
            n = next(i for i, face in enumerate(frame["faces"], start=1) if face["person"] == LIN)
            w.correct(key, n, "--at", str(frame["t"]), "--not", LIN)
            doc = aws.result(key)
            (changed,) = [f for f in doc["frames"] if f["t"] == frame["t"]]
            assert changed["faces"][n - 1]["person"] is None and changed["faces"][n - 1]["corrected"] == [f"not {LIN}"]
            assert [f["t"] for f in doc["engine_frames"]] == [frame["t"]]
            assert seconds_of(doc, LIN) < seconds_of(engine, LIN)  # the appearances come from the corrected frames
            (found,) = [f for f in w.find(LIN) if f["source"] == key]
            assert found["seconds"] == seconds_of(doc, LIN)  # and so does the index

            with pytest.MonkeyPatch.context() as patch:  # the merge applies the record itself: no rewrite after it
                patch.setattr("shared.pipeline.corrections.reapply", no_rewrite)
                w.upload(key, data)  # recognized again: the segments find the face, the merge applies the record
            again = aws.result(key)
            assert again["job_id"] != engine["job_id"]
            (frame_again,) = [f for f in again["frames"] if f["t"] == frame["t"]]
            assert all(face["person"] != LIN for face in frame_again["faces"])
            assert again["appearances"] == doc["appearances"]
            assert key in sources_of(w, LIN)  # still there, in the other frames
