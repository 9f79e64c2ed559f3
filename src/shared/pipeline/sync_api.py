"""The synchronous API's use cases: an answer in one call (handlers/api.py, the local stack's API).

    POST /recognize   body: image bytes; query: person, top_k, threshold, annotate, store
    POST /compare     body: multipart/form-data with two images (fields `a` and `b`, else the first two)

`recognize` answers with the result document an S3 job writes (results.py), computed by the same
code (images.recognize_faces: the warm gallery, brought up to date at each call). Without
`store=true` it only reads: no result, no job record, no unknown face, no index entry, no event.
With `store=true` the photo is written under `queries/api/<date>/<id>.<ext>` and its recognize job
runs in the call through the S3 jobs' own runner (runner.run_job): the result, its annotated copy,
the job record, the event, the index entries and the unknown faces are written exactly as for an
upload, and the response is that job's result document (a failed one as its error's status). The
photo's own S3 event is then no job (images.kind_for): the call ran it.

Errors are the S3 jobs' codes (shared/errors.py) as HTTP 400, 413 or 415 with
`{"error": {"code", "message"}}`; the API's own (a bad parameter, path or method) are below.
"""
from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from shared import errors
from shared.aws import function_url, s3
from shared.clock import iso, timed
from shared.config import Config
from shared.engine.annotate import annotate
from shared.engine.decode import check_size, decode_image
from shared.engine.faces import Face, find_faces
from shared.engine.video import SNIFF_BYTES, looks_like_video
from shared.aws.events import ObjectEvent
from shared.pipeline import images, keys, results, runner
from shared.pipeline.delivery import logger

# Lambda's synchronous invocation payload is 6 MB (6,291,456 bytes), and a Function URL passes a
# binary body base64-encoded (4/3 larger) in a JSON event with the headers: an image (or the two
# of /compare, with their multipart framing) of at most this many bytes fits.
MAX_BODY_BYTES = 4_600_000
API_PREFIX = keys.API_PREFIX  # where store=true writes the photo

# The API's own error codes (the S3 jobs' are in shared/errors.py).
INVALID_PARAMETER = "INVALID_PARAMETER"
INVALID_BODY = function_url.INVALID_BODY
UNAVAILABLE = "UNAVAILABLE"  # 503, retried by clients: the gallery or S3 could not be read this time
NOT_FOUND = "NOT_FOUND"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"

STATUS = {  # HTTP status of each error code a request can get
    errors.EMPTY_FILE: 400, errors.FILE_TOO_LARGE: 413, errors.NOT_AN_IMAGE: 415, errors.UNSUPPORTED_FORMAT: 415,
    errors.TRUNCATED_IMAGE: 400, errors.TOO_MANY_PIXELS: 413, errors.IMAGE_TOO_SMALL: 400,
    errors.UNREADABLE_FILE: 400, errors.NO_FACE: 400, errors.MULTIPLE_FACES: 400, errors.FACE_TOO_SMALL: 400,
    errors.INVALID_PERSON: 400, errors.INVALID_KEY: 400, errors.NOT_A_VIDEO: 415, errors.EMPTY_VIDEO: 400,
    errors.VIDEO_TOO_LONG: 413, errors.VIDEO_TOO_LARGE: 413,
    INVALID_PARAMETER: 400, INVALID_BODY: 400, NOT_FOUND: 404, METHOD_NOT_ALLOWED: 405, UNAVAILABLE: 503,
}
TRUE, FALSE = ("true", "1"), ("false", "0")
RECOGNIZE_PARAMETERS = ("person", "top_k", "threshold", "annotate", "store")
COMPARE_PARAMETERS = ("threshold",)
FORMATS = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG", "png"), (b"GIF8", "gif"), (b"BM", "bmp"), (b"II*\x00", "tif"),
           (b"MM\x00*", "tif"))
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "bmp": "image/bmp", "tif": "image/tiff",
                 "webp": "image/webp"}


@dataclass(frozen=True)
class Options:
    """What a /recognize request asks for."""

    person: str | None = None
    top_k: int | None = None
    threshold: float | None = None
    annotate: bool = False
    store: bool = False


def status_of(code: str) -> int:
    """The HTTP status of an error code (400 for one not listed)."""
    return STATUS.get(code, 400)


def _flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "false").lower()
    if value not in TRUE + FALSE:
        raise errors.FaceError(INVALID_PARAMETER, f"{name}={params[name]!r}: expected true or false")
    return value in TRUE


def _number(params: dict[str, str], name: str, kind: type, low: float, high: float) -> Any:
    if name not in params:
        return None
    try:
        value = kind(params[name])
    except ValueError:
        value = None
    if value is None or not low <= value <= high or (kind is float and not np.isfinite(value)):
        raise errors.FaceError(INVALID_PARAMETER, f"{name}={params[name]!r}: expected a {kind.__name__} from {low} to {high}")
    return value


