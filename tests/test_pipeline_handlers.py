"""Both handlers end to end against moto's server (real HTTP), with the real engine on real photos."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image
from support.faults import FaultProxy, get_of, put_of
from support.images import encode
from support.lambda_events import LambdaQueue, batch, context, record, redelivered, s3_test_event_body
from support.moto import MotoResources, moto_resources

from handlers import enroll, recognize
from shared.aws.events import parse_body
from shared.aws.gallery_table import GalleryTable
from shared.aws.jobs_table import JobSpec, JobsTable
from shared.pipeline.runner import job_id_for

QUERY_WHEN_SAME = 0.52  # same person: distances about 0.08-0.52 (see ../shared/faces/README.md)
QUERY_WHEN_OTHER = 0.68  # different people: above 0.68


class Notified:
    """S3 -> SQS notifications in moto, routed as template.yaml routes them; each queue is
    delivered to its handler the way Lambda's event source does it."""

    def __init__(self, aws: MotoResources) -> None:
        self.queues = {name: LambdaQueue.create(aws.sqs, f"{aws.bucket}-{name}") for name in ("enroll", "recognize")}

        def rule(name: str, events: list[str], prefix: str) -> dict[str, Any]:
            return {
                "QueueArn": self.queues[name].arn,
                "Events": events,
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
            }

        aws.s3.put_bucket_notification_configuration(
            Bucket=aws.bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    rule("enroll", ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"], "models/"),
                    rule("recognize", ["s3:ObjectCreated:*"], "queries/"),
                ]
            },
        )

    def deliver(self, name: str) -> Any:
        """What waits on the `name` queue ("enroll" or "recognize"), delivered to its handler."""
        return self.queues[name].deliver({"enroll": enroll.handler, "recognize": recognize.handler}[name])


@dataclass
class Seeded:
    aws: MotoResources
    notified: Notified
    enroll_response: Any


@pytest.fixture(scope="module")
def seeded(moto_endpoint: str, faces_dir: Path) -> Iterator[Seeded]:
    """Resources with S3 notifications wired to queues, john0.jpg enrolled as "john" through them."""
    with moto_resources(moto_endpoint) as aws:
        notified = Notified(aws)
        aws.put("models/john/john0.jpg", (faces_dir / "seed/john0.jpg").read_bytes())
        yield Seeded(aws, notified, notified.deliver("enroll"))


def box_is_plausible(box: dict[str, int], image: dict[str, int]) -> None:
    """A face box: inside the image, roughly square, neither tiny nor the whole picture."""
    assert box["left"] >= 0 and box["top"] >= 0
    assert box["left"] + box["width"] <= image["width"] and box["top"] + box["height"] <= image["height"]
    assert 0.7 < box["width"] / box["height"] < 1.4
    assert 0.05 * min(image.values()) < box["width"] < 0.95 * image["width"]


def test_seed_enrollment(seeded: Seeded, photos: Any) -> None:
    assert seeded.enroll_response == {"batchItemFailures": []}
    result = seeded.aws.result("models/john/john0.jpg")
    assert result["status"] == "succeeded" and result["kind"] == "enroll" and result["person"] == "john"
    assert result["source"] == "models/john/john0.jpg"
    etag = seeded.aws.s3.head_object(Bucket=seeded.aws.bucket, Key="models/john/john0.jpg")["ETag"].strip('"')
    assert result["source_etag"] == etag and result["event_time"].endswith("Z")
    [face] = result["faces"]
    box_is_plausible(face["box"], result["image"])
    assert face["box"] == photos.faces("seed/john0.jpg")[0].box.to_dict()
    assert result["model"] == {"name": "dlib_face_recognition_resnet_model_v1", "threshold": 0.6}
    assert {"download", "decode", "detect_embed", "store"} <= set(result["timings_ms"])
    assert "embedding" not in json.dumps(result)
    [job] = seeded.aws.jobs()
    assert job["job_id"] == result["job_id"] and job["status"] == "succeeded" and job["kind"] == "enroll"
    assert job["attempts"] == 1 and job["person"] == "john" and job["result_key"] == "results/models/john/john0.jpg.json"
    assert job["expires_at"] > 0 and job["duration_ms"] > 0 and "lease_until" not in job
    items = seeded.aws.dynamodb.scan(TableName=seeded.aws.gallery_table)["Items"]
    faces = [i for i in items if i["person"]["S"] == "john"]
    assert len(faces) == 1 and len(faces[0]["embedding"]["B"]) == 512
    assert faces[0]["image_key"]["S"] == "models/john/john0.jpg"


