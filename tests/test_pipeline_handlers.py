"""Both handlers end to end against moto's server (real HTTP), with the real engine on real photos."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image

from handlers import enroll, recognize
from pipeline_support import (  # noqa: F401  (fixtures)
    Context,
    FaultProxy,
    Stack,
    batch,
    moto_endpoint,
    read,
    s3_event_body,
    sqs_record,
    stack,
    stack_context,
)
from shared.aws.events import parse_body
from shared.aws.gallery_table import GalleryTable
from shared.aws.jobs_table import JobSpec, JobsTable
from shared.pipeline.runner import job_id_for

QUERY_WHEN_SAME = 0.52  # same person: distances about 0.08-0.52 (see ../shared/faces/README.md)
QUERY_WHEN_OTHER = 0.68  # different people: above 0.68


def lambda_event(messages: list[dict[str, Any]], arn: str) -> dict[str, Any]:
    """The batch event Lambda's SQS event source builds from received messages."""
    return batch(
        *[
            {
                **sqs_record(m["Body"], int(m["Attributes"]["ApproximateReceiveCount"]), m["MessageId"]),
                "receiptHandle": m["ReceiptHandle"],
                "eventSourceARN": arn,
            }
            for m in messages
        ]
    )


class Queues:
    """S3 -> SQS notifications in moto, as in template.yaml, and a poller shaped like Lambda's."""

    def __init__(self, stack: Stack) -> None:
        self.sqs = stack.boto("sqs")
        self.urls: dict[str, str] = {}
        self.arns: dict[str, str] = {}
        for name in ("enroll", "recognize"):
            url = self.sqs.create_queue(QueueName=f"{stack.bucket}-{name}")["QueueUrl"]
            self.urls[name] = url
            self.arns[name] = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

        def rule(name: str, events: list[str], prefix: str) -> dict[str, Any]:
            return {
                "QueueArn": self.arns[name],
                "Events": events,
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
            }

        stack.s3.put_bucket_notification_configuration(
            Bucket=stack.bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    rule("enroll", ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"], "models/"),
                    rule("recognize", ["s3:ObjectCreated:*"], "queries/"),
                ]
            },
        )

    def deliver(self, name: str, handler: Any) -> dict[str, Any]:
        """Receive what is waiting on queue `name`, run `handler` on it, delete what succeeded."""
        messages = self.sqs.receive_message(
            QueueUrl=self.urls[name], MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        assert messages, f"nothing on the {name} queue"
        event = lambda_event(messages, self.arns[name])
        response = handler(event, Context())
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for m in messages:
            if m["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.urls[name], ReceiptHandle=m["ReceiptHandle"])
        return response


@pytest.fixture(scope="module")
def seeded(moto_endpoint: str, faces_dir: Path) -> Iterator[Stack]:
    """A stack with S3 notifications wired to queues, john0.jpg enrolled as "john" through them."""
    with stack_context(moto_endpoint) as stack_:
        stack_.queues = Queues(stack_)  # type: ignore[attr-defined]
        stack_.upload("models/john/john0.jpg", read(faces_dir, "seed/john0.jpg"))
        stack_.enroll_response = stack_.queues.deliver("enroll", enroll.handler)  # type: ignore[attr-defined]
        yield stack_


def box_is_plausible(box: dict[str, int], image: dict[str, int]) -> None:
    """A face box: inside the image, roughly square, neither tiny nor the whole picture."""
    assert box["left"] >= 0 and box["top"] >= 0
    assert box["left"] + box["width"] <= image["width"] and box["top"] + box["height"] <= image["height"]
    assert 0.7 < box["width"] / box["height"] < 1.4
    assert 0.05 * min(image.values()) < box["width"] < 0.95 * image["width"]


def test_seed_enrollment(seeded: Stack, photos: Any) -> None:
    assert seeded.enroll_response == {"batchItemFailures": []}  # type: ignore[attr-defined]
    result = seeded.result("models/john/john0.jpg")
    assert result["status"] == "succeeded" and result["kind"] == "enroll" and result["person"] == "john"
    assert result["source"] == "models/john/john0.jpg"
    etag = seeded.s3.head_object(Bucket=seeded.bucket, Key="models/john/john0.jpg")["ETag"].strip('"')
    assert result["source_etag"] == etag and result["event_time"].endswith("Z")
    [face] = result["faces"]
    box_is_plausible(face["box"], result["image"])
    assert face["box"] == photos.faces("seed/john0.jpg")[0].box.to_dict()
    assert result["model"] == {"name": "dlib_face_recognition_resnet_model_v1", "threshold": 0.6}
    assert {"download", "decode", "detect_embed", "store"} <= set(result["timings_ms"])
    assert "embedding" not in json.dumps(result)
    [job] = seeded.jobs()
    assert job["job_id"] == result["job_id"] and job["status"] == "succeeded" and job["kind"] == "enroll"
    assert job["attempts"] == 1 and job["person"] == "john" and job["result_key"] == "results/models/john/john0.jpg.json"
    assert job["expires_at"] > 0 and job["duration_ms"] > 0 and "lease_until" not in job
    items = seeded.dynamodb.scan(TableName=seeded.gallery_table)["Items"]
    faces = [i for i in items if i["person"]["S"] == "john"]
    assert len(faces) == 1 and len(faces[0]["embedding"]["B"]) == 512
    assert faces[0]["image_key"]["S"] == "models/john/john0.jpg"


def test_seed_queries(seeded: Stack, faces_dir: Path) -> None:
    for name in ("john1.jpg", "john2.jpg", "jim-carrey.jpg"):
        seeded.upload(f"queries/{name}", read(faces_dir, f"seed/{name}"))
    assert seeded.queues.deliver("recognize", recognize.handler) == {"batchItemFailures": []}  # type: ignore[attr-defined]
    for name in ("john1.jpg", "john2.jpg"):
        result = seeded.result(f"queries/{name}")
        assert result["status"] == "succeeded" and result["kind"] == "recognize"
        [face] = result["faces"]
        assert face["person"] == "john" and face["distance"] < QUERY_WHEN_SAME
        assert face["candidates"] == [{"person": "john", "distance": face["distance"]}]
        box_is_plausible(face["box"], result["image"])
        assert result["people"] == ["john"]
        assert result["annotated"] == f"results/queries/{name}.jpg"
        jpeg = seeded.s3.get_object(Bucket=seeded.bucket, Key=result["annotated"])
        assert jpeg["ContentType"] == "image/jpeg" and jpeg["Body"].read()[:3] == b"\xff\xd8\xff"
    jim = seeded.result("queries/jim-carrey.jpg")
    [face] = jim["faces"]
    assert face["person"] is None and face["distance"] > QUERY_WHEN_OTHER
    assert face["candidates"][0]["person"] == "john" and jim["people"] == []
    box_is_plausible(face["box"], jim["image"])



def test_url_encoded_keys_through_real_notifications(seeded: Stack, faces_dir: Path) -> None:
    key = "queries/my photo+é/ñ 1.jpg"  # S3 (and moto) send it as queries/my+photo%2B%C3%A9/%C3%B1+1.jpg
    seeded.upload(key, read(faces_dir, "seed/john2.jpg"))
    assert seeded.queues.deliver("recognize", recognize.handler) == {"batchItemFailures": []}  # type: ignore[attr-defined]
    result = seeded.result(key)
    assert result["source"] == key and result["people"] == ["john"]
    assert result["annotated"] == f"results/{key}.jpg" and seeded.has(f"results/{key}.jpg")


def test_s3_test_event_and_foreign_messages_are_acknowledged(stack: Stack) -> None:
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "t", "Bucket": stack.bucket})
    for handler in (enroll.handler, recognize.handler):
        event = batch(sqs_record(test_event), sqs_record("not an S3 event"))
        assert handler(event, Context()) == {"batchItemFailures": []}
    assert stack.jobs() == [] and not stack.has("results/")