def _check_names(params: dict[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise errors.FaceError(INVALID_PARAMETER, f"unknown parameter {unknown[0]!r}; this path takes {', '.join(allowed)}")


def parse_options(params: dict[str, str]) -> Options:
    """The options of a /recognize query string; FaceError INVALID_PARAMETER / INVALID_PERSON."""
    _check_names(params, RECOGNIZE_PARAMETERS)
    person = params.get("person")
    if person is not None and "/" in person:
        raise errors.FaceError(errors.INVALID_PERSON, f"person {keys.shorten(person)!r} cannot contain '/'")
    if person is not None:
        keys.parse_model_key(f"{keys.person_prefix(person)}x")  # INVALID_PERSON, as an enrollment's key
    return Options(person=person, top_k=_number(params, "top_k", int, 1, 100),
                   threshold=_number(params, "threshold", float, 0.01, 1.99),
                   annotate=_flag(params, "annotate"), store=_flag(params, "store"))


def _engine(config: Config, top_k: int | None = None, threshold: float | None = None) -> Config:
    """`config` with the request's settings, and at most MAX_BODY_BYTES per image."""
    engine = config.engine.with_overrides(top_k=top_k, threshold=threshold,
                                          max_bytes=min(config.engine.max_bytes, MAX_BODY_BYTES))
    return replace(config, engine=engine)


def _decode(data: bytes, config: Config, timings: dict[str, float], what: str = "the file") -> np.ndarray:
    """An image's pixels; FaceError with the S3 jobs' codes (a video is refused: it goes through S3)."""
    check_size(len(data), config.engine)
    if looks_like_video("", data[:SNIFF_BYTES]):
        raise errors.FaceError(errors.UNSUPPORTED_FORMAT,
                               f"{what} is a video; upload videos under {keys.QUERIES_PREFIX} (S3), the API takes photos")
    with timed(timings, "decode"):
        return decode_image(data, config.engine)


def recognize(data: bytes, params: dict[str, str], config: Config) -> dict[str, Any]:
    """Every face of the photo `data` recognized (or verified against `person`): the result
    document, plus `annotated_jpeg` (base64) with annotate=true; FaceError on bad input."""
    options = parse_options(params)
    config = _engine(config, options.top_k, options.threshold)
    if options.store:
        return _store_and_run(data, options, config)
    timings: dict[str, float] = {}
    fields: dict[str, Any] = {}
    with timed(timings, "total"):
        image = _decode(data, config, timings)
        fields["image"] = {"width": int(image.shape[1]), "height": int(image.shape[0])}
        faces, matches, _ = images.recognize_faces(image, config, fields, timings, options.person)
        jpeg = None
        if options.annotate:
            with timed(timings, "annotate"):
                jpeg = annotate(image, [f.box for f in faces], [m.person for m in matches])
    document = results.document({
        **fields, "kind": images.RECOGNIZE, "status": "succeeded", "person": options.person,
        "model": results.model(config.engine.threshold), "timings_ms": results.timings(timings),
        "finished_at": iso(time.time()),
    })
    if jpeg is not None:
        document["annotated_jpeg"] = base64.b64encode(jpeg).decode("ascii")
    return document


def _store_and_run(data: bytes, options: Options, config: Config) -> dict[str, Any]:
    """store=true: the photo under queries/api/, then its recognize job, run here by the S3 jobs'
    runner (claim, result, annotated copy, job record, event, index, unknown faces); its document.
    A failed job (bad input) is FaceError with the job's error, after its failed result is kept."""
    if options.person is not None:
        raise errors.FaceError(INVALID_PARAMETER, "store=true keeps an ordinary recognition: verify (person=) without it")
    if looks_like_video("", data[:SNIFF_BYTES]):  # refused as without store: nothing is kept
        raise errors.FaceError(errors.UNSUPPORTED_FORMAT, "the file is a video; upload videos under queries/ (S3), the API takes photos")
    key, info = _store(data, config)
    event = ObjectEvent(config.pipeline.bucket, key, "ObjectCreated:Put", info.etag, info.version_id or None,
                        event_time=iso(time.time()))
    document = runner.run_job(event, images.RECOGNIZE, config=config)
    if document is None:  # a new key is always a new job
        raise RuntimeError(f"the job of {key} did not run")
    if document.get("error"):
        raise errors.FaceError(document["error"]["code"], document["error"]["message"])
    if options.annotate and document.get("annotated"):
        document["annotated_jpeg"] = base64.b64encode(s3.get_object(config.pipeline.bucket, document["annotated"]).data).decode("ascii")
    return document


def _store(data: bytes, config: Config) -> tuple[str, Any]:
    """Write the photo under queries/api/<date>/<id>.<ext>: its key and ObjectInfo."""
    if not config.pipeline.bucket:
        raise RuntimeError("store=true needs the bucket's name (LAMBDAFACE_BUCKET)")
    extension = next((ext for magic, ext in FORMATS if data.startswith(magic)), "")
    if not extension and data[8:12] == b"WEBP":
        extension = "webp"
    key = f"{API_PREFIX}{time.strftime('%Y/%m/%d', time.gmtime())}/{uuid.uuid4().hex}.{extension or 'img'}"
    info = s3.put_object(config.pipeline.bucket, key, data, CONTENT_TYPES.get(extension, "application/octet-stream"))
    return key, info


def compare(parts: list[tuple[str, bytes]], params: dict[str, str], config: Config) -> dict[str, Any]:
    """The faces of two images (named parts `a` and `b`, else the first two) and the distance of
    each pair of faces across them, with whether they match; no gallery involved."""
    _check_names(params, COMPARE_PARAMETERS)
    config = _engine(config, threshold=_number(params, "threshold", float, 0.01, 1.99))
    named = dict(parts)
    chosen = [("a", named["a"]), ("b", named["b"])] if {"a", "b"} <= set(named) else parts[:2]
    if len(chosen) != 2:
        raise errors.FaceError(INVALID_BODY, f"expected two images in the multipart body, got {len(parts)}")
    timings: dict[str, float] = {}
    found: list[tuple[np.ndarray, list[Face]]] = []
    with timed(timings, "total"):
        for name, data in chosen:
            image = _decode(data, config, timings, f"image {name!r}")
            with timed(timings, "detect_embed"):
                faces = find_faces(image, config.engine)
            if not faces:
                raise errors.FaceError(errors.NO_FACE, f"no face found in image {name!r}")
            found.append((image, faces))
        with timed(timings, "match"):
            a = np.asarray([f.embedding for f in found[0][1]], dtype=np.float32)
            b = np.asarray([f.embedding for f in found[1][1]], dtype=np.float32)
            distances = np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2), 0.0))
    threshold = config.engine.threshold
    pairs = [{"a": i, "b": j, "distance": round(float(distances[i, j]), 4), "match": bool(distances[i, j] <= threshold)}
             for i in range(len(a)) for j in range(len(b))]
    return {
        "kind": "compare",
        "images": [{"name": name, "image": {"width": int(img.shape[1]), "height": int(img.shape[0])},
                    "faces": [{"box": f.box.to_dict()} for f in faces]} for (name, _), (img, faces) in zip(chosen, found)],
        "pairs": pairs,
        "match": any(p["match"] for p in pairs),
        "model": results.model(threshold),
        "timings_ms": results.timings(timings),
    }