def test_seed_queries(seeded: Seeded, faces_dir: Path) -> None:
    for name in ("john1.jpg", "john2.jpg", "jim-carrey.jpg"):
        seeded.aws.put(f"queries/{name}", (faces_dir / f"seed/{name}").read_bytes())
    assert seeded.notified.deliver("recognize") == {"batchItemFailures": []}
    for name in ("john1.jpg", "john2.jpg"):
        result = seeded.aws.result(f"queries/{name}")
        assert result["status"] == "succeeded" and result["kind"] == "recognize"
        [face] = result["faces"]
        assert face["person"] == "john" and face["distance"] < QUERY_WHEN_SAME
        assert face["candidates"] == [{"person": "john", "distance": face["distance"]}]
        box_is_plausible(face["box"], result["image"])
        assert result["people"] == ["john"]
        assert result["annotated"] == f"results/queries/{name}.jpg"
        jpeg = seeded.aws.s3.get_object(Bucket=seeded.aws.bucket, Key=result["annotated"])
        assert jpeg["ContentType"] == "image/jpeg" and jpeg["Body"].read()[:3] == b"\xff\xd8\xff"
    jim = seeded.aws.result("queries/jim-carrey.jpg")
    [face] = jim["faces"]
    assert face["person"] is None and face["distance"] > QUERY_WHEN_OTHER
    assert face["candidates"][0]["person"] == "john" and jim["people"] == []
    box_is_plausible(face["box"], jim["image"])


def test_url_encoded_keys_through_real_notifications(seeded: Seeded, faces_dir: Path) -> None:
    key = "queries/my photo+é/ñ 1.jpg"  # S3 (and moto) send it as queries/my+photo%2B%C3%A9/%C3%B1+1.jpg
    seeded.aws.put(key, (faces_dir / "seed/john2.jpg").read_bytes())
    assert seeded.notified.deliver("recognize") == {"batchItemFailures": []}
    result = seeded.aws.result(key)
    assert result["source"] == key and result["people"] == ["john"]
    assert result["annotated"] == f"results/{key}.jpg" and seeded.aws.has(f"results/{key}.jpg")


def test_s3_test_event_and_foreign_messages_are_acknowledged(aws: MotoResources) -> None:
    test_event = s3_test_event_body(aws.bucket)
    for handler in (enroll.handler, recognize.handler):
        event = batch(record(test_event), record("not an S3 event"))
        assert handler(event, context()) == {"batchItemFailures": []}
    assert aws.jobs() == [] and not aws.has("results/")


def test_bad_image_fails_for_good(aws: MotoResources) -> None:
    aws.put("queries/notes.jpg", b"these are my notes, not a photo\n")
    response = recognize.handler(aws.event("queries/notes.jpg"), context())
    assert response == {"batchItemFailures": []}  # acknowledged: retrying cannot help
    result = aws.result("queries/notes.jpg")
    assert result["status"] == "failed" and result["error"]["code"] == "NOT_AN_IMAGE" and result["error"]["message"]
    assert "faces" not in result and "annotated" not in result
    [job] = aws.jobs()
    assert job["status"] == "failed" and job["error"]["code"] == "NOT_AN_IMAGE" and job["attempts"] == 1
    # Delivered again (say the first acknowledgement was lost): still one job, not run again.
    assert recognize.handler(aws.event("queries/notes.jpg"), context()) == {"batchItemFailures": []}
    [again] = aws.jobs()
    assert again["attempts"] == 1 and again["finished_at"] == job["finished_at"]


def test_enrollment_rules(aws: MotoResources, faces_dir: Path) -> None:
    blank = Image.new("RGB", (320, 240), (90, 140, 200))
    uploads = {
        "models/john/sky.jpg": encode(blank, "JPEG"),
        "models/a..b/john0.jpg": (faces_dir / "seed/john0.jpg").read_bytes(),
        "models/john0.jpg": (faces_dir / "seed/john0.jpg").read_bytes(),
        "models/pair/two.jpg": (faces_dir / "multi/two_people.jpg").read_bytes(),
    }
    expected = {
        "models/john/sky.jpg": "NO_FACE",
        "models/a..b/john0.jpg": "INVALID_PERSON",
        "models/john0.jpg": "INVALID_KEY",
        "models/pair/two.jpg": "MULTIPLE_FACES",
    }
    for key, data in uploads.items():
        aws.put(key, data)
    event = batch(*[aws.event(key)["Records"][0] for key in uploads])
    assert enroll.handler(event, context()) == {"batchItemFailures": []}
    for key, code in expected.items():
        result = aws.result(key)
        assert (result["status"], result["error"]["code"]) == ("failed", code), key
    assert aws.result("models/pair/two.jpg")["person"] == "pair"
    assert {job["error"]["code"] for job in aws.jobs()} == set(expected.values())
    assert gallery_people(aws) == []


