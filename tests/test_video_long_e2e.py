"""A five-minute video through the local stack: two enrolled people, composed into the frames with
OpenCV at known places and times, recognised with the video CNN by segments that each read only their
own byte ranges of the video (counted by a proxy between the functions and moto's S3).

Kept affordable: 480x270 frames at 5 fps, 1 sampled frame every 2 s, segments of 30 s (10 of them).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote

import cv2
import numpy as np
import pytest
from PIL import Image
from support.faults import FaultProxy
from support.stack import StackClients, StackProcess, stack_fixture
from support.video import write_video
from support.waits import wait_until

from shared.pipeline import keys

FPS, SECONDS, SIZE = 5.0, 300, (480, 270)
OBAMA = ((20, 110), (240, 300))  # seconds on screen, left half
BIDEN = ((80, 200),)  # right half
SEGMENT_S, SAMPLE_FPS, BLOCK = 30, 0.5, 32768
KEY = "queries/five_minutes.mp4"


class CountingProxy(FaultProxy):
    """A FaultProxy that fails nothing and counts the bytes it returns for each request."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str, str | None, int]] = []  # method, path, Range, bytes sent

    def forward(self, request: Any) -> None:
        wire, counted = request.wfile, [0]

        class Counting:
            def write(self, data: bytes) -> int:
                counted[0] += len(data)
                return wire.write(data)

            def flush(self) -> None:
                wire.flush()

        request.wfile = Counting()
        try:
            super().forward(request)
        finally:
            request.wfile = wire
            self.requests.append((request.command, unquote(request.path.split("?")[0]), request.headers.get("Range"),
                                  counted[0]))

    def video_gets(self) -> list[tuple[str | None, int]]:
        return [(rng, n) for method, path, rng, n in self.requests if method == "GET" and path.endswith("/" + KEY)]


PROXY = CountingProxy()  # its port is known before the stack starts; it forwards once the stack is up

stack = stack_fixture(
    "long-video", "--handler-env", f"AWS_ENDPOINT_URL={PROXY.url}",
    "--handler-env", f"LAMBDAFACE_VIDEO_READ_BLOCK={BLOCK}", workers=1,
    env={"LAMBDAFACE_SEGMENT_S": str(SEGMENT_S), "LAMBDAFACE_SAMPLE_FPS": str(SAMPLE_FPS)},
)


def tile(photo: Path, size: tuple[int, int]) -> np.ndarray:
    """A photo scaled into `size` (width, height), centred on grey: RGB."""
    image = Image.open(photo).convert("RGB")
    image.thumbnail(size)
    canvas = Image.new("RGB", size, (40, 40, 40))
    canvas.paste(image, ((size[0] - image.width) // 2, (size[1] - image.height) // 2))
    return np.asarray(canvas)


def on(spans: tuple[tuple[int, int], ...], t: float) -> bool:
    return any(a <= t < b for a, b in spans)


def five_minutes(path: Path, faces_dir: Path) -> Path:
    """obama (left) and biden (right) when OBAMA and BIDEN say; a patch of noise changes every frame,
    so that the file grows with its length as a real video does."""
    width, height = SIZE
    left, right = (tile(faces_dir / "people" / p, (width // 2, height)) for p in ("obama/obama2.jpg", "biden/biden2.jpg"))
    rng = np.random.default_rng(5)

    def frames() -> Iterator[np.ndarray]:
        for i in range(int(SECONDS * FPS)):
            t = i / FPS
            frame = np.full((height, width, 3), 40, np.uint8)
            if on(OBAMA, t):
                frame[:, : width // 2] = left
            if on(BIDEN, t):
                frame[:, width // 2 :] = right
            frame[height - 40 :, width // 2 - 40 : width // 2 + 40] = rng.integers(0, 256, (40, 80, 3), np.uint8)
            yield cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)

    return write_video(path, frames(), FPS)


@pytest.fixture(scope="module")
def long_result(stack: StackProcess, faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    PROXY.forward_to(stack.endpoint)
    aws = StackClients(stack)
    for person in ("obama", "biden"):  # enrolled from other photos than the ones the video shows
        aws.put(f"models/{person}/{person}.jpg", (faces_dir / "people" / person / f"{person}.jpg").read_bytes())
    for person in ("obama", "biden"):
        wait_until(f"{person} enrolled", lambda p=person: aws.maybe_result(f"models/{p}/{p}.jpg"), timeout=120)
    data = five_minutes(tmp_path_factory.mktemp("long") / "five_minutes.mp4", faces_dir).read_bytes()
    aws.put(KEY, data)
    result = wait_until("the five-minute video's result", lambda: aws.maybe_result(KEY), timeout=600, every=1.0)
    partials = [json.loads(aws.get(k)) for k in aws.keys(keys.WORK_PREFIX)]
    job = next(j for j in aws.jobs() if j.get("key") == KEY)
    return {"result": result, "size": len(data), "partials": partials, "job": job}


def test_every_appearance_is_found_at_its_time(long_result: dict[str, Any]) -> None:
    result = long_result["result"]
    assert result["status"] == "succeeded", result
    assert result["duration_s"] == SECONDS and result["segments"] == SECONDS // SEGMENT_S
    assert result["frames_sampled"] == len(result["frames"]) == SECONDS * SAMPLE_FPS
    for frame in result["frames"]:
        t = frame["t"]
        seen = {(f["person"], "left" if f["box"]["left"] + f["box"]["width"] / 2 < SIZE[0] / 2 else "right")
                for f in frame["faces"]}
        expected = {("obama", "left")} if on(OBAMA, t) else set()
        expected |= {("biden", "right")} if on(BIDEN, t) else set()
        assert seen == expected, (t, frame["faces"])
    assert result["appearances"] == [
        {"person": "biden", "intervals": [[80.0, 200.0]], "seconds": 120.0, "first_s": 80.0, "last_s": 200.0},
        {"person": "obama", "intervals": [[20.0, 110.0], [240.0, 300.0]], "seconds": 150.0, "first_s": 20.0,
         "last_s": 300.0},
    ]


def test_each_segment_reads_only_its_part(long_result: dict[str, Any]) -> None:
    size, partials, job = long_result["size"], long_result["partials"], long_result["job"]
    everything = PROXY.video_gets()
    # One GET without a range: recognize's, which reads the first 64 bytes to tell a video (this
    # buffering proxy sends it the whole object). Every GET of the video function is ranged.
    assert [rng for rng, _ in everything].count(None) == 1
    gets = [(rng, n) for rng, n in everything if rng is not None]
    assert gets and all(rng.startswith("bytes=") for rng, _ in gets)
    on_the_wire = sum(n for _, n in gets)
    reported = job["plan_reads"]["bytes"] + sum(p["reads"]["bytes"] for p in partials)
    assert reported <= on_the_wire <= reported + 1000 * len(gets)  # bodies plus each response's headers
    per_segment = [p["reads"]["bytes"] for p in partials]
    assert len(per_segment) == SECONDS // SEGMENT_S
    # A segment is a tenth of the video: it reads its own part, plus index and block rounding.
    assert max(per_segment) < size / 4, (size, per_segment)
    assert on_the_wire < 2 * size, (size, on_the_wire)  # the whole video, about once, over every segment
    assert job["plan_reads"]["bytes"] < size / 10  # the plan reads the header and the index only
    assert all(max(p["reads"]["requests"], 1) * BLOCK >= p["reads"]["bytes"] for p in partials)
