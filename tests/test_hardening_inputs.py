"""Bad input through the whole local stack (`lambdaface local --workers 1`, one stack for the module).

Every kind of bad upload ends as a `failed` result document and a failed job record, each with
its error code and a message a person can act on, and the workers go on with the next job. GIF
and TIFF photos are decoded (they succeed), and so do keys with spaces and unicode. The module
also checks what results and the gallery hold (never raw embeddings, never images) and that
writing under results/ triggers nothing.
"""
from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from PIL import Image
from support.images import background, encode, photo
from support.stack import StackClients, StackProcess, job_lines, stack_fixture
from support.waits import wait_until

from lambdaface import watch
from shared.config import EngineConfig

MAX_BYTES = 2_000_000  # LAMBDAFACE_MAX_BYTES of this module's stack (the default is 15 MB)


# --- inputs, made from the sample photos -----------------------------------------------------


def png_bomb(side: int = 30_000) -> bytes:
    """A valid 1-bit PNG of side x side white pixels: 900 megapixels in about 100 KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\xff" * (side // 8)  # filter byte, then the row's bits
    packer = zlib.compressobj(9)
    rows = 1000
    block = row * rows
    data = b"".join(packer.compress(block) for _ in range(side // rows)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def noise_png(width: int, height: int) -> bytes:
    """A real, decodable image that does not compress: bigger than MAX_BYTES."""
    pixels = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG", compress_level=1)


def small_face(faces: Path) -> bytes:
    """john0's face shrunk to ~35 pixels on a 400x300 canvas: found (a canvas that small is
    upsampled for detection), but too small to enroll."""
    john = photo(faces, "seed/john0.jpg")
    shrunk = john.resize((round(john.width * 0.25), round(john.height * 0.25)), Image.LANCZOS)
    assert 400 < EngineConfig().upsample_below
    canvas = Image.new("RGB", (400, 300), (200, 200, 200))
    canvas.paste(shrunk, (100, 50))
    return encode(canvas, "JPEG", quality=95)


def no_face(faces: Path) -> bytes:
    """A real photo's background: the part of obama3.jpg left of his face."""
    return encode(background(faces), "JPEG", quality=90)


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


@dataclass(frozen=True)
class Bad:
    """An upload that must fail: its key, its bytes, the code, and words the message must say."""

    name: str
    key: str
    make: Callable[[Path], bytes]
    code: str
    says: str  # a regex the message must match (case-insensitive)


JOHN0 = lambda f: (f / "seed/john0.jpg").read_bytes()  # noqa: E731
HTML = b"<!DOCTYPE html>\n<html><head><title>My photo</title></head><body><img src='me.jpg'></body></html>\n"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200"><circle cx="100" cy="100" r="80"/></svg>'
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

