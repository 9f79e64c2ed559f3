"""The local stack creates what template.yaml declares: queues, dead-letter queues, tables, bucket
notifications; and S3 events reach the right queue over real HTTP."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from support import ROOT
from support.stack import StackClients, StackProcess, stack_fixture

from lambdaface.local.spec import TemplateError, stack_spec
from lambdaface.local.stack import function_env
from lambdaface.template import parameter_defaults


stack = stack_fixture("resources", workers=0)  # without workers: messages stay in the queues for the test to read


def _of_type(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


def _param(template: dict[str, Any], value: Any) -> str:
    """A literal, or the default of the parameter it `Ref`s."""
    if isinstance(value, dict):
        return parameter_defaults(template)[value["Ref"]]
    return str(value)


def test_queues_match_the_template(stack: StackProcess, template: dict[str, Any]) -> None:
    aws = StackClients(stack)
    queues = _of_type(template, "AWS::SQS::Queue")
    assert {"EnrollQueue", "EnrollDeadLetterQueue", "RecognizeQueue", "RecognizeDeadLetterQueue"} <= set(queues)
    for lid, resource in queues.items():
        props = resource["Properties"]
        attributes = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url(lid), AttributeNames=["All"])["Attributes"]
        assert attributes["VisibilityTimeout"] == str(props.get("VisibilityTimeout", 30)), lid
        assert attributes["MessageRetentionPeriod"] == str(props["MessageRetentionPeriod"]), lid
        redrive = props.get("RedrivePolicy")
        if redrive is None:
            assert "RedrivePolicy" not in attributes, lid
            continue
        actual = json.loads(attributes["RedrivePolicy"])
        dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert actual["deadLetterTargetArn"].endswith(f":lambdaface-{dlq}"), lid
        assert str(actual["maxReceiveCount"]) == _param(template, redrive["maxReceiveCount"]), lid


def test_tables_match_the_template(stack: StackProcess, template: dict[str, Any]) -> None:
    dynamodb = stack.client("dynamodb")
    tables = _of_type(template, "AWS::DynamoDB::Table")
    assert {"JobsTable", "GalleryTable"} <= set(tables)
    for lid, resource in tables.items():
        props = resource["Properties"]
        described = dynamodb.describe_table(TableName=f"lambdaface-{lid}")["Table"]
        assert described["KeySchema"] == props["KeySchema"]
        assert sorted(described["AttributeDefinitions"], key=str) == sorted(props["AttributeDefinitions"], key=str)
        ttl = dynamodb.describe_time_to_live(TableName=f"lambdaface-{lid}")["TimeToLiveDescription"]
        if "TimeToLiveSpecification" in props:
            assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]
            assert ttl["TimeToLiveStatus"] == "ENABLED"
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED"


def test_notifications_match_the_template(stack: StackProcess, template: dict[str, Any]) -> None:
    (bucket,) = _of_type(template, "AWS::S3::Bucket").values()
    declared = sorted(
        (
            rule["Queue"]["Fn::GetAtt"][0],
            rule["Event"],
            rule["Filter"]["S3Key"]["Rules"][0]["Value"],
        )
        for rule in bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    )
    config = stack.client("s3").get_bucket_notification_configuration(Bucket=stack.bucket)
    actual = sorted(
        (
            rule["QueueArn"].rsplit(":lambdaface-", 1)[1],
            event,
            rule["Filter"]["Key"]["FilterRules"][0]["Value"],
        )
        for rule in config["QueueConfigurations"]
        for event in rule["Events"]
    )
    assert actual == declared


def _s3_events(aws: StackClients, logical_id: str) -> list[tuple[str, str]]:
    """(event name, key) of every S3 event waiting in a queue (consumed)."""
    url, found = aws.queue_url(logical_id), []
    for m in aws.receive_all(logical_id):
        body = json.loads(m["Body"])
        found += [(r["eventName"], r["s3"]["object"]["key"]) for r in body.get("Records", [])]
        aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return found


def test_s3_events_reach_the_queues_the_template_names(stack: StackProcess) -> None:
    aws = StackClients(stack)
    _s3_events(aws, "EnrollQueue"), _s3_events(aws, "RecognizeQueue")  # drop the s3:TestEvents
    aws.put("models/ann/a.jpg", b"a")
    aws.put("queries/q.jpg", b"q")
    aws.put("results/queries/q.jpg.json", b"{}")
    aws.delete("models/ann/a.jpg")
    aws.delete("queries/q.jpg")
    # keys arrive URL-encoded (moto encodes "/" too; AWS does not): compare decoded
    enroll = [(e, unquote_plus(k)) for e, k in _s3_events(aws, "EnrollQueue")]
    recognize = [(e, unquote_plus(k)) for e, k in _s3_events(aws, "RecognizeQueue")]
    assert enroll == [("ObjectCreated:Put", "models/ann/a.jpg"), ("ObjectRemoved:Delete", "models/ann/a.jpg")]
    assert recognize == [("ObjectCreated:Put", "queries/q.jpg")]


def test_the_aws_cli_works_against_the_stack(stack: StackProcess, faces_dir: Path) -> None:
    aws = StackClients(stack)
    _s3_events(aws, "RecognizeQueue")
    aws_cli = str(Path(sys.executable).with_name("aws"))
    env = stack.client_env()
    env.pop("AWS_ENDPOINT_URL")  # as the README shows it: --endpoint-url
    copy = subprocess.run(
        [aws_cli, "--endpoint-url", stack.endpoint, "s3", "cp", str(faces_dir / "seed/john0.jpg"), f"s3://{stack.bucket}/queries/cli.jpg"],
        env=env, capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert copy.returncode == 0, copy.stderr
    head = aws.s3.head_object(Bucket=stack.bucket, Key="queries/cli.jpg")
    assert head["ContentLength"] == (faces_dir / "seed/john0.jpg").stat().st_size
    events = [(e, unquote_plus(k)) for e, k in _s3_events(aws, "RecognizeQueue")]
    assert events == [("ObjectCreated:Put", "queries/cli.jpg")]


def test_spec_resolves_the_template(template: dict[str, Any]) -> None:
    spec = stack_spec(template, bucket="photos")
    assert spec.bucket == "photos"
    assert stack_spec(template).bucket == "lambdaface-123456789012-faces"  # the template's default name
    enroll, recognize = spec.functions["EnrollFunction"], spec.functions["RecognizeFunction"]
    assert (enroll.handler, enroll.queue) == ("handlers.enroll.handler", "EnrollQueue")
    assert (recognize.handler, recognize.queue) == ("handlers.recognize.handler", "RecognizeQueue")
    defaults = parameter_defaults(template)
    assert enroll.batch_size == int(defaults["EnrollBatchSize"])
    assert enroll.timeout_s == int(defaults["EnrollTimeout"])
    assert enroll.report_batch_item_failures and recognize.report_batch_item_failures
    assert enroll.environment["JOBS_TABLE"] == spec.tables["JobsTable"].name
    assert enroll.environment["GALLERY_TABLE"] == spec.tables["GalleryTable"].name
    # the person index: every writer is told its table, and the commands default to the local name
    from lambdaface import find, unknowns

    index = spec.tables["PeopleIndexTable"]
    assert index.ttl_attribute == "expires_at" and index.name == find.LOCAL_TABLE == unknowns.INDEX_LOCAL
    for function in ("EnrollFunction", "RecognizeFunction", "VideoFunction"):
        assert spec.functions[function].environment["PEOPLE_INDEX_TABLE"] == index.name, function
    # the correction records: every function that applies or deletes them is told their table
    from lambdaface import correct

    records = spec.tables["CorrectionsTable"]
    assert records.ttl_attribute is None and records.name == correct.LOCAL_TABLE
    for function in ("EnrollFunction", "RecognizeFunction", "VideoFunction"):
        assert spec.functions[function].environment["CORRECTIONS_TABLE"] == records.name, function
    assert enroll.environment["LAMBDAFACE_THRESHOLD"] == defaults["Threshold"]


def test_functions_get_the_queue_urls_moto_gives(stack: StackProcess, template: dict[str, Any]) -> None:
    with_url = json.loads(json.dumps(template))
    with_url["Globals"]["Function"]["Environment"]["Variables"]["ENROLL_QUEUE_URL"] = {"Ref": "EnrollQueue"}
    enroll = stack_spec(with_url, bucket=stack.bucket).functions["EnrollFunction"]
    env = function_env(enroll, stack.endpoint, "us-east-1")
    assert env["ENROLL_QUEUE_URL"] == StackClients(stack).queue_url("EnrollQueue")
    assert env["AWS_ENDPOINT_URL"] == stack.endpoint
    assert env["JOBS_TABLE"] == "lambdaface-JobsTable"


def test_spec_refuses_what_it_cannot_reproduce(template: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(template))
    broken["Resources"]["EnrollFunction"]["Properties"]["Timeout"] = {"Fn::ImportValue": "elsewhere"}
    with pytest.raises(TemplateError, match="Fn::ImportValue"):
        stack_spec(broken)
    broken = json.loads(json.dumps(template))
    broken["Resources"]["EnrollQueue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] = "arn:aws:sqs:x:1:other"
    with pytest.raises(TemplateError, match="dead-letter queue"):
        stack_spec(broken)
