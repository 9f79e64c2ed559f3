"""The local stack's workers behave like Lambda's SQS event source: batch item failures come back
after the visibility timeout and go to the dead-letter queue after maxReceiveCount, an exception
fails the whole batch, a worker that dies or outlives the function timeout is replaced and its
messages are delivered again."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from support import ROOT
from support.stack import SCRIPTED_HANDLER, StackClients, StackProcess, stack_fixture, pythonpath_with_tests

from lambdaface.local.workers import failed_ids, sqs_record
from lambdaface.template import load_template


def scripted_template(directory: Path) -> list[str]:
    """The project's template with both functions' handler swapped for support/scripted_handler.py."""
    template = load_template()
    for lid in ("EnrollFunction", "RecognizeFunction"):
        template["Resources"][lid]["Properties"]["Handler"] = SCRIPTED_HANDLER
    path = directory / "template.json"  # JSON is YAML: load_template reads it
    path.write_text(json.dumps(template))
    return ["--template", str(path)]


stack = stack_fixture("workers", "--visibility-timeout", "1", "--function-timeout", "2", "--parameter", "MaxReceiveCount=3", workers=1,
                      env=pythonpath_with_tests(), prepare=scripted_template)


def test_a_reported_failure_is_retried_then_dead_lettered(stack: StackProcess) -> None:
    stack.client("s3").put_object(Bucket=stack.bucket, Key="models/x/fail.jpg", Body=b"x")
    for attempt in (1, 2):
        stack.wait_for_line(rf"^EnrollFunction models/x/fail.jpg: attempt {attempt} failed, will be retried$")
    stack.wait_for_line(r"^EnrollFunction models/x/fail.jpg: attempt 3 failed, goes to the dead-letter queue$")
    aws = StackClients(stack)
    dlq = aws.queue_url("EnrollDeadLetterQueue")
    messages = aws.sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=20, AttributeNames=["All"]).get("Messages", [])
    assert len(messages) == 1
    (record,) = json.loads(messages[0]["Body"])["Records"]
    assert unquote_plus(record["s3"]["object"]["key"]) == "models/x/fail.jpg"
    assert messages[0]["Attributes"]["ApproximateReceiveCount"] == "4"  # 3 deliveries + this one
    assert not [line for line in stack.lines if "fail.jpg: attempt 4" in line]


def test_an_exception_fails_the_whole_batch(stack: StackProcess) -> None:
    stack.client("s3").put_object(Bucket=stack.bucket, Key="queries/raise.jpg", Body=b"x")
    stack.wait_for_line(
        r"^RecognizeFunction queries/raise.jpg: attempt 1 failed, will be retried: RuntimeError: asked to raise"
    )
    stack.wait_for_line(r"^RecognizeFunction queries/raise.jpg: no result \(\d+\.\d s, attempt 2\)$")


def test_a_dead_worker_is_replaced_and_its_messages_come_back(stack: StackProcess) -> None:
    before = stack.worker_pids("RecognizeFunction")
    stack.client("s3").put_object(Bucket=stack.bucket, Key="queries/crash.jpg", Body=b"x")
    stack.wait_for_line(r"^RecognizeFunction queries/crash.jpg: no result \(\d+\.\d s, attempt 2\)$")
    assert re.search(r"worker \d+ \(RecognizeFunction\) exited with 3, starting another", stack.stderr())
    after = stack.worker_pids("RecognizeFunction")
    assert len(after) == 1 and after != before


def test_a_worker_past_the_function_timeout_is_killed_and_the_message_retried(stack: StackProcess) -> None:
    stack.client("s3").put_object(Bucket=stack.bucket, Key="models/x/slow.jpg", Body=b"x")
    stack.wait_for_line(r"^EnrollFunction models/x/slow.jpg: no result \(\d+\.\d s, attempt 2\)$")
    assert re.search(r"worker \d+ \(EnrollFunction\) timed out after 2 s", stack.stderr())


def test_a_success_is_deleted_and_reported_once(stack: StackProcess) -> None:
    stack.client("s3").put_object(Bucket=stack.bucket, Key="models/x/ok.jpg", Body=b"x")
    stack.wait_for_line(r"^EnrollFunction models/x/ok.jpg: no result \(\d+\.\d s\)$")
    aws = StackClients(stack)
    attributes = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url("EnrollQueue"), AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert len([line for line in stack.lines if "models/x/ok.jpg" in line]) == 1


def test_a_message_that_is_not_an_s3_event_gets_a_line(stack: StackProcess) -> None:
    aws = StackClients(stack)
    sent = aws.sqs.send_message(QueueUrl=aws.queue_url("EnrollQueue"), MessageBody='{"plan": "one of the pipeline\'s own messages"}')
    stack.wait_for_line(rf"^EnrollFunction message {sent['MessageId']}: done \(\d+\.\d s\)$")
    # only that one: the s3:TestEvent each queue got at start is nobody's job
    assert len([line for line in stack.lines if " message " in line]) == 1


# --- Lambda's rules for a handler's response, without a stack -----------------------------------

RECORDS = [{"messageId": "a"}, {"messageId": "b"}]


@pytest.mark.parametrize(
    ("response", "failed"),
    [
        (None, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"a", "b"}),  # unknown id: all fail
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b"}),
        ({"batchItemFailures": [{"wrong": "a"}]}, {"a", "b"}),
        ("not a dict", {"a", "b"}),
    ],
)
def test_batch_item_failures(response: Any, failed: set[str]) -> None:
    assert failed_ids(response, RECORDS, report_failures=True) == failed


def test_failures_are_ignored_without_report_batch_item_failures() -> None:
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": "a"}]}, RECORDS, report_failures=False) == set()


def test_sqs_record_has_lambdas_shape() -> None:
    event = json.loads((ROOT / "events" / "enroll.json").read_text())
    expected = event["Records"][0]
    message = {
        "MessageId": expected["messageId"],
        "ReceiptHandle": expected["receiptHandle"],
        "Body": expected["body"],
        "MD5OfBody": expected["md5OfBody"],
        "Attributes": expected["attributes"],
    }
    record = sqs_record(message, expected["eventSourceARN"], expected["awsRegion"])
    assert record == expected