def gallery_people(aws: MotoResources) -> list[str]:
    return sorted({face.person for face in GalleryTable(aws.gallery_table).faces()})


def test_two_people_in_one_photo(aws: MotoResources, faces_dir: Path) -> None:
    for person, rel in (("obama", "people/obama/obama.jpg"), ("biden", "people/biden/biden.jpg")):
        aws.put(f"models/{person}/{Path(rel).name}", (faces_dir / rel).read_bytes())
    records = [aws.event(k)["Records"][0] for k in ("models/obama/obama.jpg", "models/biden/biden.jpg")]
    assert enroll.handler(batch(*records), context()) == {"batchItemFailures": []}
    assert gallery_people(aws) == ["biden", "obama"]
    aws.put("queries/two_people.jpg", (faces_dir / "multi/two_people.jpg").read_bytes())
    assert recognize.handler(aws.event("queries/two_people.jpg"), context()) == {"batchItemFailures": []}
    result = aws.result("queries/two_people.jpg")
    assert result["people"] == ["biden", "obama"]
    assert sorted(f["person"] for f in result["faces"]) == ["biden", "obama"]
    for face in result["faces"]:
        box_is_plausible(face["box"], result["image"])
        assert face["distance"] < QUERY_WHEN_SAME
        assert [c["person"] for c in face["candidates"]] == [face["person"], *({"biden", "obama"} - {face["person"]})]
        assert face["candidates"][1]["distance"] > QUERY_WHEN_OTHER
    a, b = (f["box"] for f in result["faces"])
    assert a["left"] + a["width"] <= b["left"] or b["left"] + b["width"] <= a["left"]  # side by side, no overlap
    annotated = Image.open(io.BytesIO(aws.s3.get_object(Bucket=aws.bucket, Key=result["annotated"])["Body"].read()))
    assert annotated.format == "JPEG" and annotated.size == (result["image"]["width"], result["image"]["height"])


def test_deleting_images_forgets_faces(moto_endpoint: str, faces_dir: Path) -> None:
    with moto_resources(moto_endpoint, LAMBDAFACE_ENROLL_JITTERS="1") as aws:
        notified = Notified(aws)
        aws.put("models/john/john0.jpg", (faces_dir / "seed/john0.jpg").read_bytes())
        aws.put("models/john/john1.jpg", (faces_dir / "seed/john1.jpg").read_bytes())
        assert notified.deliver("enroll") == {"batchItemFailures": []}
        assert gallery_people(aws) == ["john"]
        assert len([f for f in GalleryTable(aws.gallery_table).faces() if f.person == "john"]) == 2

        aws.delete("models/john/john0.jpg")
        assert notified.deliver("enroll") == {"batchItemFailures": []}
        forgotten = aws.result("models/john/john0.jpg")
        assert (forgotten["kind"], forgotten["status"], forgotten["person"], forgotten["removed"]) == (
            "forget", "succeeded", "john", True,
        )
        assert [f.image_key for f in GalleryTable(aws.gallery_table).faces() if f.person == "john"] == ["models/john/john1.jpg"]
        aws.put("queries/a.jpg", (faces_dir / "seed/john2.jpg").read_bytes())
        notified.deliver("recognize")
        assert aws.result("queries/a.jpg")["people"] == ["john"]  # one image of john is left

        aws.delete("models/john/john1.jpg")
        notified.deliver("enroll")
        assert gallery_people(aws) == []  # no images left: john is gone
        aws.put("queries/b.jpg", (faces_dir / "seed/john2.jpg").read_bytes())
        notified.deliver("recognize")
        [face] = aws.result("queries/b.jpg")["faces"]
        assert face["person"] is None and face["distance"] is None and face["candidates"] == []
        kinds = sorted((job["kind"], job["status"]) for job in aws.jobs())
        assert kinds == [("enroll", "succeeded")] * 2 + [("forget", "succeeded")] * 2 + [("recognize", "succeeded")] * 2


