"""Videos through the handlers against moto's server (real HTTP): recognize hands a video off, the
video function plans it, fans segments out on its queue, and the last segment merges.

Short videos are generated from real photos (obama, then biden) and analysed with the HOG detector
to stay fast; the 9 s clip with the CNN detector runs once, on the local stack (test_e2e_video.py).
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from support.faults import FaultProxy
from support.lambda_events import OK, LambdaQueue, batch, context, record, s3_event_body
from support.moto import MotoResources, moto_resources
from support.video import claiming_duration, photo_video, write_video

from handlers import recognize, video
from lambdaface.report_model import malformed
from lambdaface.local.workers import LambdaContext
from shared.aws.events import parse_body
from shared.aws.gallery_table import GalleryFace, GalleryTable
from shared.pipeline.runner import job_id_for
from shared.pipeline import video_copy
from shared.pipeline.video_copy import drop_local_copy

FPS = 10.0
SCENES = (("people/obama/obama2.jpg", "obama"), ("people/biden/biden2.jpg", "biden"))
SECONDS_PER_SCENE = 2
ENV = {"LAMBDAFACE_VIDEO_DETECTOR": "hog", "LAMBDAFACE_SEGMENT_S": "1", "LAMBDAFACE_SAMPLE_FPS": "2"}


def scenes_video(path: Path, faces_dir: Path, scenes=SCENES, seconds: float = SECONDS_PER_SCENE) -> Path:
    """An mp4 at FPS showing each scene's photo (letterboxed into 640x480) for `seconds`."""
    return photo_video(path, [faces_dir / photo for photo, _ in scenes], seconds, FPS)


class VideoStack:
    """Resources in moto with the video queue and the gallery holding obama and biden; uploads go
    through the recognize handler, the video queue is delivered like Lambda's event source does."""

    def __init__(self, aws: MotoResources, queue: LambdaQueue) -> None:
        self.aws, self.queue = aws, queue

    def upload(self, key: str, data: bytes) -> dict[str, Any]:
        """Upload a query and run the recognize handler on its S3 event, as its queue would."""
        self.aws.put(key, data)
        event = self.aws.event(key)
        assert recognize.handler(event, context()) == OK
        return event

    def receive(self) -> list[dict[str, Any]]:
        """Everything waiting on the video queue (it stays invisible until its visibility timeout)."""
        return self.queue.receive_all()

    def deliver(self, message: dict[str, Any], receive_count: int | None = None, ctx: LambdaContext | None = None) -> bool:
        """Run the video handler on one message, as a batch of one (deleted if it succeeded); did it?"""
        return self.queue.deliver(video.handler, [message], receive_count, ctx) == OK

    def run_all(self) -> int:
        """Deliver until the queue is empty (a plan brings segments); how many messages ran."""
        count = 0
        while messages := self.receive():
            for message in messages:
                assert self.deliver(message), message["Body"]
                count += 1
        return count

    def result(self, key: str) -> dict[str, Any]:
        return self.aws.result(key)

    def job(self, key: str) -> dict[str, Any]:
        (job,) = [j for j in self.aws.jobs() if j["key"] == key]
        return job

    def segments_done(self, key: str) -> list[str]:
        """The ids of the counted segments of `key`'s job (its chunk items)."""
        job_id = self.job(key)["job_id"]
        return sorted(i for j in self.aws.jobs() if j.get("parent_job") == job_id for i in j["done"])


@pytest.fixture(scope="module")
def gallery_faces(photos: Any) -> list[GalleryFace]:
    """obama and biden, enrolled from other photos than the ones the videos show."""
    return [GalleryFace(person, f"models/{person}/{Path(photo).name}", photos.faces(photo)[0].embedding)
            for photo, person in (("people/obama/obama.jpg", "obama"), ("people/biden/biden.jpg", "biden"))]