def test_bad_image_fails_for_good(stack: Stack) -> None:
    stack.upload("queries/notes.jpg", b"these are my notes, not a photo\n")
    response = recognize.handler(stack.event("queries/notes.jpg"), Context())
    assert response == {"batchItemFailures": []}  # acknowledged: retrying cannot help
    result = stack.result("queries/notes.jpg")
    assert result["status"] == "failed" and result["error"]["code"] == "NOT_AN_IMAGE" and result["error"]["message"]
    assert "faces" not in result and "annotated" not in result
    [job] = stack.jobs()
    assert job["status"] == "failed" and job["error"]["code"] == "NOT_AN_IMAGE" and job["attempts"] == 1
    # Delivered again (say the first acknowledgement was lost): still one job, not run again.
    assert recognize.handler(stack.event("queries/notes.jpg"), Context()) == {"batchItemFailures": []}
    [again] = stack.jobs()
    assert again["attempts"] == 1 and again["finished_at"] == job["finished_at"]


def test_enrollment_rules(stack: Stack, faces_dir: Path) -> None:
    blank = Image.new("RGB", (320, 240), (90, 140, 200))
    buffer = io.BytesIO()
    blank.save(buffer, format="JPEG")
    uploads = {
        "models/john/sky.jpg": buffer.getvalue(),
        "models/a..b/john0.jpg": read(faces_dir, "seed/john0.jpg"),
        "models/john0.jpg": read(faces_dir, "seed/john0.jpg"),
        "models/pair/two.jpg": read(faces_dir, "multi/two_people.jpg"),
    }
    expected = {
        "models/john/sky.jpg": "NO_FACE",
        "models/a..b/john0.jpg": "INVALID_PERSON",
        "models/john0.jpg": "INVALID_KEY",
        "models/pair/two.jpg": "MULTIPLE_FACES",
    }
    for key, data in uploads.items():
        stack.upload(key, data)
    event = batch(*[stack.event(key)["Records"][0] for key in uploads])
    assert enroll.handler(event, Context()) == {"batchItemFailures": []}
    for key, code in expected.items():
        result = stack.result(key)
        assert (result["status"], result["error"]["code"]) == ("failed", code), key
    assert stack.result("models/pair/two.jpg")["person"] == "pair"
    assert {job["error"]["code"] for job in stack.jobs()} == set(expected.values())
    assert gallery_people(stack) == []