BAD = [
    Bad("empty file", "queries/empty.jpg", lambda f: b"", "EMPTY_FILE", r"empty"),
    Bad("text file", "queries/notes.txt", lambda f: b"shopping list: eggs, milk\n" * 20, "NOT_AN_IMAGE", r"not an image \(it is text\)"),
    Bad("HTML saved as .jpg", "queries/page.jpg", lambda f: HTML, "NOT_AN_IMAGE", r"not an image \(it is an HTML page\)"),
    Bad("SVG (a drawing, not a photo)", "queries/drawing.png", lambda f: SVG, "NOT_AN_IMAGE", r"SVG drawing"),
    Bad("PDF", "queries/scan.pdf", lambda f: PDF, "NOT_AN_IMAGE", r"PDF document.*upload a JPEG"),
    Bad("truncated JPEG", "queries/cut.jpg", lambda f: half((f / "seed/john1.jpg").read_bytes()), "TRUNCATED_IMAGE", r"truncated"),
    Bad("truncated PNG (enrollment)", "models/alex/cut.png",
        lambda f: half((f / "people/alex_lacamoire/alex3.png").read_bytes()), "TRUNCATED_IMAGE", r"truncated"),
    Bad("decompression bomb", "queries/bomb.png", lambda f: png_bomb(), "TOO_MANY_PIXELS", r"30000x30000.*limit"),
    Bad("over the byte limit", "queries/huge.png", lambda f: noise_png(1000, 800), "FILE_TOO_LARGE",
        rf"bytes; the limit is {MAX_BYTES:,}"),
    Bad("1x1 image", "queries/pixel.png", lambda f: encode(Image.new("RGB", (1, 1), "white"), "PNG"), "IMAGE_TOO_SMALL",
        r"1x1.*at least"),
    Bad("icon (unsupported format)", "queries/favicon.ico",
        lambda f: encode(photo(f, "seed/john1.jpg").resize((128, 128)), "ICO", sizes=[(128, 128)]),
        "UNSUPPORTED_FORMAT", r"ICO images are not supported"),
    Bad("no face (enrollment)", "models/john/background.jpg", no_face, "NO_FACE", r"no face"),
    Bad("two faces (enrollment)", "models/pair/two_people.jpg", lambda f: (f / "multi/two_people.jpg").read_bytes(),
        "MULTIPLE_FACES", r"2 faces.*exactly one"),
    Bad("face too small (enrollment)", "models/tiny/john0.jpg", small_face, "FACE_TOO_SMALL", r"the face is \d+x\d+ pixels"),
    Bad("person with ..", "models/a..b/john0.jpg", JOHN0, "INVALID_PERSON", r"person 'a\.\.b'"),
    Bad("person name with a slash", "models/john/extra/john0.jpg", JOHN0, "INVALID_KEY", r"cannot contain '/'"),
    Bad("no person level", "models/john0.jpg", JOHN0, "INVALID_KEY", r"models/<person>/<file>"),
    Bad("person with spaces", "models/john smith/john0.jpg", JOHN0, "INVALID_PERSON", r"person 'john smith'"),
    Bad("person over 64 characters", f"models/{'j' * 65}/john0.jpg", JOHN0, "INVALID_PERSON", r"1-64 letters.*\(it has 65 characters\)"),
    Bad("person of 300 characters", f"models/{'j' * 300}/john0.jpg", JOHN0, "INVALID_PERSON", r"j…' must.*\(it has 300 characters\)"),
    Bad("a video that is not one", "queries/fake.mp4", lambda f: b"this is not a video\n" * 50, "NOT_A_VIDEO", r"not a video"),
    Bad("a zero-length video", "queries/empty.mp4", lambda f: b"", "EMPTY_VIDEO", r"empty"),
    Bad("a video header with nothing after it", "queries/clip.bin",
        lambda f: b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64, "NOT_A_VIDEO", r"video"),
]

# Good uploads with awkward formats and keys; the recognitions are of john, enrolled first.
GOOD = {
    "queries/john1.gif": lambda f: encode(photo(f, "seed/john1.jpg"), "GIF"),
    "queries/john1.tif": lambda f: encode(photo(f, "seed/john1.jpg"), "TIFF"),
    "queries/my photos/john 2.jpg": lambda f: (f / "seed/john2.jpg").read_bytes(),
    "queries/café/ジョン+二 (1).jpg": lambda f: (f / "seed/john2.jpg").read_bytes(),
    "models/john/Jöhn Émmons 1.jpg": lambda f: (f / "seed/john1.jpg").read_bytes(),
}


# --- the stack and what it wrote ---------------------------------------------------------------


# the stack passes LAMBDAFACE_* settings on to its workers
stack = stack_fixture("hardening-inputs", workers=1, env={"LAMBDAFACE_MAX_BYTES": str(MAX_BYTES)})


def upload_and_wait(stack: StackProcess, uploads: dict[str, bytes], timeout: float = 300) -> dict[str, dict[str, Any]]:
    """Upload each key's bytes (one upload per key in this module); their results."""
    aws = StackClients(stack)
    for key, data in uploads.items():
        aws.put(key, data)
    expectations = [watch.current_expectation(aws.s3, stack.bucket, key) for key in uploads]
    found = watch.wait_for(aws.s3, stack.bucket, expectations, timeout=timeout)
    missing = [key for key, doc in found.items() if doc is None]
    assert not missing, f"no result for {missing}; stack stderr:\n{stack.stderr()[-3000:]}"
    return {key: doc for key, doc in found.items() if doc is not None}


def job_records(stack: StackProcess) -> dict[str, dict[str, Any]]:
    """The jobs table's records by source key (one upload per key in this module)."""
    records: dict[str, dict[str, Any]] = {}
    for record in StackClients(stack).jobs():
        assert record["key"] not in records, f"two jobs for {record['key']}"
        records[record["key"]] = record
    return records


@pytest.fixture(scope="module")
def john(stack: StackProcess, faces_dir: Path) -> dict[str, Any]:
    """john0.jpg enrolled as "john" (the recognitions below must find him)."""
    doc = upload_and_wait(stack, {"models/john/john0.jpg": JOHN0(faces_dir)})["models/john/john0.jpg"]
    assert doc["status"] == "succeeded", doc
    return doc


@pytest.fixture(scope="module")
def bad_results(stack: StackProcess, john: dict[str, Any], faces_dir: Path) -> dict[str, dict[str, Any]]:
    """Every bad input uploaded at once; their results."""
    return upload_and_wait(stack, {case.key: case.make(faces_dir) for case in BAD})