@contextmanager
def video_stack(endpoint: str, gallery_faces: list[GalleryFace], **env: str) -> Iterator[VideoStack]:
    """Fresh resources with the video queue and the gallery, the handlers' environment set (ENV + `env`)."""
    with moto_resources(endpoint, **{**ENV, **env}) as aws:
        queue = LambdaQueue.create(aws.sqs, f"{aws.bucket}-video", VisibilityTimeout="600")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("VIDEO_QUEUE_URL", queue.url)
            table = GalleryTable(aws.gallery_table)
            for face in gallery_faces:
                table.put_face(face)
            drop_local_copy()  # each test starts like a fresh worker
            yield VideoStack(aws, queue)


@pytest.fixture
def vstack(moto_endpoint: str, gallery_faces: list[GalleryFace]) -> Iterator[VideoStack]:
    with video_stack(moto_endpoint, gallery_faces) as fresh:
        yield fresh


@pytest.fixture(scope="module")
def two_scenes(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return scenes_video(tmp_path_factory.mktemp("video") / "scenes.mp4", faces_dir).read_bytes()


def messages_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in messages]


# --- the whole way ----------------------------------------------------------------------------


def test_a_video_fans_out_and_merges(vstack: VideoStack, two_scenes: bytes) -> None:
    event = vstack.upload("queries/scenes.mp4", two_scenes)
    job = vstack.job("queries/scenes.mp4")
    assert job["status"] == "running" and job["media"] == "video" and job["kind"] == "recognize"
    assert not vstack.aws.has("results/queries/scenes.mp4.json"), "no result before the segments ran"

    (plan,) = vstack.receive()
    assert messages_of([plan])[0]["type"] == "plan"
    assert vstack.deliver(plan)
    segments = vstack.receive()
    bodies = messages_of(segments)
    assert [b["type"] for b in bodies] == ["segment"] * 4  # 4 s in segments of 1 s
    assert sorted((b["first"], b["end"]) for b in bodies) == [(0, 10), (10, 20), (20, 30), (30, 40)]
    for message in segments:
        assert vstack.deliver(message)
    assert vstack.receive() == []

    result = vstack.result("queries/scenes.mp4")
    (parsed,) = parse_body(event["Records"][0]["body"])
    assert result["status"] == "succeeded", result
    assert result["job_id"] == job_id_for(parsed, "recognize") == job["job_id"]
    assert (result["kind"], result["media"], result["source"]) == ("recognize", "video", "queries/scenes.mp4")
    assert result["source_etag"] == parsed.etag and result["event_time"] == parsed.event_time
    assert result["duration_s"] == 4.0 and result["fps"] == 10.0 and result["segments"] == 4
    assert [f["t"] for f in result["frames"]] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert result["frames_sampled"] == 8
    assert result["people"] == ["biden", "obama"]
    for frame in result["frames"]:
        (face,) = frame["faces"]
        assert face["person"] == ("obama" if frame["t"] < 2 else "biden") and face["distance"] < 0.6
        assert set(face["box"]) == {"left", "top", "width", "height"}
    assert result["appearances"] == [
        {"person": "biden", "intervals": [[2.0, 4.0]], "seconds": 2.0, "first_s": 2.0, "last_s": 4.0},
        {"person": "obama", "intervals": [[0.0, 2.0]], "seconds": 2.0, "first_s": 0.0, "last_s": 2.0},
    ]
    assert {"check", "probe", "segments", "slowest_segment", "merge", "total"} <= set(result["timings_ms"])
    assert "faces" not in result and "annotated" not in result
    job = vstack.job("queries/scenes.mp4")
    assert job["status"] == "succeeded" and job["result_key"] == "results/queries/scenes.mp4.json"
    assert job["chunks_done"] == ["00000"] and job["segments_total"] == 4 and job["segments_sent"] == 4
    assert vstack.segments_done("queries/scenes.mp4") == ["00000", "00001", "00002", "00003"]
    assert job["duration_ms"] > 0 and "final_lease" not in job


def test_a_video_is_recognised_by_its_content_not_its_name(vstack: VideoStack, faces_dir: Path, tmp_path: Path) -> None:
    clip = scenes_video(tmp_path / "x.mp4", faces_dir, scenes=SCENES[:1], seconds=1).read_bytes()
    vstack.upload("queries/holiday", clip)  # no extension; mp4 content
    assert vstack.run_all() == 2  # the plan, one segment
    result = vstack.result("queries/holiday")
    assert (result["status"], result["media"], result["people"]) == ("succeeded", "video", ["obama"])


