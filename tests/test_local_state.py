"""State survives a restart: a clean stop saves objects, items and unprocessed messages (with
their receive counts), the next start restores them without firing S3 events; autosave bounds
what a SIGKILL of the stack loses; one state directory serves one stack at a time."""
from __future__ import annotations

import json
import signal
from pathlib import Path
from urllib.parse import unquote_plus

from support.cli import lambdaface
from support.stack import StackClients, StackProcess
from support.waits import wait_until

EMBEDDING = bytes(range(256)) * 2  # 512 bytes, like 128 float32


def _keys(messages: list[dict]) -> list[str]:
    return sorted(
        unquote_plus(r["s3"]["object"]["key"]) for m in messages for r in json.loads(m["Body"]).get("Records", [])
    )


def test_a_clean_stop_saves_and_the_next_start_restores(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with StackProcess(state, workers=0) as first:
        aws = StackClients(first)
        s3, dynamodb, sqs = aws.s3, aws.dynamodb, aws.sqs
        s3.put_object(Bucket=first.bucket, Key="models/ann/a.jpg", Body=b"\xff\xd8 ann", ContentType="image/jpeg",
                      Metadata={"who": "ann"})
        s3.put_object(Bucket=first.bucket, Key="queries/q.jpg", Body=b"\xff\xd8 q")
        s3.put_object(Bucket=first.bucket, Key="results/queries/q.jpg.json", Body=b'{"status": "succeeded"}')
        dynamodb.put_item(
            TableName="lambdaface-GalleryTable",
            Item={"person": {"S": "ann"}, "image_key": {"S": "models/ann/a.jpg"}, "embedding": {"B": EMBEDDING}},
        )
        # one enroll message received once and not deleted: in flight when the stack stops
        in_flight = aws.receive_all("EnrollQueue")
        assert _keys(in_flight) == ["models/ann/a.jpg"]
        sqs.send_message(QueueUrl=aws.queue_url("RecognizeDeadLetterQueue"), MessageBody="dead letter")
        # one state directory serves one stack at a time
        other = lambdaface("local", "--port", "0", "--workers", "0", "--state-dir", str(state), timeout=120)
        assert other.returncode != 0
        assert "in use by another local stack" in other.stderr
        assert first.stop(signal.SIGTERM) == 0
    assert "stopped; saved 3 objects, 1 items, " in first.stderr()

    with StackProcess(state, workers=0) as second:
        aws = StackClients(second)
        s3 = aws.s3
        ann = s3.get_object(Bucket=second.bucket, Key="models/ann/a.jpg")
        assert ann["Body"].read() == b"\xff\xd8 ann"
        assert (ann["ContentType"], ann["Metadata"]) == ("image/jpeg", {"who": "ann"})
        listed = s3.list_objects_v2(Bucket=second.bucket)["Contents"]
        assert sorted(o["Key"] for o in listed) == ["models/ann/a.jpg", "queries/q.jpg", "results/queries/q.jpg.json"]
        item = aws.dynamodb.get_item(
            TableName="lambdaface-GalleryTable", Key={"person": {"S": "ann"}, "image_key": {"S": "models/ann/a.jpg"}}
        )["Item"]
        assert item["embedding"]["B"] == EMBEDDING
        # the messages are back, visible, and keep their receive counts; restoring the objects
        # fired no new events (only one message per upload, and the s3:TestEvent of the new stack)
        enroll = aws.receive_all("EnrollQueue")
        assert _keys(enroll) == ["models/ann/a.jpg"]
        counts = {m["Body"][:30]: m["Attributes"]["ApproximateReceiveCount"] for m in enroll}
        assert sorted(counts.values()) == ["1", "2"]  # TestEvent: first delivery; ann's: second
        assert _keys(aws.receive_all("RecognizeQueue")) == ["queries/q.jpg"]
        assert [m["Body"] for m in aws.receive_all("RecognizeDeadLetterQueue")] == ["dead letter"]
        assert second.stop(signal.SIGINT) == 0


def test_autosave_bounds_what_a_crash_loses(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with StackProcess(state, "--autosave", "0.5", workers=0) as first:
        first.client("s3").put_object(Bucket=first.bucket, Key="models/bob/b.jpg", Body=b"bob")

        def saved_keys() -> list[str]:
            saved = (state / "state.json").exists() and json.loads((state / "state.json").read_text())
            return [o["key"] for o in saved["objects"]] if saved else []

        wait_until("an autosave with models/bob/b.jpg", lambda: saved_keys() == ["models/bob/b.jpg"], timeout=60, every=0.2)
        first.stop(signal.SIGKILL)
    with StackProcess(state, workers=0) as second:
        body = second.client("s3").get_object(Bucket=second.bucket, Key="models/bob/b.jpg")["Body"].read()
        assert body == b"bob"
        assert second.stop() == 0