@pytest.fixture(scope="module")
def good_results(stack: StackProcess, john: dict[str, Any], faces_dir: Path) -> dict[str, dict[str, Any]]:
    return upload_and_wait(stack, {key: make(faces_dir) for key, make in GOOD.items()})


# --- bad input fails clearly -------------------------------------------------------------------


def test_there_are_at_least_twenty_kinds_of_bad_input() -> None:
    assert len({case.name for case in BAD}) == len(BAD) >= 20
    assert len({case.key for case in BAD}) == len(BAD)


@pytest.mark.parametrize("case", BAD, ids=[case.name for case in BAD])
def test_bad_input_fails_with_its_code_and_a_clear_message(
    case: Bad, stack: StackProcess, bad_results: dict[str, dict[str, Any]]
) -> None:
    doc = bad_results[case.key]
    assert doc["source"] == case.key and doc["status"] == "failed", doc
    error = doc["error"]
    assert error["code"] == case.code, (case.name, error)
    message = error["message"]
    assert re.search(case.says, message, re.I), (case.name, message)
    # A sentence for people: no traceback, no exception class names, not a wall of text.
    assert 10 <= len(message) <= 300 and "Traceback" not in message and "Error:" not in message, message
    assert not re.search(r"\b[A-Z][a-z]+(Error|Exception)\b", message), message
    if case.key.startswith("models/"):
        assert doc["kind"] == "enroll"
    record = job_records(stack)[case.key]
    assert record["status"] == "failed" and record["error"] == error, record
    assert record["attempts"] == 1, "a permanent error is not retried"


def test_the_stack_reports_each_failure(stack: StackProcess, bad_results: dict[str, dict[str, Any]]) -> None:
    for case in BAD:
        if case.code not in ("NOT_A_VIDEO", "EMPTY_VIDEO"):  # those finish in the video function
            stack.wait_for_line(rf"^\w+Function {re.escape(case.key)}: failed {case.code} \(", timeout=30)


def test_the_byte_limit_is_checked_before_downloading(bad_results: dict[str, dict[str, Any]]) -> None:
    doc = bad_results["queries/huge.png"]
    assert "download" in doc["timings_ms"] and "decode" not in doc["timings_ms"]


def test_failed_enrollments_leave_the_gallery_alone(stack: StackProcess, bad_results: dict[str, dict[str, Any]]) -> None:
    keys = {(face["person"], face["image_key"]) for face in StackClients(stack).gallery_faces()}
    assert {image_key for _, image_key in keys} <= {"models/john/john0.jpg", *GOOD}


# --- awkward but valid input works --------------------------------------------------------------


def test_gif_and_tiff_are_decoded_and_recognized(good_results: dict[str, dict[str, Any]]) -> None:
    for key in ("queries/john1.gif", "queries/john1.tif"):
        doc = good_results[key]
        assert doc["status"] == "succeeded", doc
        assert doc["people"] == ["john"] and len(doc["faces"]) == 1, doc
        assert doc["faces"][0]["distance"] < 0.6
        assert doc["image"] == {"width": 500, "height": 705}


def test_keys_with_spaces_and_unicode_work(stack: StackProcess, good_results: dict[str, dict[str, Any]]) -> None:
    for key in ("queries/my photos/john 2.jpg", "queries/café/ジョン+二 (1).jpg"):
        doc = good_results[key]
        assert (doc["status"], doc["source"], doc["people"]) == ("succeeded", key, ["john"]), doc
        annotated = stack.client("s3").get_object(Bucket=stack.bucket, Key=doc["annotated"])["Body"].read()
        assert annotated[:3] == b"\xff\xd8\xff"
    enrolled = good_results["models/john/Jöhn Émmons 1.jpg"]
    assert (enrolled["status"], enrolled["person"]) == ("succeeded", "john"), enrolled
    records = job_records(stack)
    for key in GOOD:
        assert records[key]["status"] == "succeeded", records[key]


# --- security: no recursive trigger, no embeddings in results, no images in the gallery ----------


