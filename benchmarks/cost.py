"""Cost model: what 1000 recognized images cost on Lambda, beside Amazon Rekognition's list price.

    model = CostModel(seconds_per_image=0.35, memory_mb=recognize_memory_mb())
    model.per_1000_images()   # {"lambda_compute": ..., "lambda_requests": ..., "sqs": ..., ..., "total": ...}
    CostModel(0.1, 2048, requests=requests_for(annotate=False))   # no results/<key>.jpg: one S3 PUT

Prices are us-east-1 list prices (x86 Lambda, S3 Standard, SQS standard queue, DynamoDB
on-demand), without free tiers; they were not fetched (no internet here): see PRICES_AS_OF.
Request counts per image follow the recognize job in src/shared/pipeline/images.py.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

PRICES_AS_OF = "AWS list prices for us-east-1 as published in 2025 (not re-checked on the day of the run)"


@dataclass(frozen=True)
class Prices:
    """US dollars, us-east-1, no free tier."""

    lambda_gb_second: float = 0.0000166667  # x86
    lambda_request: float = 0.20 / 1_000_000
    sqs_request: float = 0.40 / 1_000_000  # standard queue, per 64 KB request
    s3_put: float = 0.005 / 1000  # PUT, COPY, POST, LIST
    s3_get: float = 0.0004 / 1000  # GET and others
    dynamodb_write_unit: float = 0.625 / 1_000_000  # on-demand write request unit (item <= 1 KB)
    dynamodb_read_unit: float = 0.125 / 1_000_000  # on-demand read request unit (strongly consistent, <= 4 KB)
    rekognition_image: float = 1.00 / 1000  # DetectFaces or SearchFacesByImage, first 1M images a month


@dataclass(frozen=True)
class Requests:
    """Billed requests per recognized image (src/shared/pipeline/images.py, recognize)."""

    lambda_invocations: float = 1.0  # worst case: one image per invocation (a full batch of 5 costs 1/5)
    sqs: float = 3.0  # S3's SendMessage, the poller's ReceiveMessage, DeleteMessage (batching makes it less)
    s3_put: float = 2.0  # results/<key>.jpg (with AnnotatedImages, the default) and results/<key>.json
    s3_get: float = 1.0  # the query image
    dynamodb_writes: float = 2.0  # job claim + job finish (records < 1 KB)
    dynamodb_reads: float = 1.0  # the gallery's version item (the gallery itself is cached per worker)


def requests_for(annotate: bool = True, batch: int = 1) -> Requests:
    """The requests of one recognized image with or without the annotated JPEG (LAMBDAFACE_ANNOTATE,
    template parameter AnnotatedImages): without it the job makes one S3 PUT, not two. With `batch`
    images per invocation (full batches of RecognizeBatchSize) an invocation, a ReceiveMessage and a
    DeleteMessageBatch are shared by `batch` images; batch=1 is the worst case, Requests' defaults."""
    return Requests(lambda_invocations=1.0 / batch, sqs=1.0 + 2.0 / batch, s3_put=2.0 if annotate else 1.0)


@dataclass(frozen=True)
class CostModel:
    """Cost of recognizing images with this pipeline, from the measured seconds per image."""

    seconds_per_image: float  # billed duration of one image (the handler's time)
    memory_mb: int  # the function's configured MemorySize
    prices: Prices = Prices()
    requests: Requests = Requests()

    @property
    def gb_seconds_per_image(self) -> float:
        return self.seconds_per_image * self.memory_mb / 1024

    def per_1000_images(self) -> dict[str, float]:
        """Dollars per 1000 images, by line, and their total."""
        p, r, n = self.prices, self.requests, 1000
        lines = {
            "lambda_compute": n * self.gb_seconds_per_image * p.lambda_gb_second,
            "lambda_requests": n * r.lambda_invocations * p.lambda_request,
            "sqs": n * r.sqs * p.sqs_request,
            "s3": n * (r.s3_put * p.s3_put + r.s3_get * p.s3_get),
            "dynamodb": n * (r.dynamodb_writes * p.dynamodb_write_unit + r.dynamodb_reads * p.dynamodb_read_unit),
        }
        lines["total"] = sum(lines.values())
        return lines

    def cold_start_cost(self, init_seconds: float) -> float:
        """Dollars for one cold start's init phase (billed like the handler's duration)."""
        return init_seconds * self.memory_mb / 1024 * self.prices.lambda_gb_second

    def to_dict(self) -> dict:
        return {"seconds_per_image": self.seconds_per_image, "memory_mb": self.memory_mb,
                "prices": asdict(self.prices), "requests": asdict(self.requests)}


def by_annotation(seconds_per_image: dict[bool, float], memory_mb: int, prices: Prices = Prices(),
                  batch: int = 1) -> dict[bool, "CostModel"]:
    """A CostModel per annotate setting, each from its own measured seconds per image."""
    return {annotate: CostModel(seconds, memory_mb, prices, requests_for(annotate, batch))
            for annotate, seconds in seconds_per_image.items()}


def rekognition_per_1000_images(faces_per_image: float, prices: Prices = Prices()) -> dict[str, float]:
    """Rekognition's list price per 1000 images: one SearchFacesByImage call (it searches only the
    largest face), and DetectFaces plus one search per face (to recognize every face, as we do)."""
    n = 1000
    return {
        "largest_face_only": n * prices.rekognition_image,
        "every_face": n * (1 + faces_per_image) * prices.rekognition_image,
    }


def _recognize_function(template: Path | None = None):
    from lambdaface.local.spec import stack_spec
    from lambdaface.template import TEMPLATE, load_template

    return stack_spec(load_template(template or TEMPLATE), region="us-east-1", bucket="faces").functions["RecognizeFunction"]


def recognize_memory_mb(template: Path | None = None) -> int:
    """The RecognizeFunction's MemorySize in template.yaml, parameters resolved to their defaults."""
    return _recognize_function(template).memory_mb


def recognize_batch_size(template: Path | None = None) -> int:
    """The BatchSize of the RecognizeFunction's SQS event source in template.yaml (its default)."""
    return _recognize_function(template).batch_size
