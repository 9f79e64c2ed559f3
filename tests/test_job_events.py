"""Every finished job emits exactly one event on EventBridge's default bus (moto's server, real
HTTP, the real handlers and engine on real photos), also when its message is delivered again, when
the bus was unreachable at the finish, and when the worker dies between the finish and the PutEvents."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from support.aws import client
from support.lambda_events import OK, context, redelivered
from support.moto import MotoResources, moto_resources

from handlers import enroll, recognize
from shared.aws.clients import reset
from shared.pipeline import job_events

ROOT = Path(__file__).resolve().parents[1]


class Bus:
    """A rule on moto's default bus sending this test's events (its bucket's) to a queue of its own."""

    def __init__(self, aws: MotoResources) -> None:
        self.aws = aws
        self.events_client = client(aws.endpoint, "events")
        self.url = aws.sqs.create_queue(QueueName=f"{aws.bucket}-events")["QueueUrl"]
        arn = aws.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        pattern = {"source": ["lambdaface"], "detail": {"bucket": [aws.bucket]}}
        self.events_client.put_rule(Name=f"{aws.bucket}-events", EventPattern=json.dumps(pattern))
        self.events_client.put_targets(Rule=f"{aws.bucket}-events", Targets=[{"Id": "queue", "Arn": arn}])
        self.seen: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        """Every event delivered so far (all of them, not only the new ones)."""
        while got := self.aws.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", []):
            for m in got:
                self.seen.append(json.loads(m["Body"]))
                self.aws.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
        return self.seen

    def of(self, job_id: str) -> list[dict[str, Any]]:
        return [e for e in self.drain() if e["detail"]["job_id"] == job_id]


@pytest.fixture
def bus(moto_endpoint: str) -> Iterator[Bus]:
    with moto_resources(moto_endpoint, LAMBDAFACE_REMEMBER_UNKNOWNS="true", LAMBDAFACE_ANNOTATE="false") as aws:
        yield Bus(aws)


def job_of(aws: MotoResources, key: str) -> dict[str, Any]:
    [record] = [j for j in aws.jobs() if j["key"] == key]
    return record


def twice(handler: Any, event: dict[str, Any]) -> None:
    """Deliver `event`'s record, then the same record again (a redelivery)."""
    assert handler(event, context()) == OK
    again = {"Records": [redelivered(r, 2) for r in event["Records"]]}
    assert handler(again, context()) == OK


def test_one_event_per_finished_job_with_redeliveries(bus: Bus, faces_dir: Path) -> None:
    aws = bus.aws
    aws.put("models/john/john0.jpg", (faces_dir / "seed/john0.jpg").read_bytes())
    twice(enroll.handler, aws.event("models/john/john0.jpg"))
    aws.put("queries/john1.jpg", (faces_dir / "seed/john1.jpg").read_bytes())
    twice(recognize.handler, aws.event("queries/john1.jpg"))
    aws.put("queries/obama.jpg", (faces_dir / "people/obama/obama.jpg").read_bytes())
    twice(recognize.handler, aws.event("queries/obama.jpg"))
    aws.put("queries/broken.jpg", b"not an image at all")
    twice(recognize.handler, aws.event("queries/broken.jpg"))
    aws.delete("models/john/john0.jpg")
    twice(enroll.handler, aws.event("models/john/john0.jpg", event_name="ObjectRemoved:Delete"))

    events = bus.drain()
    jobs = aws.jobs()
    assert len(jobs) == 5
    assert sorted(e["detail"]["job_id"] for e in events) == sorted(j["job_id"] for j in jobs)  # one each
    for j in jobs:
        assert j["event_sent"] == j["finished_at"]
    by_source = {(e["detail"]["source"], e["detail"]["kind"]): e for e in events}
    assert all(e["source"] == "lambdaface" for e in events)

    enrolled = by_source["models/john/john0.jpg", "enroll"]
    assert enrolled["detail-type"] == "Enroll job finished"
    assert enrolled["detail"]["status"] == "succeeded" and enrolled["detail"]["people"] == ["john"]

    john = by_source["queries/john1.jpg", "recognize"]
    assert john["detail-type"] == "Photo recognition finished" and john["detail"]["media"] == "photo"
    assert john["detail"]["people"] == ["john"] and john["detail"]["unknown_clusters"] == []
    assert john["detail"]["unknown_seen"] is False
    assert john["detail"]["result_key"] == "results/queries/john1.jpg.json"

    obama = by_source["queries/obama.jpg", "recognize"]
    result = aws.result("queries/obama.jpg")
    clusters = [f["cluster"] for f in result["faces"] if f.get("cluster")]
    assert clusters and obama["detail"]["unknown_clusters"] == clusters  # remembered unknown face
    assert obama["detail"]["people"] == [] and obama["detail"]["unknown_seen"] is True
    assert obama["detail"]["unknown_faces"] == 1

    broken = by_source["queries/broken.jpg", "recognize"]
    assert broken["detail"]["status"] == "failed" and broken["detail"]["error_code"] == aws.result("queries/broken.jpg")["error"]["code"]

    forgot = by_source["models/john/john0.jpg", "forget"]
    assert forgot["detail-type"] == "Forget job finished" and forgot["detail"]["people"] == ["john"]
    for e in events:
        assert "embedding" not in json.dumps(e) and "box" not in json.dumps(e)


def test_an_unreachable_bus_makes_the_message_come_back_and_the_redelivery_sends_it(
    bus: Bus, faces_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws = bus.aws
    aws.put("models/john/john0.jpg", (faces_dir / "seed/john0.jpg").read_bytes())
    event = aws.event("models/john/john0.jpg", receive_count=5)  # the last delivery: it goes to the DLQ next
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", dead)  # boto3's name for the events service's endpoint
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    reset()
    response = enroll.handler(event, context())
    assert len(response["batchItemFailures"]) == 1  # the message comes back (or, at its last, waits in the DLQ)
    record = job_of(aws, "models/john/john0.jpg")
    assert record["status"] == "succeeded" and "event_sent" not in record
    assert aws.result("models/john/john0.jpg")["status"] == "succeeded"  # not overwritten as failed
    assert bus.of(record["job_id"]) == []

    monkeypatch.delenv("AWS_ENDPOINT_URL_EVENTBRIDGE")
    monkeypatch.delenv("AWS_MAX_ATTEMPTS")
    reset()
    twice(enroll.handler, aws.event("models/john/john0.jpg", receive_count=5))  # e.g. redriven from the DLQ
    [sent] = bus.of(record["job_id"])
    assert sent["detail"]["status"] == "succeeded" and sent["detail"]["people"] == ["john"]
    assert sent["detail"]["finished_at"] == record["finished_at"]


CRASHING_WORKER = """
import json, sys
sys.path.insert(0, {tests!r})
from support.lambda_events import context
from handlers import recognize
recognize.handler(json.loads(sys.argv[1]), context())
"""


def test_a_worker_killed_between_the_finish_and_the_put_events(bus: Bus) -> None:
    """The worker's PutEvents reaches a socket the test holds and never answers: the finish is
    recorded, the event not sent; the test kills the worker there, then the message comes back."""
    aws = bus.aws
    aws.put("queries/broken.jpg", b"not an image at all")
    event = aws.event("queries/broken.jpg")
    with socket.socket() as bus_socket:
        bus_socket.bind(("127.0.0.1", 0))
        bus_socket.listen(1)
        bus_socket.settimeout(120)
        env = {**os.environ, "AWS_ENDPOINT_URL_EVENTBRIDGE": f"http://127.0.0.1:{bus_socket.getsockname()[1]}",
               "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        worker = subprocess.Popen([sys.executable, "-c", CRASHING_WORKER.format(tests=str(ROOT / "tests")), json.dumps(event)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            connection, _ = bus_socket.accept()  # the PutEvents is in flight: the job is finished
            record = job_of(aws, "queries/broken.jpg")
            assert record["status"] == "failed" and "event_sent" not in record
            worker.send_signal(signal.SIGKILL)
            assert worker.wait(30) == -signal.SIGKILL
            connection.close()
        finally:
            worker.kill()
            worker.wait()
    assert bus.of(record["job_id"]) == []
    assert record["event"]["status"] == "failed"  # the event it owes, written by the finish itself
    aws.delete("results/queries/broken.jpg.json")  # the redelivery needs the record only (no role reads results/)

    twice(recognize.handler, {"Records": [redelivered(r, 2) for r in event["Records"]]})
    [sent] = bus.of(record["job_id"])
    assert sent["detail"] == {**record["event"], "finished_at": record["finished_at"]}
    assert sent["detail"]["status"] == "failed" and sent["detail"]["result_key"] == "results/queries/broken.jpg.json"
    assert job_of(aws, "queries/broken.jpg")["event_sent"] == record["finished_at"]


def test_detail_of_a_video_result() -> None:
    """A video's unknown clusters come from its appearances and frames; its people from `people`."""
    document = {"job_id": "j", "kind": "recognize", "media": "video", "source": "queries/v.mp4", "status": "succeeded",
                "people": ["obama", "biden", "obama"],
                "appearances": [{"person": "obama", "intervals": [[0, 1]]}, {"person": None, "cluster": "u-2", "intervals": [[1, 2]]}],
                "frames": [{"t": 0.5, "faces": [{"person": None, "cluster": "u-2"}, {"person": None, "cluster": "u-1"}]}]}
    detail = job_events.detail(document, "b")
    assert job_events.detail_type(detail) == "Video recognition finished"
    assert detail["people"] == ["biden", "obama"] and detail["unknown_clusters"] == ["u-2", "u-1"]
    assert detail["unknown_faces"] == 1 and detail["unknown_seen"] is True


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    yield
    reset()


# --- videos: the merge (or a redelivered segment that finds the job finished) sends the event ----

from test_video_pipeline import gallery_faces, two_scenes, video_stack  # noqa: E402,F401 (fixtures)


def test_a_video_job_emits_one_event_even_after_an_unreachable_bus(
    moto_endpoint: str, gallery_faces: Any, two_scenes: bytes, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    with video_stack(moto_endpoint, gallery_faces) as vstack:
        bus = Bus(vstack.aws)
        event = vstack.upload("queries/scenes.mp4", two_scenes)
        [plan] = vstack.receive()
        assert vstack.deliver(plan)
        *segments, last = sorted(vstack.receive(), key=lambda m: json.loads(m["Body"])["index"])
        for message in segments:
            assert vstack.deliver(message)
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", f"http://127.0.0.1:{closed.getsockname()[1]}")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        reset()
        assert not vstack.deliver(last)  # merged and finished, the event not sent: the message comes back
        job = vstack.job("queries/scenes.mp4")
        assert job["status"] == "succeeded" and "event_sent" not in job
        assert bus.of(job["job_id"]) == []
        monkeypatch.delenv("AWS_ENDPOINT_URL_EVENTBRIDGE")
        monkeypatch.delenv("AWS_MAX_ATTEMPTS")
        reset()
        assert vstack.deliver(last, receive_count=2)  # finds the job finished, its event owed: sends it
        for message in (last, segments[0], plan):
            assert vstack.deliver(message, receive_count=3)
        [sent] = bus.of(job["job_id"])
        assert recognize.handler(event, context()) == OK  # the S3 event again: the job is done, its event sent
        assert bus.of(job["job_id"]) == [sent]
        result = vstack.result("queries/scenes.mp4")
        assert sent["detail-type"] == "Video recognition finished" and sent["detail"]["media"] == "video"
        assert sent["detail"]["people"] == sorted(set(result["people"])) == ["biden", "obama"]
        assert sent["detail"]["unknown_seen"] is False
        assert vstack.job("queries/scenes.mp4")["event_sent"] == job["finished_at"]