def test_same_event_three_times_gives_one_job_and_one_result(moto_endpoint: str, faces_dir: Path) -> None:
    with moto_resources(moto_endpoint, versioned=True) as aws:
        aws.put("queries/john1.jpg", (faces_dir / "seed/john1.jpg").read_bytes())
        body = aws.event("queries/john1.jpg")["Records"][0]["body"]
        # Twice in one batch, and once more later, as SQS's at-least-once delivery allows.
        first = recognize.handler(batch(record(body), record(body)), context())
        later = recognize.handler(batch(record(body, receive_count=2)), context())
        assert first == later == {"batchItemFailures": []}
        [job] = aws.jobs()
        assert job["status"] == "succeeded" and job["attempts"] == 1
        for key in ("results/queries/john1.jpg.json", "results/queries/john1.jpg.jpg"):
            versions = aws.s3.list_object_versions(Bucket=aws.bucket, Prefix=key)["Versions"]
            assert len(versions) == 1, key
        assert aws.result("queries/john1.jpg")["job_id"] == job["job_id"]


def test_an_attempt_that_died_is_taken_over(aws: MotoResources, faces_dir: Path) -> None:
    aws.put("queries/john2.jpg", (faces_dir / "seed/john2.jpg").read_bytes())
    event = aws.event("queries/john2.jpg")
    job_id = job_id_of(event)
    table = JobsTable(aws.jobs_table)
    # A worker claimed the job and was killed: its lease ran out (its message comes back later).
    table.claim(JobSpec(job_id, "recognize", aws.bucket, "queries/john2.jpg"), "killed-worker", lease_s=-1)
    assert recognize.handler(event, context()) == {"batchItemFailures": []}
    job = table.get(job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 2 and job["attempt_id"] != "killed-worker"
    assert aws.result("queries/john2.jpg")["status"] == "succeeded"


def test_a_running_attempt_is_not_run_twice(aws: MotoResources, faces_dir: Path) -> None:
    aws.put("queries/john2.jpg", (faces_dir / "seed/john2.jpg").read_bytes())
    event = aws.event("queries/john2.jpg")
    job_id = job_id_of(event)
    JobsTable(aws.jobs_table).claim(JobSpec(job_id, "recognize", aws.bucket, "queries/john2.jpg"), "alive", 600)
    response = recognize.handler(event, context())
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert not aws.has("results/")
    assert JobsTable(aws.jobs_table).get(job_id)["attempt_id"] == "alive"


def job_id_of(event: dict[str, Any]) -> str:
    [object_event] = parse_body(event["Records"][0]["body"])
    return job_id_for(object_event, "recognize")


@pytest.fixture
def proxy(aws: MotoResources, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The handlers' S3 traffic goes through a proxy that can fail requests; boto3 does not retry."""
    proxy = FaultProxy(aws.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    yield proxy
    proxy.close()


def test_partial_batch_failure(aws: MotoResources, proxy: FaultProxy, faces_dir: Path) -> None:
    aws.put("queries/good.jpg", (faces_dir / "seed/john1.jpg").read_bytes())
    aws.put("queries/flaky.jpg", (faces_dir / "seed/john2.jpg").read_bytes())
    good, flaky = aws.event("queries/good.jpg")["Records"][0], aws.event("queries/flaky.jpg")["Records"][0]
    proxy.fail(1, get_of("queries/flaky.jpg"))
    response = recognize.handler(batch(good, flaky), context())
    assert response == {"batchItemFailures": [{"itemIdentifier": flaky["messageId"]}]}
    assert proxy.injected  # the fault really happened, over HTTP
    assert aws.result("queries/good.jpg")["status"] == "succeeded"
    assert not aws.has("results/queries/flaky.jpg")
    flaky_job = next(job for job in aws.jobs() if job["key"] == "queries/flaky.jpg")
    assert flaky_job["status"] == "running" and flaky_job["lease_until"] == 0  # released for the retry
    assert flaky_job["last_error"]["code"] == "SlowDown"


def test_transient_s3_error_succeeds_on_retry(aws: MotoResources, proxy: FaultProxy, faces_dir: Path) -> None:
    aws.put("queries/john1.jpg", (faces_dir / "seed/john1.jpg").read_bytes())
    body = aws.event("queries/john1.jpg")["Records"][0]["body"]
    proxy.fail(1, get_of("queries/john1.jpg"))
    first = record(body, receive_count=1)
    assert recognize.handler(batch(first), context())["batchItemFailures"] == [{"itemIdentifier": first["messageId"]}]
    # SQS delivers the same message again after its visibility timeout.
    retry = redelivered(first, 2)
    assert recognize.handler(batch(retry), context()) == {"batchItemFailures": []}
    [job] = aws.jobs()
    assert job["status"] == "succeeded" and job["attempts"] == 2 and "error" not in job
    result = aws.result("queries/john1.jpg")
    assert result["status"] == "succeeded" and result["faces"][0]["box"]["width"] > 0


def test_last_delivery_marks_the_job_failed_and_a_redrive_runs_it(aws: MotoResources, proxy: FaultProxy, faces_dir: Path) -> None:
    aws.put("queries/john1.jpg", (faces_dir / "seed/john1.jpg").read_bytes())
    body = aws.event("queries/john1.jpg")["Records"][0]["body"]
    proxy.fail(100, get_of("queries/john1.jpg"))
    last = record(body, receive_count=5)  # MAX_RECEIVE_COUNT (5): next stop, the dead-letter queue
    assert recognize.handler(batch(last), context())["batchItemFailures"] == [{"itemIdentifier": last["messageId"]}]
    [job] = aws.jobs()
    assert job["status"] == "failed" and job["error"]["code"] == "RETRIES_EXHAUSTED"
    assert "SlowDown" in job["error"]["message"]
    result = aws.result("queries/john1.jpg")
    assert result["status"] == "failed" and result["error"] == job["error"]
    # An operator redrives the dead letter once S3 is healthy: the job runs again.
    proxy.fail(0, get_of("queries/john1.jpg"))
    assert recognize.handler(batch(record(body)), context()) == {"batchItemFailures": []}
    [job] = aws.jobs()
    assert job["status"] == "succeeded" and job["attempts"] == 2 and "error" not in job
    assert aws.result("queries/john1.jpg")["people"] == []


def test_events_out_of_order_leave_the_gallery_right(moto_endpoint: str, faces_dir: Path) -> None:
    with moto_resources(moto_endpoint, LAMBDAFACE_ENROLL_JITTERS="1") as aws:
        key = "models/john/john0.jpg"
        aws.put(key, (faces_dir / "seed/john0.jpg").read_bytes())
        assert enroll.handler(aws.event(key), context()) == {"batchItemFailures": []}
        # A stale delete event (the image was deleted and uploaded again; the delete comes last):
        # the face of the image that is there now stays.
        stale_delete = aws.event(key, event_name="ObjectRemoved:Delete", sequencer="01")
        assert enroll.handler(stale_delete, context()) == {"batchItemFailures": []}
        assert aws.result(key)["removed"] is False
        assert gallery_people(aws) == ["john"]
        # An upload whose image is deleted before its event is processed: nothing joins the gallery.
        late = "models/jim/jim.jpg"
        aws.put(late, (faces_dir / "seed/jim-carrey.jpg").read_bytes())
        event = aws.event(late)
        aws.delete(late)
        assert enroll.handler(event, context()) == {"batchItemFailures": []}
        result = aws.result(late)
        assert result["status"] == "failed" and result["error"]["code"] == "OBJECT_NOT_FOUND"
        assert gallery_people(aws) == ["john"]


def test_a_failed_result_write_is_retried(aws: MotoResources, proxy: FaultProxy, faces_dir: Path) -> None:
    aws.put("queries/john1.jpg", (faces_dir / "seed/john1.jpg").read_bytes())
    rec = aws.event("queries/john1.jpg")["Records"][0]
    proxy.fail(1, put_of("results/queries/john1.jpg.json"))
    assert recognize.handler(batch(rec), context())["batchItemFailures"] == [{"itemIdentifier": rec["messageId"]}]
    [job] = aws.jobs()
    assert job["status"] == "running" and job["last_error"]["code"] == "SlowDown" and not aws.has("results/queries/john1.jpg.json")
    again = redelivered(rec, 2)
    assert recognize.handler(batch(again), context()) == {"batchItemFailures": []}
    assert aws.result("queries/john1.jpg")["status"] == "succeeded"
    assert [job["status"] for job in aws.jobs()] == ["succeeded"]