def gallery_people(stack: Stack) -> list[str]:
    return sorted({face.person for face in GalleryTable(stack.gallery_table).faces()})


def test_two_people_in_one_photo(stack: Stack, faces_dir: Path) -> None:
    for person, rel in (("obama", "people/obama/obama.jpg"), ("biden", "people/biden/biden.jpg")):
        stack.upload(f"models/{person}/{Path(rel).name}", read(faces_dir, rel))
    records = [stack.event(k)["Records"][0] for k in ("models/obama/obama.jpg", "models/biden/biden.jpg")]
    assert enroll.handler(batch(*records), Context()) == {"batchItemFailures": []}
    assert gallery_people(stack) == ["biden", "obama"]
    stack.upload("queries/two_people.jpg", read(faces_dir, "multi/two_people.jpg"))
    assert recognize.handler(stack.event("queries/two_people.jpg"), Context()) == {"batchItemFailures": []}
    result = stack.result("queries/two_people.jpg")
    assert result["people"] == ["biden", "obama"]
    assert sorted(f["person"] for f in result["faces"]) == ["biden", "obama"]
    for face in result["faces"]:
        box_is_plausible(face["box"], result["image"])
        assert face["distance"] < QUERY_WHEN_SAME
        assert [c["person"] for c in face["candidates"]] == [face["person"], *({"biden", "obama"} - {face["person"]})]
        assert face["candidates"][1]["distance"] > QUERY_WHEN_OTHER
    a, b = (f["box"] for f in result["faces"])
    assert a["left"] + a["width"] <= b["left"] or b["left"] + b["width"] <= a["left"]  # side by side, no overlap
    annotated = Image.open(io.BytesIO(stack.s3.get_object(Bucket=stack.bucket, Key=result["annotated"])["Body"].read()))
    assert annotated.format == "JPEG" and annotated.size == (result["image"]["width"], result["image"]["height"])


