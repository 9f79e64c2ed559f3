"""CloudWatch metrics of the pipeline, in the embedded metric format (Powertools Metrics).

Every job that ends (succeeded or failed, once: where its result is written by the attempt that
owns it) prints one EMF line, and a failed one a second line; Lambda's log agent turns them into
metrics, and on the local stack they are lines of `<state dir>/logs/<Function>.log`.

    namespace LambdaFace (POWERTOOLS_METRICS_NAMESPACE), dimension `service` (POWERTOOLS_SERVICE_NAME)

    Jobs            Count         1 per job        [service, kind, status], [service, kind], [service]
    JobDuration     Milliseconds  timings_ms.total  same dimension sets
    EngineTime      Milliseconds  detect_embed (images), the segments' sum (videos)
    FacesPerImage   Count         faces found in a recognized photo
    VideoSeconds    Seconds       length of a recognized video
    JobErrors       Count         1 per failed job  [service, code], [service]

    UnknownsSweepIncomplete  Count    1 per sweep run that ran out of time, else 0   [service]
    OldestUnknownFaceAge     Seconds  the oldest remembered face's age after a run  [service]
                                      (only while remembering unknown faces)

`kind` is enroll, forget, recognize (a photo) or video; `status` succeeded or failed; `code` the
result's error code. The handlers' `metrics.log_metrics` adds Powertools' ColdStart
[function_name, service]. The job id and key go in as metadata (searchable in Logs Insights, not
dimensions). Emitting never fails a job: a metric that cannot be written is logged and dropped.
"""
from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from shared.pipeline.delivery import SERVICE, logger

NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"
NAMESPACE = os.environ.get(NAMESPACE_ENV) or "LambdaFace"

JOBS, JOB_DURATION, ENGINE_TIME = "Jobs", "JobDuration", "EngineTime"
FACES_PER_IMAGE, VIDEO_SECONDS, JOB_ERRORS = "FacesPerImage", "VideoSeconds", "JobErrors"
SWEEP_INCOMPLETE, OLDEST_UNKNOWN_AGE = "UnknownsSweepIncomplete", "OldestUnknownFaceAge"
COLD_START = "ColdStart"  # Powertools' own, from log_metrics(capture_cold_start_metric=True)
KINDS = ("enroll", "forget", "recognize", "video")
STATUSES = ("succeeded", "failed")

# What the dashboard and alarms may reference: metric name -> its dimension sets.
JOB_DIMENSIONS = (("service", "kind", "status"), ("service", "kind"), ("service",))
CATALOGUE: dict[str, tuple[tuple[str, ...], ...]] = {
    JOBS: JOB_DIMENSIONS,
    JOB_DURATION: JOB_DIMENSIONS,
    ENGINE_TIME: JOB_DIMENSIONS,
    FACES_PER_IMAGE: JOB_DIMENSIONS,
    VIDEO_SECONDS: JOB_DIMENSIONS,
    JOB_ERRORS: (("service", "code"), ("service",)),
    COLD_START: (("function_name", "service"),),
    SWEEP_INCOMPLETE: (("service",),),
    OLDEST_UNKNOWN_AGE: (("service",),),
}


class _HandlerMetricsProvider(AmazonCloudWatchEMFProvider):
    """Powertools' EMF provider, quiet when an invocation leaves nothing to flush: job metrics are
    printed as each job ends (below), so most invocations leave nothing (the stock one warns)."""

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        if self.metric_set or raise_on_empty_metrics:
            super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)


# The handlers' decorator (`@metrics.log_metrics(capture_cold_start_metric=True)`): ColdStart, and
# whatever an invocation adds to this shared set, flushed when the handler returns.
metrics = Metrics(provider=_HandlerMetricsProvider(
    namespace=NAMESPACE, service=SERVICE, metric_set=Metrics._metrics, dimension_set=Metrics._dimensions,
    metadata_set=Metrics._metadata, default_dimensions=Metrics._default_dimensions))


def job_kind(document: dict[str, Any]) -> str:
    """The `kind` dimension of a result document: a video's recognize job is `video`."""
    return "video" if document.get("media") == "video" else str(document.get("kind") or "unknown")


def job_finished(document: dict[str, Any]) -> None:
    """Print the metrics of a job that ended with `document` (its result). Never raises."""
    try:
        _emit(document)
    except Exception:  # a metric is never worth a job
        logger.warning("could not emit the job's metrics", extra={"job_id": document.get("job_id")}, exc_info=True)


def _emit(document: dict[str, Any]) -> None:
    kind, status = job_kind(document), str(document.get("status") or "unknown")
    timings = document.get("timings_ms") or {}
    job = _new(document)
    job.add_dimension(name="kind", value=kind)
    job.add_dimension(name="status", value=status)
    job.add_dimensions(service=SERVICE, kind=kind)
    job.add_dimensions(service=SERVICE)
    job.add_metric(name=JOBS, unit=MetricUnit.Count, value=1)
    if "total" in timings:
        job.add_metric(name=JOB_DURATION, unit=MetricUnit.Milliseconds, value=float(timings["total"]))
    engine = timings.get("segments" if kind == "video" else "detect_embed")
    if engine is not None:
        job.add_metric(name=ENGINE_TIME, unit=MetricUnit.Milliseconds, value=float(engine))
    if status == "succeeded" and kind == "recognize":
        job.add_metric(name=FACES_PER_IMAGE, unit=MetricUnit.Count, value=len(document.get("faces") or []))
    if status == "succeeded" and kind == "video" and document.get("duration_s") is not None:
        job.add_metric(name=VIDEO_SECONDS, unit=MetricUnit.Seconds, value=float(document["duration_s"]))
    job.flush_metrics()
    error = document.get("error")
    if status == "failed" and error:
        failed = _new(document)
        failed.add_dimension(name="code", value=str(error.get("code") or "UNKNOWN"))
        failed.add_dimensions(service=SERVICE)
        failed.add_metadata(key="kind", value=kind)
        failed.add_metric(name=JOB_ERRORS, unit=MetricUnit.Count, value=1)
        failed.flush_metrics()


def sweep_finished(complete: bool, oldest_age_s: float | None) -> None:
    """Print the unknown-face sweep's metrics: whether the run finished, and (when faces are
    remembered) the oldest remembered face's age. Never raises."""
    try:
        emf = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)  # dimension: service
        emf.add_metric(name=SWEEP_INCOMPLETE, unit=MetricUnit.Count, value=0 if complete else 1)
        if oldest_age_s is not None:
            emf.add_metric(name=OLDEST_UNKNOWN_AGE, unit=MetricUnit.Seconds, value=max(0.0, float(oldest_age_s)))
        emf.flush_metrics()
    except Exception:  # a metric is never worth the sweep
        logger.warning("could not emit the sweep's metrics", exc_info=True)


def _new(document: dict[str, Any]) -> EphemeralMetrics:
    """A metric set of its own (not shared with the handler's), with the job's metadata.
    (`job`, not `job_id`: log readers pick a job's log records by `job_id`.)"""
    emf = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    emf.add_metadata(key="job", value=document.get("job_id"))
    emf.add_metadata(key="key", value=document.get("source"))
    return emf