def test_writing_under_results_enqueues_nothing(
    stack: StackProcess, bad_results: dict[str, dict[str, Any]], good_results: dict[str, dict[str, Any]], faces_dir: Path
) -> None:
    aws = StackClients(stack)
    wait_until("the queues to empty", aws.idle, timeout=120)
    lines_before, jobs_before = len(stack.lines), {job["key"] for job in aws.jobs()}
    aws.put("results/x.json", b'{"status": "succeeded"}')
    aws.put("results/queries/y.jpg", JOHN0(faces_dir))
    aws.put("results/models/john/z.jpg", JOHN0(faces_dir))
    aws.delete("results/x.json")
    # Canaries, uploaded after, one per queue S3 notifies. Not a timing claim: S3 (moto) queues a
    # notification while it handles the request, so a message about results/ would be ahead of
    # them; each queue has one worker, which reports its jobs in order. Once both canaries' lines
    # are out, a job on results/ would have had its line too, and its record.
    canaries = {"queries/canary.jpg": (faces_dir / "seed/john2.jpg").read_bytes(),
                "models/canary/notes.txt": b"canary: not a photo\n"}
    upload_and_wait(stack, canaries)
    stack.wait_for_line(r"^RecognizeFunction queries/canary\.jpg: succeeded \(", timeout=60)
    stack.wait_for_line(r"^EnrollFunction models/canary/notes\.txt: failed NOT_AN_IMAGE \(", timeout=60)
    wait_until("the queues to empty", aws.idle, timeout=120)
    new = job_lines(stack.lines[lines_before:])
    assert sorted(m["key"] for m in new) == sorted(canaries), [m.string for m in new]  # the only new jobs
    assert {job["key"] for job in aws.jobs()} - jobs_before == set(canaries)
    assert aws.keys("results/results/") == []


def looks_like_an_embedding(value: Any) -> bool:
    """A list of 128 numbers, or a base64 blob (128 float32 are 512 bytes, 684 characters; even
    float16 would be 344)."""
    if isinstance(value, list) and len(value) >= 128 and all(isinstance(v, (int, float)) for v in value):
        return True
    return isinstance(value, str) and len(value) >= 300 and re.fullmatch(r"[A-Za-z0-9+/=\s]+", value) is not None


def walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def test_walk_finds_an_embedding_however_it_is_written() -> None:
    embedding = np.random.default_rng(1).normal(size=128).astype(np.float32)
    for leaked in (embedding.tolist(), base64.b64encode(embedding.tobytes()).decode(), [[0.1] * 128]):
        assert any(looks_like_an_embedding(v) for v in walk({"faces": [{"box": {}, "x": leaked}]}))
    assert not any(looks_like_an_embedding(v) for v in walk({"source": "queries/a.jpg", "candidates": [0.1, 0.2]}))


def test_results_never_hold_embeddings(
    stack: StackProcess, bad_results: dict[str, dict[str, Any]], good_results: dict[str, dict[str, Any]]
) -> None:
    s3 = stack.client("s3")
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix="results/")
        for o in page.get("Contents", [])
        if o["Key"].endswith(".json") and o["Key"] != "results/x.json"
    ]
    assert len(keys) >= len(BAD) + len(GOOD) + 1
    for key in keys:
        doc = json.loads(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
        leaks = [v for v in walk(doc) if looks_like_an_embedding(v)]
        assert not leaks, (key, leaks[:1])
        assert not re.search(r"embedding|descriptor|encoding", json.dumps(doc), re.I), key


def test_the_gallery_holds_embeddings_only(stack: StackProcess, good_results: dict[str, dict[str, Any]]) -> None:
    aws = StackClients(stack)
    items, faces = aws.gallery(), aws.gallery_faces()
    assert {item["image_key"] for item in faces} == {"models/john/john0.jpg", "models/john/Jöhn Émmons 1.jpg"}
    for item in faces:
        assert set(item) == {"person", "image_key", "embedding", "etag", "enrolled_at"}, item
        assert isinstance(item["embedding"], bytes) and len(item["embedding"]) == 128 * 4
        vector = np.frombuffer(item["embedding"], dtype="<f4")
        assert np.isfinite(vector).all() and 0.5 < np.linalg.norm(vector) < 2.0  # a descriptor, not pixels
    for item in items:  # faces and bookkeeping alike
        size = sum(len(k) + len(v if isinstance(v, bytes) else str(v).encode()) for k, v in item.items())
        assert size < 1024, "a gallery item is an embedding and a few names, never an image"
    (meta,) = [item for item in items if item["person"] == "#meta"]
    assert set(meta) <= {"person", "image_key", "version"}, meta


# --- and the workers are still fine --------------------------------------------------------------


def test_a_good_upload_after_all_that_succeeds(
    stack: StackProcess, bad_results: dict[str, dict[str, Any]], faces_dir: Path
) -> None:
    doc = upload_and_wait(stack, {"queries/last.jpg": (faces_dir / "seed/john2.jpg").read_bytes()})["queries/last.jpg"]
    assert doc["status"] == "succeeded" and doc["people"] == ["john"], doc
    assert "exited with" not in stack.stderr(), "no worker died on bad input"