def test_deleting_images_forgets_faces(moto_endpoint: str, faces_dir: Path) -> None:
    with stack_context(moto_endpoint, LAMBDAFACE_ENROLL_JITTERS="1") as stack:
        queues = Queues(stack)
        stack.upload("models/john/john0.jpg", read(faces_dir, "seed/john0.jpg"))
        stack.upload("models/john/john1.jpg", read(faces_dir, "seed/john1.jpg"))
        assert queues.deliver("enroll", enroll.handler) == {"batchItemFailures": []}
        assert gallery_people(stack) == ["john"]
        assert len([f for f in GalleryTable(stack.gallery_table).faces() if f.person == "john"]) == 2

        stack.s3.delete_object(Bucket=stack.bucket, Key="models/john/john0.jpg")
        assert queues.deliver("enroll", enroll.handler) == {"batchItemFailures": []}
        forgotten = stack.result("models/john/john0.jpg")
        assert (forgotten["kind"], forgotten["status"], forgotten["person"], forgotten["removed"]) == (
            "forget", "succeeded", "john", True,
        )
        assert [f.image_key for f in GalleryTable(stack.gallery_table).faces() if f.person == "john"] == ["models/john/john1.jpg"]
        stack.upload("queries/a.jpg", read(faces_dir, "seed/john2.jpg"))
        queues.deliver("recognize", recognize.handler)
        assert stack.result("queries/a.jpg")["people"] == ["john"]  # one image of john is left

        stack.s3.delete_object(Bucket=stack.bucket, Key="models/john/john1.jpg")
        queues.deliver("enroll", enroll.handler)
        assert gallery_people(stack) == []  # no images left: john is gone
        stack.upload("queries/b.jpg", read(faces_dir, "seed/john2.jpg"))
        queues.deliver("recognize", recognize.handler)
        [face] = stack.result("queries/b.jpg")["faces"]
        assert face["person"] is None and face["distance"] is None and face["candidates"] == []
        kinds = sorted((job["kind"], job["status"]) for job in stack.jobs())
        assert kinds == [("enroll", "succeeded")] * 2 + [("forget", "succeeded")] * 2 + [("recognize", "succeeded")] * 2


def test_same_event_three_times_gives_one_job_and_one_result(moto_endpoint: str, faces_dir: Path) -> None:
    with stack_context(moto_endpoint, versioned=True) as stack:
        stack.upload("queries/john1.jpg", read(faces_dir, "seed/john1.jpg"))
        body = stack.event("queries/john1.jpg")["Records"][0]["body"]
        # Twice in one batch, and once more later, as SQS's at-least-once delivery allows.
        first = recognize.handler(batch(sqs_record(body), sqs_record(body)), Context())
        later = recognize.handler(batch(sqs_record(body, receive_count=2)), Context())
        assert first == later == {"batchItemFailures": []}
        [job] = stack.jobs()
        assert job["status"] == "succeeded" and job["attempts"] == 1
        for key in ("results/queries/john1.jpg.json", "results/queries/john1.jpg.jpg"):
            versions = stack.s3.list_object_versions(Bucket=stack.bucket, Prefix=key)["Versions"]
            assert len(versions) == 1, key
        assert stack.result("queries/john1.jpg")["job_id"] == job["job_id"]


