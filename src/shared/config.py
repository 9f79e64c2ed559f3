"""The one place for configuration: every setting, its environment variable and its default.

`current_config()` is what the pipeline uses: read once per process and kept while the
environment it was read from is unchanged (a Lambda environment never changes; a test that sets
other table names between jobs gets them). Environment variable names appear only here.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping


def _env(env: Mapping[str, str], name: str, default: Any) -> Any:
    """Read `name` from `env`, converted to the type of `default`."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{name}={raw!r} is not true or false")
        return raw.lower() in ("true", "1")
    try:
        return type(default)(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a valid {type(default).__name__}") from exc


@dataclass(frozen=True)
class EngineConfig:
    """Settings of the face engine (decode, detect, embed, match)."""

    detector: str = "hog"  # LAMBDAFACE_DETECTOR: "hog" (fast, CPU) or "cnn" (MMOD, more robust, slower)
    detect_max_side: int = 960  # LAMBDAFACE_DETECT_MAX_SIDE: detection runs on a copy no larger than this
    upsample_below: int = 480  # LAMBDAFACE_UPSAMPLE_BELOW: upsample once when the detection copy is smaller
    threshold: float = 0.6  # LAMBDAFACE_THRESHOLD: above this distance a face is "unknown"
    top_k: int = 3  # LAMBDAFACE_TOP_K: candidates listed per face
    enroll_jitters: int = 5  # LAMBDAFACE_ENROLL_JITTERS
    query_jitters: int = 1  # LAMBDAFACE_QUERY_JITTERS
    max_bytes: int = 15_000_000  # LAMBDAFACE_MAX_BYTES
    max_pixels: int = 40_000_000  # LAMBDAFACE_MAX_PIXELS: checked from the header, before decoding
    min_side: int = 80  # LAMBDAFACE_MIN_SIDE: smaller images are rejected
    min_face: int = 40  # LAMBDAFACE_MIN_FACE: smallest face side (pixels) accepted for enrollment
    backend: str = "onnx"  # LAMBDAFACE_BACKEND: "onnx" (the networks on ONNX Runtime) or "dlib" (dlib's own, the reference)
    ort_threads: int = 1  # LAMBDAFACE_ORT_THREADS: ONNX Runtime intra-op threads (Lambda and each local worker: one core)
    one_face_per_person: bool = True  # LAMBDAFACE_ONE_FACE_PER_PERSON: a person names at most one face per photo or frame (off: mirrors, posters)
    review_band: float = 0.04  # LAMBDAFACE_REVIEW_BAND: a face whose distance is within this of `threshold` is marked "review" (0: none)

    def __post_init__(self) -> None:
        if self.detector not in ("hog", "cnn"):
            raise ValueError(f"detector must be 'hog' or 'cnn', not {self.detector!r}")
        if self.backend not in ("onnx", "dlib"):
            raise ValueError(f"backend must be 'onnx' or 'dlib', not {self.backend!r}")
        if self.ort_threads < 1:
            raise ValueError("ort_threads must be at least 1")
        if not 0 < self.threshold < 2:
            raise ValueError("threshold must be between 0 and 2")
        if not 0 <= self.review_band < 1:
            raise ValueError("review_band must be at least 0 and below 1")

    def with_overrides(self, **changes: Any) -> "EngineConfig":
        """A copy with the given settings changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of the event pipeline (tables, retries, retention)."""

    jobs_table: str = "lambdaface-jobs"  # JOBS_TABLE
    gallery_table: str = "lambdaface-gallery"  # GALLERY_TABLE
    max_receive_count: int = 5  # MAX_RECEIVE_COUNT: deliveries before a message goes to the DLQ (AWS advises >= 5 for Lambda)
    job_ttl_days: int = 30  # JOB_TTL_DAYS: job records expire after this many days
    video_queue_url: str = ""  # VIDEO_QUEUE_URL: where recognize sends videos and the video function its segments
    annotate: bool = True  # LAMBDAFACE_ANNOTATE: write results/<key>.jpg, the photo with boxes and names (one S3 PUT)
    gallery_shards: int = 4  # LAMBDAFACE_GALLERY_SHARDS: copies of the gallery's change counter recognitions read (one at random)
    gallery_compact_every: int = 1000  # LAMBDAFACE_GALLERY_COMPACT_EVERY: changes between gallery snapshots
    enroll_queue_url: str = ""  # ENROLL_QUEUE_URL: where a forget sends its delayed purge ("": purge at once), and reconciliation the removal events of images whose own were lost
    gallery_purge_delay_s: int = 60  # LAMBDAFACE_GALLERY_PURGE_DELAY_S: forgets gathered into one snapshot rewrite (<= 900)
    unknowns_table: str = "lambdaface-unknowns"  # UNKNOWNS_TABLE: remembered unknown faces and their clusters
    remember_unknowns: bool = False  # LAMBDAFACE_REMEMBER_UNKNOWNS: remember every unknown face (opt-in); off: forget them all
    unknown_retention_days: int = 30  # LAMBDAFACE_UNKNOWN_RETENTION_DAYS: a remembered face is forgotten after this many days
    unknown_threshold: float = 0.55  # LAMBDAFACE_UNKNOWN_THRESHOLD: an unknown face joins the cluster of a face this close
    bucket: str = ""  # LAMBDAFACE_BUCKET: the stack's bucket (the scheduled sweep has no S3 event to name it)
    reconcile_grace_s: float = 900.0  # LAMBDAFACE_RECONCILE_GRACE_S: an image younger than this may still be enrolling (not reported)
    people_index_table: str = ""  # PEOPLE_INDEX_TABLE: where each person (or cluster) appears ("": no index is kept)
    corrections_table: str = ""  # CORRECTIONS_TABLE: the correction records replayed on every recognition ("": none are kept)
    retention_days: int = 30  # LAMBDAFACE_RETENTION_DAYS: results (and the index entries naming them) expire after this many days

    def __post_init__(self) -> None:
        if self.unknown_retention_days < 1:
            raise ValueError("unknown_retention_days must be at least 1")
        if not 0 < self.unknown_threshold < 2:
            raise ValueError("unknown_threshold must be between 0 and 2")
        if not 0 <= self.gallery_purge_delay_s <= 900:
            raise ValueError("gallery_purge_delay_s must be between 0 and 900 (SQS DelaySeconds)")


@dataclass(frozen=True)
class VideoConfig:
    """Settings of video recognition (segments fan out across workers)."""

    segment_s: float = 3.0  # LAMBDAFACE_SEGMENT_S: seconds of video per segment message
    sample_fps: float = 3.0  # LAMBDAFACE_SAMPLE_FPS: frames analysed per second of video
    detector: str = "cnn"  # LAMBDAFACE_VIDEO_DETECTOR: the CNN also finds faces in profile, common in video
    detect_max_side: int = 640  # LAMBDAFACE_VIDEO_MAX_SIDE: frames are detected at this size at most
    max_bytes: int = 10_000_000_000  # LAMBDAFACE_VIDEO_MAX_BYTES: 10 GB (nothing is downloaded whole)
    max_duration_s: float = 3600.0  # LAMBDAFACE_VIDEO_MAX_DURATION_S: 1 hour (the template allows up to 6)
    read_block: int = 1 << 20  # LAMBDAFACE_VIDEO_READ_BLOCK: bytes per ranged S3 GET of a video
    max_pixels: int = 33_177_600  # LAMBDAFACE_VIDEO_MAX_PIXELS: per frame (8K UHD), checked from the header and on each frame

    def engine(self, base: EngineConfig) -> EngineConfig:
        """The engine settings used on video frames."""
        return base.with_overrides(detector=self.detector, detect_max_side=self.detect_max_side, upsample_below=0,
                                   max_pixels=self.max_pixels)


@dataclass(frozen=True)
class Config:
    """Everything the pipeline and the engine are told."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    video: VideoConfig = field(default_factory=VideoConfig)


_ENGINE_ENV = {
    "detector": "LAMBDAFACE_DETECTOR",
    "detect_max_side": "LAMBDAFACE_DETECT_MAX_SIDE",
    "upsample_below": "LAMBDAFACE_UPSAMPLE_BELOW",
    "threshold": "LAMBDAFACE_THRESHOLD",
    "top_k": "LAMBDAFACE_TOP_K",
    "enroll_jitters": "LAMBDAFACE_ENROLL_JITTERS",
    "query_jitters": "LAMBDAFACE_QUERY_JITTERS",
    "max_bytes": "LAMBDAFACE_MAX_BYTES",
    "max_pixels": "LAMBDAFACE_MAX_PIXELS",
    "min_side": "LAMBDAFACE_MIN_SIDE",
    "min_face": "LAMBDAFACE_MIN_FACE",
    "backend": "LAMBDAFACE_BACKEND",
    "ort_threads": "LAMBDAFACE_ORT_THREADS",
    "one_face_per_person": "LAMBDAFACE_ONE_FACE_PER_PERSON",
    "review_band": "LAMBDAFACE_REVIEW_BAND",
}
_PIPELINE_ENV = {
    "jobs_table": "JOBS_TABLE",
    "gallery_table": "GALLERY_TABLE",
    "max_receive_count": "MAX_RECEIVE_COUNT",
    "job_ttl_days": "JOB_TTL_DAYS",
    "video_queue_url": "VIDEO_QUEUE_URL",
    "annotate": "LAMBDAFACE_ANNOTATE",
    "gallery_shards": "LAMBDAFACE_GALLERY_SHARDS",
    "gallery_compact_every": "LAMBDAFACE_GALLERY_COMPACT_EVERY",
    "enroll_queue_url": "ENROLL_QUEUE_URL",
    "gallery_purge_delay_s": "LAMBDAFACE_GALLERY_PURGE_DELAY_S",
    "unknowns_table": "UNKNOWNS_TABLE",
    "remember_unknowns": "LAMBDAFACE_REMEMBER_UNKNOWNS",
    "unknown_retention_days": "LAMBDAFACE_UNKNOWN_RETENTION_DAYS",
    "unknown_threshold": "LAMBDAFACE_UNKNOWN_THRESHOLD",
    "bucket": "LAMBDAFACE_BUCKET",
    "reconcile_grace_s": "LAMBDAFACE_RECONCILE_GRACE_S",
    "people_index_table": "PEOPLE_INDEX_TABLE",
    "retention_days": "LAMBDAFACE_RETENTION_DAYS",
    "corrections_table": "CORRECTIONS_TABLE",
}

_VIDEO_ENV = {
    "segment_s": "LAMBDAFACE_SEGMENT_S",
    "sample_fps": "LAMBDAFACE_SAMPLE_FPS",
    "detector": "LAMBDAFACE_VIDEO_DETECTOR",
    "detect_max_side": "LAMBDAFACE_VIDEO_MAX_SIDE",
    "max_bytes": "LAMBDAFACE_VIDEO_MAX_BYTES",
    "max_duration_s": "LAMBDAFACE_VIDEO_MAX_DURATION_S",
    "read_block": "LAMBDAFACE_VIDEO_READ_BLOCK",
    "max_pixels": "LAMBDAFACE_VIDEO_MAX_PIXELS",
}


def _from_env(cls: type, names: dict[str, str], env: Mapping[str, str]) -> Any:
    defaults = cls()
    return cls(**{f.name: _env(env, names[f.name], getattr(defaults, f.name)) for f in fields(cls)})


# The enroll and recognize queues' visibility timeout (template.yaml's literal; tests/test_template.py
# checks they agree) and the longest function timeout the template admits: a failed attempt's
# message comes back after QUEUE_VISIBILITY_S, so a client that waits for a retry waits longer.
QUEUE_VISIBILITY_S = 600
FUNCTION_TIMEOUT_MAX_S = 100

MODELS_DIR_ENV = "LAMBDAFACE_MODELS_DIR"  # where the .dat model files are (default: the face_recognition_models package)
ONNX_DIR_ENV = "LAMBDAFACE_ONNX_DIR"  # where the converted models are (default: see shared/engine/models.py)
BUCKET_ENV = "LAMBDAFACE_BUCKET"  # the client's default bucket
SNAPSTART_ENV = "AWS_LAMBDA_INITIALIZATION_TYPE"  # Lambda sets it to "snap-start" while taking a snapshot
FACES_ENV = "LAMBDAFACE_FACES"  # the sample photos for tests, benchmarks and the demo
ALL_ENV = (*_ENGINE_ENV.values(), *_PIPELINE_ENV.values(), *_VIDEO_ENV.values())

_current: dict[tuple[str, ...], Config] = {}
_lock = threading.Lock()


def current_config() -> Config:
    """The configuration of this process, read from os.environ once (again only if it changed)."""
    key = tuple(os.environ.get(name, "") for name in ALL_ENV)
    found = _current.get(key)
    if found is None:
        found = load_config()
        with _lock:
            _current.clear()
            _current[key] = found
    return found


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from environment variables (os.environ by default)."""
    env = os.environ if env is None else env
    return Config(
        engine=_from_env(EngineConfig, _ENGINE_ENV, env),
        pipeline=_from_env(PipelineConfig, _PIPELINE_ENV, env),
        video=_from_env(VideoConfig, _VIDEO_ENV, env),
    )