def error_body(code: str, message: str) -> dict[str, Any]:
    """The body of an error response."""
    return {"error": {"code": code, "message": message}}


def route(method: str, path: str, params: dict[str, str], body: bytes, parts: Any, config: Config) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of one request. `parts()` splits a multipart body (FaceError INVALID_BODY)."""
    handlers = {"/recognize": lambda: recognize(body, params, config),
                "/compare": lambda: compare(parts(), params, config)}
    path = path.rstrip("/") or "/"
    if path not in handlers:
        return 404, error_body(NOT_FOUND, f"no such path {path!r}; the API serves POST /recognize and POST /compare")
    if method.upper() != "POST":
        return 405, error_body(METHOD_NOT_ALLOWED, f"{method} {path}: use POST")
    if len(body) > MAX_BODY_BYTES:
        return 413, error_body(errors.FILE_TOO_LARGE, f"the request body has {len(body):,} bytes; the limit is {MAX_BODY_BYTES:,}")
    try:
        return 200, handlers[path]()
    except errors.FaceError as exc:
        return status_of(exc.code), error_body(exc.code, exc.message)


def handle_event(event: dict[str, Any], config: Config) -> dict[str, Any]:
    """A Function URL event (payload format 2.0) answered: the response Lambda returns. An
    unexpected failure (an AWS call) is a 503 the client retries, logged with its traceback."""
    request = function_url.parse(event)
    try:
        status, body = route(request.method, request.path, request.params, request.body,
                             lambda: function_url.multipart(request.body, request.content_type), config)
    except Exception as exc:
        logger.exception("request failed", extra={"path": request.path})
        status, body = 503, error_body(UNAVAILABLE, f"the request could not be answered now ({type(exc).__name__}); retry")
    logger.info("answered", extra={"path": request.path, "status": status, "bytes": len(request.body),
                                   "error": (body.get("error") or {}).get("code"), "timings_ms": body.get("timings_ms")})
    return function_url.response(status, body)