def test_an_image_is_still_an_image(vstack: VideoStack, faces_dir: Path) -> None:
    vstack.upload("queries/obama.jpg", (faces_dir / "people/obama/obama2.jpg").read_bytes())
    assert vstack.receive() == []
    result = vstack.result("queries/obama.jpg")
    assert result["status"] == "succeeded" and result["people"] == ["obama"] and "media" not in result


# --- redelivery ---------------------------------------------------------------------------------


def test_redelivered_messages_do_not_double_count(vstack: VideoStack, two_scenes: bytes) -> None:
    event = vstack.upload("queries/again.mp4", two_scenes)
    # The S3 event, delivered again before the plan ran: the plan goes again (the first may be lost).
    assert recognize.handler(event, context()) == {"batchItemFailures": []}
    plans = vstack.receive()
    assert [json.loads(m["Body"])["type"] for m in plans] == ["plan", "plan"]
    assert vstack.job("queries/again.mp4")["attempts"] == 2
    plan = plans[0]
    for message in plans:
        assert vstack.deliver(message)  # the second finds the plan recorded and its segments sent
    assert vstack.deliver(plan, receive_count=2)  # nothing is sent again
    assert recognize.handler(event, context()) == {"batchItemFailures": []}  # planned: no plan sent
    segments = sorted(vstack.receive(), key=lambda m: json.loads(m["Body"])["index"])
    assert len(segments) == 4
    first, *rest = segments
    assert vstack.deliver(first)
    assert vstack.deliver(first, receive_count=2)  # counted once
    assert vstack.segments_done("queries/again.mp4") == ["00000"]
    for message in rest:
        assert vstack.deliver(message)
    result = vstack.result("queries/again.mp4")
    assert result["status"] == "succeeded" and result["frames_sampled"] == 8
    assert len({f["t"] for f in result["frames"]}) == 8
    written = vstack.aws.s3.head_object(Bucket=vstack.aws.bucket, Key="results/queries/again.mp4.json")["ETag"]
    for message in (first, rest[-1], plan):  # after the merge: acknowledged, nothing rewritten
        assert vstack.deliver(message, receive_count=3)
    assert vstack.aws.s3.head_object(Bucket=vstack.aws.bucket, Key="results/queries/again.mp4.json")["ETag"] == written
    job = vstack.job("queries/again.mp4")
    assert job["status"] == "succeeded" and len(vstack.segments_done("queries/again.mp4")) == 4
    assert vstack.receive() == []