def test_an_attempt_that_died_is_taken_over(stack: Stack, faces_dir: Path) -> None:
    stack.upload("queries/john2.jpg", read(faces_dir, "seed/john2.jpg"))
    event = stack.event("queries/john2.jpg")
    job_id = job_id_of(event)
    table = JobsTable(stack.jobs_table)
    # A worker claimed the job and was killed: its lease ran out (its message comes back later).
    table.claim(JobSpec(job_id, "recognize", stack.bucket, "queries/john2.jpg"), "killed-worker", lease_s=-1)
    assert recognize.handler(event, Context()) == {"batchItemFailures": []}
    job = table.get(job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 2 and job["attempt_id"] != "killed-worker"
    assert stack.result("queries/john2.jpg")["status"] == "succeeded"


def test_a_running_attempt_is_not_run_twice(stack: Stack, faces_dir: Path) -> None:
    stack.upload("queries/john2.jpg", read(faces_dir, "seed/john2.jpg"))
    event = stack.event("queries/john2.jpg")
    job_id = job_id_of(event)
    JobsTable(stack.jobs_table).claim(JobSpec(job_id, "recognize", stack.bucket, "queries/john2.jpg"), "alive", 600)
    response = recognize.handler(event, Context())
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert not stack.has("results/")
    assert JobsTable(stack.jobs_table).get(job_id)["attempt_id"] == "alive"


def job_id_of(event: dict[str, Any]) -> str:
    [object_event] = parse_body(event["Records"][0]["body"])
    return job_id_for(object_event, "recognize")


@pytest.fixture
def proxy(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The handlers' S3 traffic goes through a proxy that can fail requests; boto3 does not retry."""
    proxy = FaultProxy(stack.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    yield proxy
    proxy.close()


def get_of(key: str) -> Any:
    return lambda method, path: method == "GET" and path.split("?")[0].endswith("/" + key)


def test_partial_batch_failure(stack: Stack, proxy: FaultProxy, faces_dir: Path) -> None:
    stack.upload("queries/good.jpg", read(faces_dir, "seed/john1.jpg"))
    stack.upload("queries/flaky.jpg", read(faces_dir, "seed/john2.jpg"))
    good, flaky = stack.event("queries/good.jpg")["Records"][0], stack.event("queries/flaky.jpg")["Records"][0]
    proxy.fail(1, get_of("queries/flaky.jpg"))
    response = recognize.handler(batch(good, flaky), Context())
    assert response == {"batchItemFailures": [{"itemIdentifier": flaky["messageId"]}]}
    assert proxy.injected  # the fault really happened, over HTTP
    assert stack.result("queries/good.jpg")["status"] == "succeeded"
    assert not stack.has("results/queries/flaky.jpg")
    flaky_job = next(job for job in stack.jobs() if job["key"] == "queries/flaky.jpg")
    assert flaky_job["status"] == "running" and flaky_job["lease_until"] == 0  # released for the retry
    assert flaky_job["last_error"]["code"] == "SlowDown"


def test_transient_s3_error_succeeds_on_retry(stack: Stack, proxy: FaultProxy, faces_dir: Path) -> None:
    stack.upload("queries/john1.jpg", read(faces_dir, "seed/john1.jpg"))
    body = stack.event("queries/john1.jpg")["Records"][0]["body"]
    proxy.fail(1, get_of("queries/john1.jpg"))
    first = sqs_record(body, receive_count=1)
    assert recognize.handler(batch(first), Context())["batchItemFailures"] == [{"itemIdentifier": first["messageId"]}]
    # SQS delivers the same message again after its visibility timeout.
    retry = {**first, "attributes": {**first["attributes"], "ApproximateReceiveCount": "2"}}
    assert recognize.handler(batch(retry), Context()) == {"batchItemFailures": []}
    [job] = stack.jobs()
    assert job["status"] == "succeeded" and job["attempts"] == 2 and "error" not in job
    result = stack.result("queries/john1.jpg")
    assert result["status"] == "succeeded" and result["faces"][0]["box"]["width"] > 0


def test_last_delivery_marks_the_job_failed_and_a_redrive_runs_it(stack: Stack, proxy: FaultProxy, faces_dir: Path) -> None:
    stack.upload("queries/john1.jpg", read(faces_dir, "seed/john1.jpg"))
    body = stack.event("queries/john1.jpg")["Records"][0]["body"]
    proxy.fail(100, get_of("queries/john1.jpg"))
    last = sqs_record(body, receive_count=3)  # MAX_RECEIVE_COUNT: next stop, the dead-letter queue
    assert recognize.handler(batch(last), Context())["batchItemFailures"] == [{"itemIdentifier": last["messageId"]}]
    [job] = stack.jobs()
    assert job["status"] == "failed" and job["error"]["code"] == "RETRIES_EXHAUSTED"
    assert "SlowDown" in job["error"]["message"]
    result = stack.result("queries/john1.jpg")
    assert result["status"] == "failed" and result["error"] == job["error"]
    # An operator redrives the dead letter once S3 is healthy: the job runs again.
    proxy.fail(0, get_of("queries/john1.jpg"))
    assert recognize.handler(batch(sqs_record(body)), Context()) == {"batchItemFailures": []}
    [job] = stack.jobs()
    assert job["status"] == "succeeded" and job["attempts"] == 2 and "error" not in job
    assert stack.result("queries/john1.jpg")["people"] == []


def test_events_out_of_order_leave_the_gallery_right(moto_endpoint: str, faces_dir: Path) -> None:
    with stack_context(moto_endpoint, LAMBDAFACE_ENROLL_JITTERS="1") as stack:
        key = "models/john/john0.jpg"
        stack.upload(key, read(faces_dir, "seed/john0.jpg"))
        assert enroll.handler(stack.event(key), Context()) == {"batchItemFailures": []}
        # A stale delete event (the image was deleted and uploaded again; the delete comes last):
        # the face of the image that is there now stays.
        stale_delete = stack.event(key, event_name="ObjectRemoved:Delete", sequencer="01")
        assert enroll.handler(stale_delete, Context()) == {"batchItemFailures": []}
        assert stack.result(key)["removed"] is False
        assert gallery_people(stack) == ["john"]
        # An upload whose image is deleted before its event is processed: nothing joins the gallery.
        late = "models/jim/jim.jpg"
        stack.upload(late, read(faces_dir, "seed/jim-carrey.jpg"))
        event = stack.event(late)
        stack.s3.delete_object(Bucket=stack.bucket, Key=late)
        assert enroll.handler(event, Context()) == {"batchItemFailures": []}
        result = stack.result(late)
        assert result["status"] == "failed" and result["error"]["code"] == "OBJECT_NOT_FOUND"
        assert gallery_people(stack) == ["john"]


def test_a_failed_result_write_is_retried(stack: Stack, proxy: FaultProxy, faces_dir: Path) -> None:
    stack.upload("queries/john1.jpg", read(faces_dir, "seed/john1.jpg"))
    record = stack.event("queries/john1.jpg")["Records"][0]
    proxy.fail(1, lambda method, path: method == "PUT" and path.split("?")[0].endswith("/results/queries/john1.jpg.json"))
    assert recognize.handler(batch(record), Context())["batchItemFailures"] == [{"itemIdentifier": record["messageId"]}]
    [job] = stack.jobs()
    assert job["status"] == "running" and job["last_error"]["code"] == "SlowDown" and not stack.has("results/queries/john1.jpg.json")
    again = {**record, "attributes": {**record["attributes"], "ApproximateReceiveCount": "2"}}
    assert recognize.handler(batch(again), Context()) == {"batchItemFailures": []}
    assert stack.result("queries/john1.jpg")["status"] == "succeeded"
    assert [job["status"] for job in stack.jobs()] == ["succeeded"]