def test_a_lost_plan_is_sent_again_with_the_recognize_retry(vstack: VideoStack, two_scenes: bytes,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = FaultProxy(vstack.aws.endpoint)  # between the handlers and SQS only
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        proxy.fail(1, lambda method, path: method == "POST")
        vstack.aws.put("queries/lost.mp4", two_scenes)
        event = vstack.aws.event("queries/lost.mp4")
        assert recognize.handler(event, context()) != {"batchItemFailures": []}  # SendMessage failed: retry
        assert len(proxy.injected) == 1
        job = vstack.job("queries/lost.mp4")
        # The hand-off is recorded before the plan is sent, so a plan never finds a job without it.
        assert (job["status"], job["media"], job["lease_until"]) == ("running", "video", 0)
        assert vstack.receive() == []
        event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "2"
        assert recognize.handler(event, context()) == {"batchItemFailures": []}
    finally:
        proxy.close()
    assert vstack.run_all() == 5  # the plan, 4 segments
    assert vstack.result("queries/lost.mp4")["people"] == ["biden", "obama"]


# --- failures -----------------------------------------------------------------------------------


def test_a_segment_that_fails_for_good_fails_the_job(vstack: VideoStack, two_scenes: bytes, faces_dir: Path) -> None:
    vstack.upload("queries/replaced.mp4", two_scenes)
    (plan,) = vstack.receive()
    assert vstack.deliver(plan)
    segments = sorted(vstack.receive(), key=lambda m: json.loads(m["Body"])["index"])
    assert vstack.deliver(segments[0])
    # The video is replaced before segment 2 runs on a fresh worker: it cannot decode what was planned.
    vstack.aws.put("queries/replaced.mp4", (faces_dir / "seed/john0.jpg").read_bytes())
    drop_local_copy()
    assert vstack.deliver(segments[1])  # a permanent failure is acknowledged
    result = vstack.result("queries/replaced.mp4")
    assert result["status"] == "failed" and result["media"] == "video"
    assert result["error"]["code"] == "SEGMENT_FAILED"
    assert result["error"]["message"].startswith("segment 2 of 4 (1.00-2.00 s): OBJECT_NOT_FOUND: ")
    assert "was replaced" in result["error"]["message"]
    assert result["duration_s"] == 4.0 and "frames" not in result
    written = vstack.aws.s3.head_object(Bucket=vstack.aws.bucket, Key="results/queries/replaced.mp4.json")["ETag"]
    for message in segments[2:]:  # the rest are acknowledged without work; the failure is written once
        assert vstack.deliver(message)
    assert vstack.aws.s3.head_object(Bucket=vstack.aws.bucket, Key="results/queries/replaced.mp4.json")["ETag"] == written
    job = vstack.job("queries/replaced.mp4")
    assert job["status"] == "failed" and job["error"] == result["error"]
    assert vstack.segments_done("queries/replaced.mp4") == ["00000"]


def test_a_segment_that_keeps_failing_fails_the_job_on_its_last_delivery(
    vstack: VideoStack, two_scenes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    vstack.upload("queries/flaky.mp4", two_scenes)
    (plan,) = vstack.receive()
    assert vstack.deliver(plan)
    segments = sorted(vstack.receive(), key=lambda m: json.loads(m["Body"])["index"])
    proxy = FaultProxy(vstack.aws.endpoint)  # S3 answers 503 to every GET of the video
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        drop_local_copy()
        proxy.fail(100, lambda method, path: method == "GET" and "flaky.mp4" in path)
        assert not vstack.deliver(segments[3], receive_count=1)  # reported: it will come back
        assert vstack.job("queries/flaky.mp4")["status"] == "running"
        assert not vstack.deliver(segments[3], receive_count=5)  # the last delivery: to the DLQ, job failed
    finally:
        proxy.close()
    assert proxy.injected
    result = vstack.result("queries/flaky.mp4")
    assert result["status"] == "failed" and result["error"]["code"] == "SEGMENT_FAILED"
    message = result["error"]["message"]
    assert message.startswith("segment 4 of 4 (3.00-4.00 s): RETRIES_EXHAUSTED: 5 attempts failed; last: SlowDown")
    assert vstack.job("queries/flaky.mp4")["status"] == "failed"


def test_a_segment_out_of_time_is_retried_then_fails_clearly(vstack: VideoStack, two_scenes: bytes) -> None:
    vstack.upload("queries/slow.mp4", two_scenes)
    (plan,) = vstack.receive()
    assert vstack.deliver(plan)
    segment = vstack.receive()[0]
    short = context(timeout_s=2)  # less than the time kept for storing and merging
    assert not vstack.deliver(segment, receive_count=1, ctx=short)
    assert not vstack.deliver(segment, receive_count=5, ctx=short)
    error = vstack.result("queries/slow.mp4")["error"]
    assert error["code"] == "SEGMENT_FAILED" and "OutOfTime" in error["message"]
    assert "timeout is too short for this segment" in error["message"]


def failed(vstack: VideoStack, key: str, data: bytes) -> dict[str, Any]:
    vstack.upload(key, data)
    assert vstack.run_all() == 1  # the plan only
    result = vstack.result(key)
    assert result["status"] == "failed" and result["media"] == "video" and result["kind"] == "recognize"
    assert vstack.job(key)["status"] == "failed" and vstack.job(key)["error"] == result["error"]
    return result


def test_a_text_file_named_mp4_is_not_a_video(vstack: VideoStack) -> None:
    result = failed(vstack, "queries/notes.mp4", b"this is not a video\n" * 100)
    assert result["error"]["code"] == "NOT_A_VIDEO"


def test_an_empty_mp4(vstack: VideoStack) -> None:
    result = failed(vstack, "queries/empty.mp4", b"")
    assert result["error"] == {"code": "EMPTY_VIDEO", "message": "the video file is empty (0 bytes)"}


def test_a_video_over_the_duration_limit(moto_endpoint: str, gallery_faces: list[GalleryFace], two_scenes: bytes) -> None:
    with video_stack(moto_endpoint, gallery_faces, LAMBDAFACE_VIDEO_MAX_DURATION_S="3") as vstack:
        result = failed(vstack, "queries/long.mp4", two_scenes)
    assert result["error"]["code"] == "VIDEO_TOO_LONG"
    assert result["error"]["message"] == "the video lasts 4.0 s, more than the 3 s allowed"
    assert result["duration_s"] == 4.0


def test_a_video_over_the_size_limit(moto_endpoint: str, gallery_faces: list[GalleryFace], two_scenes: bytes) -> None:
    with video_stack(moto_endpoint, gallery_faces, LAMBDAFACE_VIDEO_MAX_BYTES="1000") as vstack:
        result = failed(vstack, "queries/big.mp4", two_scenes)
    assert result["error"] == {
        "code": "VIDEO_TOO_LARGE", "message": f"the video is {len(two_scenes)} bytes, more than the 1000 allowed",
    }


def test_messages_that_are_not_video_messages_are_dropped(vstack: VideoStack) -> None:
    bodies = ("not json", json.dumps({"type": "other", "job_id": "x", "bucket": "b", "key": "k"}),
              json.dumps({"type": "segment", "job_id": "x"}), s3_event_body("b", "queries/x.mp4"))
    for body in bodies:
        assert video.handler(batch(record(body, arn=vstack.queue.arn)), context()) == OK


# --- hostile videos (issue 20) ---------------------------------------------------------------------


def test_frames_over_the_pixel_limit(moto_endpoint: str, gallery_faces: list[GalleryFace], two_scenes: bytes) -> None:
    """Video frames have a pixel limit as photos do (LAMBDAFACE_VIDEO_MAX_PIXELS), checked by the plan."""
    with video_stack(moto_endpoint, gallery_faces, LAMBDAFACE_VIDEO_MAX_PIXELS="300000") as vstack:
        result = failed(vstack, "queries/wide.mp4", two_scenes)
    assert result["error"] == {
        "code": "TOO_MANY_PIXELS", "message": "the video's frames are 640x480 (307,200 pixels); the limit is 300,000",
    }


def test_a_forged_duration_plans_only_what_the_file_holds(vstack: VideoStack, faces_dir: Path, tmp_path: Path) -> None:
    """A 2 s file whose header claims 50 minutes: 2 segment messages, not 3,000."""
    real = photo_video(tmp_path / "obama.mkv", [faces_dir / SCENES[0][0]], SECONDS_PER_SCENE, FPS)
    vstack.upload("queries/forged.mkv", claiming_duration(real.read_bytes(), 3000.0))
    (plan,) = vstack.receive()
    assert vstack.deliver(plan)
    segments = vstack.receive()
    assert sorted((b["first"], b["end"]) for b in messages_of(segments)) == [(0, 10), (10, 20)]
    job = vstack.job("queries/forged.mkv")
    assert job["segments_total"] == 2 and job["header_frames"] == 30_000 and job["video"]["frames"] == 20
    for message in segments:
        assert vstack.deliver(message)
    result = vstack.result("queries/forged.mkv")
    assert result["status"] == "succeeded" and result["duration_s"] == 2.0 and result["segments"] == 2
    assert result["header_frames"] == 30_000  # what the header claimed
    assert result["people"] == ["obama"]
    assert malformed(result) is None  # a video result is a document the report shows


def test_frames_between_samples_are_decoded_inside_the_deadline(
    moto_endpoint: str, gallery_faces: list[GalleryFace], tmp_path: Path,
) -> None:
    """One segment samples frames 0, 50, 100 and 150 of 200 (noise, so every frame weighs): out of
    time, it stops before decoding any (the old loop decoded 151 frames, most of the file, first),
    and its message comes back; the next delivery, with time, finishes the job."""
    rng = np.random.default_rng(20)
    frames = (rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(200))
    data = write_video(tmp_path / "noise.mp4", frames, FPS).read_bytes()
    with video_stack(moto_endpoint, gallery_faces, LAMBDAFACE_SEGMENT_S="20", LAMBDAFACE_SAMPLE_FPS="0.2",
                     LAMBDAFACE_VIDEO_READ_BLOCK="16384") as vstack:
        vstack.upload("queries/noise.mp4", data)
        (plan,) = vstack.receive()
        assert vstack.deliver(plan)
        (segment,) = vstack.receive()
        assert not vstack.deliver(segment, receive_count=1, ctx=context(timeout_s=2))
        read = video_copy._kept["video"].bytes_read
        assert read < len(data) / 10, f"{read} of {len(data)} bytes read before the deadline stopped the segment"
        assert vstack.aws.jobs() and vstack.job("queries/noise.mp4")["status"] == "running"
        assert vstack.deliver(segment, receive_count=2)
        result = vstack.result("queries/noise.mp4")
    assert result["status"] == "succeeded" and result["frames_sampled"] == 4
    assert [f["t"] for f in result["frames"]] == [0.0, 5.0, 10.0, 15.0]


def test_a_video_job_writes_no_file_and_keeps_a_few_blocks_in_memory(
    moto_endpoint: str, gallery_faces: list[GalleryFace], two_scenes: bytes, tmp_path: Path,
) -> None:
    """What docs/SECURITY.md says of a video being analysed: nothing goes to /tmp (or any file: the
    decoder reads the object through ranged GETs), and the worker keeps at most KEPT_BLOCKS blocks
    of one video in memory after the job. Every file opened for writing by the handler's threads is
    recorded (Python's audit hook sees open(), os.open and tempfile); the temporary folder is a
    fresh one that must stay empty."""
    import sys
    import tempfile
    import threading

    from shared.aws.s3_ranges import KEPT_BLOCKS

    written: list[str] = []
    recording = threading.Event()

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or not recording.is_set():
            return
        thread = threading.current_thread()
        if thread is not threading.main_thread() and not thread.name.startswith("ThreadPoolExecutor"):
            return  # moto's server threads store the objects
        path, mode, flags = (tuple(args) + (None, None))[:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writes:
            written.append(str(path))

    sys.addaudithook(hook)  # stays for the process; records only while `recording` is set
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with pytest.MonkeyPatch.context() as mp, video_stack(
            moto_endpoint, gallery_faces, LAMBDAFACE_VIDEO_READ_BLOCK="65536") as vstack:
        mp.setenv("TMPDIR", str(tmp))
        mp.setattr(tempfile, "tempdir", str(tmp))
        recording.set()
        try:
            vstack.upload("queries/scenes.mp4", two_scenes)
            assert vstack.run_all() == 5  # the plan and 4 segments
        finally:
            recording.clear()
        assert vstack.result("queries/scenes.mp4")["status"] == "succeeded"
    assert written == []
    assert list(tmp.iterdir()) == []
    kept = video_copy._kept["video"]
    assert 0 < len(kept._blocks) <= KEPT_BLOCKS and sum(map(len, kept._blocks.values())) <= KEPT_BLOCKS * 65536


def test_a_request_aws_refuses_for_good_fails_the_video_job_without_a_retry(
    vstack: VideoStack, two_scenes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    vstack.upload("queries/refused.mp4", two_scenes)
    monkeypatch.setenv("GALLERY_TABLE", "no-such-table")  # every segment's gallery read: ResourceNotFound
    vstack.run_all()  # each message acknowledged on its first delivery (no retry, no dead letter)
    job = vstack.job("queries/refused.mp4")
    assert job["status"] == "failed" and job["error"]["code"] == "SEGMENT_FAILED", job
    assert "REQUEST_REFUSED: ResourceNotFoundException: " in job["error"]["message"]
    assert vstack.result("queries/refused.mp4")["error"] == job["error"]
