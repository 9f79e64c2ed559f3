"""template.yaml, read as data: least-privilege IAM, queues, notifications, storage, functions.

`sam validate --lint` and SAM's own translation (aws-sam-cli's venv, `make sam-install`) run here
too: the first proves CloudFormation and SAM accept the template, the second that SAM adds no
policy behind our back.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from support import ROOT
from support.template import as_list, role_statements

from lambdaface.template import TEMPLATE, load_template, parameter_defaults
from shared.config import EngineConfig, PipelineConfig, VideoConfig

SAM_VENV = ROOT / ".venv-sam"
EVENTS = ROOT / "events"
FUNCTIONS = {"EnrollFunction": "EnrollQueue", "RecognizeFunction": "RecognizeQueue", "VideoFunction": "VideoQueue"}
NOTIFIED = {"EnrollQueue", "RecognizeQueue"}  # S3 sends to these; the functions send to VideoQueue


def sam_env() -> dict[str, str]:
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}


def sam_tool(name: str) -> str:
    tool = SAM_VENV / "bin" / name
    assert tool.exists(), f"{tool} is missing: run `make sam-install`"
    return str(tool)


def props(resources: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return resources[logical_id]["Properties"]


def getatt_target(value: Any) -> str:
    """The logical id of `!GetAtt X.Arn`."""
    assert isinstance(value, dict) and "Fn::GetAtt" in value, value
    resource, attribute = value["Fn::GetAtt"]
    assert attribute == "Arn", value
    return resource


def ref_target(value: Any) -> str:
    assert isinstance(value, dict) and set(value) == {"Ref"}, value
    return value["Ref"]


def grants(resources: dict[str, Any], function: str, service: str) -> dict[str, set[str]]:
    """{action: {resource, ...}} of one function's role for one service, resources as strings."""
    out: dict[str, set[str]] = {}
    for statement in role_statements(resources, function):
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            if action.startswith(f"{service}:"):
                out.setdefault(action, set()).update(json.dumps(r, sort_keys=True) for r in as_list(statement["Resource"]))
    return out


# --- SAM's own checks -------------------------------------------------------------------------


def test_sam_validate_lint_passes() -> None:
    run = subprocess.run(
        [sam_tool("sam"), "validate", "--lint", "--template", str(TEMPLATE)],
        capture_output=True, text=True, env=sam_env(), cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "is a valid SAM Template" in run.stdout


def test_sam_validate_lint_rejects_a_broken_template(tmp_path: Path) -> None:
    """The check above can fail: a visibility timeout beyond SQS's 12 hours is caught."""
    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE.read_text().replace("VisibilityTimeout: 600", "VisibilityTimeout: 99999"))
    run = subprocess.run(
        [sam_tool("sam"), "validate", "--lint", "--template", str(broken)],
        capture_output=True, text=True, env=sam_env(), cwd=tmp_path,
    )
    assert run.returncode != 0
    assert "E3034" in run.stdout + run.stderr and "99999" in run.stdout + run.stderr


TRANSLATE = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:
    def load(self):
        return {}

template = yaml_parse(open(sys.argv[1]).read())
template["Globals"]["Function"]["CodeUri"] = "s3://placeholder/code.zip"
print(json.dumps(transform(template, {}, NoManagedPolicies())))
"""


def test_sam_translation_adds_no_roles_or_managed_policies() -> None:
    """With an explicit Role, SAM attaches nothing (no AWSLambdaSQSQueueExecutionRole on `*`)."""
    run = subprocess.run(
        [sam_tool("python"), "-c", TRANSLATE, str(TEMPLATE)], capture_output=True, text=True, env=sam_env()
    )
    assert run.returncode == 0, run.stderr
    translated = json.loads(run.stdout)["Resources"]
    roles = {lid: r for lid, r in translated.items() if r["Type"] == "AWS::IAM::Role"}
    assert set(roles) == {"EnrollFunctionRole", "RecognizeFunctionRole", "VideoFunctionRole", "UnknownsSweepFunctionRole",
                          "ReconcileFunctionRole", "ApiFunctionRole"}
    for lid, role in roles.items():
        assert "ManagedPolicyArns" not in role["Properties"], lid
    mappings = [r["Properties"] for r in translated.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert len(mappings) == 3
    for mapping in mappings:
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


# --- IAM: least privilege --------------------------------------------------------------------


def test_roles_have_no_wildcard_actions_or_resources(resources: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        fn = props(resources, function)
        assert "Policies" not in fn, "policies belong on the explicit role"
        role = props(resources, getatt_target(fn["Role"]))
        assert "ManagedPolicyArns" not in role
        statements = role_statements(resources, function)
        assert statements
        for statement in statements:
            assert statement["Effect"] == "Allow"
            for action in as_list(statement["Action"]):
                assert "*" not in action, (function, action)
            for resource in as_list(statement["Resource"]):
                assert resource != "*", (function, statement)


def test_s3_reads_models_or_queries_and_writes_only_results(resources: dict[str, Any]) -> None:
    def objects(prefix: str) -> str:
        return json.dumps({"Fn::Sub": "${Bucket.Arn}/" + prefix}, sort_keys=True)

    bucket = json.dumps({"Fn::GetAtt": ["Bucket", "Arn"]}, sort_keys=True)
    snapshots = objects("gallery/snapshots/*")  # the gallery's snapshots: enroll writes them, every function reads them
    # the unknown faces' snapshots: written (compaction) by the functions that remember unknown faces
    unknowns = objects("unknowns/snapshots/*")
    assert grants(resources, "EnrollFunction", "s3") == {
        "s3:GetObject": {objects("models/*"), snapshots},
        "s3:ListBucket": {bucket},
        "s3:PutObject": {objects("results/models/*"), snapshots},
        "s3:DeleteObject": {snapshots},
        "s3:AbortMultipartUpload": {snapshots},
    }
    # Recognition and video read their own result back when a correction was made meanwhile
    # (src/shared/pipeline/corrections.py settle).
    assert grants(resources, "RecognizeFunction", "s3") == {
        "s3:GetObject": {objects("queries/*"), objects("results/queries/*"), snapshots, unknowns},
        "s3:ListBucket": {bucket},
        "s3:PutObject": {objects("results/queries/*"), unknowns},
        "s3:DeleteObject": {unknowns},
        "s3:AbortMultipartUpload": {unknowns},
    }
    # Video: the video, and each segment's frames until the merge (work/ expires, notifies nothing).
    assert grants(resources, "VideoFunction", "s3") == {
        "s3:GetObject": {objects("queries/*"), objects("results/queries/*"), objects("work/segments/*"), snapshots, unknowns},
        "s3:ListBucket": {bucket},
        "s3:PutObject": {objects("results/queries/*"), objects("work/segments/*"), unknowns},
        "s3:DeleteObject": {unknowns},
        "s3:AbortMultipartUpload": {unknowns},
    }
    # Listing is limited to the prefixes the function reads (enroll also lists old snapshots to delete
    # them, and recognition the unknown faces' old snapshots).
    listed = {"EnrollFunction": {"models/*", "gallery/snapshots/*"},
              "RecognizeFunction": {"queries/*", "unknowns/snapshots/*"},
              "VideoFunction": {"queries/*", "unknowns/snapshots/*"}}
    for function, prefixes in listed.items():
        listings = [s for s in role_statements(resources, function) if s["Action"] == "s3:ListBucket"]
        assert {s["Condition"]["StringLike"]["s3:prefix"] for s in listings} == prefixes, function
        assert all(set(s["Condition"]) == {"StringLike"} for s in listings), function
    for function in FUNCTIONS:
        for statement in role_statements(resources, function):
            assert "Condition" not in statement or statement["Action"] == "s3:ListBucket"


def test_dynamodb_actions_only_on_the_project_tables(resources: dict[str, Any]) -> None:
    jobs = json.dumps({"Fn::GetAtt": ["JobsTable", "Arn"]}, sort_keys=True)
    gallery = json.dumps({"Fn::GetAtt": ["GalleryTable", "Arn"]}, sort_keys=True)
    unknowns = json.dumps({"Fn::GetAtt": ["UnknownsTable", "Arn"]}, sort_keys=True)
    index = json.dumps({"Fn::GetAtt": ["PeopleIndexTable", "Arn"]}, sort_keys=True)
    corrections = json.dumps({"Fn::GetAtt": ["CorrectionsTable", "Arn"]}, sort_keys=True)
    # Correction records (src/shared/aws/corrections_table.py): Queries only (a content's records;
    # the copies naming a person, or every `not <cluster>`); enroll deletes a forgotten person's.
    correction_actions = {"EnrollFunction": {"dynamodb:Query", "dynamodb:DeleteItem"},
                          "RecognizeFunction": {"dynamodb:Query"}, "VideoFunction": {"dynamodb:Query"}}
    # The person index (src/shared/aws/people_index_table.py): enroll deletes a forgotten person's
    # entries (or, during `lambdaface merge`, reads its mark and moves them), recognition replaces a
    # source's (manifest, batches), video also moves a merged cluster's entries (its regroup); no Scan anywhere.
    index_actions = {
        "EnrollFunction": {"dynamodb:Query", "dynamodb:BatchWriteItem", "dynamodb:GetItem", "dynamodb:PutItem",
                           "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
        "RecognizeFunction": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:BatchWriteItem"},
        "VideoFunction": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem",
                          "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"},
    }
    # What src/shared/aws/{jobs,gallery}_table.py call (test_lambda_package.py checks each call).
    job_actions = {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    # Recognition remembers unknown faces (one transaction per change; one BatchGetItem of a counter
    # shard per partition): no Scan (test_template_unknowns.py).
    unknown_actions = {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem",
                       "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem", "dynamodb:BatchWriteItem",
                       "dynamodb:TransactWriteItems"}
    for function, gallery_actions in {
        # enroll writes each change as one transaction (face, log entry, order item, counter shards)
        "EnrollFunction": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem",
                           "dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:TransactWriteItems"},
        # recognition reads a counter shard and the log since its snapshot: no Scan
        "RecognizeFunction": {"dynamodb:GetItem", "dynamodb:Query"},
        "VideoFunction": {"dynamodb:GetItem", "dynamodb:Query"},
    }.items():
        granted = grants(resources, function, "dynamodb")
        assert {a for a, r in granted.items() if jobs in r} == job_actions, function
        assert {a for a, r in granted.items() if gallery in r} == gallery_actions, function
        assert {a for a, r in granted.items() if unknowns in r} == (set() if function == "EnrollFunction" else unknown_actions), function
        assert {a for a, r in granted.items() if index in r} == index_actions[function], function
        assert {a for a, r in granted.items() if corrections in r} == correction_actions[function], function
        assert all(r <= {jobs, gallery, unknowns, index, corrections} for r in granted.values()), function
    sweep = grants(resources, "UnknownsSweepFunction", "dynamodb")
    assert {a for a, r in sweep.items() if index in r} == {"dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                                             "dynamodb:DeleteItem"}
    assert not {a for a, r in grants(resources, "ReconcileFunction", "dynamodb").items() if index in r}
    assert {a for a, r in sweep.items() if corrections in r} == {"dynamodb:Query"}
    assert not {a for a, r in grants(resources, "ReconcileFunction", "dynamodb").items() if corrections in r}


def test_each_role_consumes_only_its_queue_and_logs_only_to_its_group(resources: dict[str, Any]) -> None:
    # Recognize sends a video's plan to the video queue, the video function its segments; enroll
    # sends itself a forget's delayed gallery purge.
    sends = {"RecognizeFunction": "VideoQueue", "VideoFunction": "VideoQueue", "EnrollFunction": "EnrollQueue"}
    for function, queue in FUNCTIONS.items():
        log_group = ref_target(props(resources, function)["LoggingConfig"]["LogGroup"])
        arn = lambda lid: json.dumps({"Fn::GetAtt": [lid, "Arn"]}, sort_keys=True)  # noqa: E731
        assert grants(resources, function, "sqs") == {
            **{a: {arn(queue)} for a in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")},
            **({"sqs:SendMessage": {arn(sends[function])}} if function in sends else {}),
        }
        assert grants(resources, function, "logs") == {
            a: {arn(log_group)} for a in ("logs:CreateLogStream", "logs:PutLogEvents")
        }
        services = {a.split(":")[0] for s in role_statements(resources, function) for a in as_list(s["Action"])}
        assert services == {"logs", "sqs", "s3", "dynamodb", "events"}  # events: tests/test_template_events.py


# --- Queues and notifications ----------------------------------------------------------------


def test_visibility_timeout_is_at_least_six_function_timeouts(template: dict[str, Any], resources: dict[str, Any]) -> None:
    params = template["Parameters"]
    for function, queue in FUNCTIONS.items():
        timeout = params[ref_target(props(resources, function)["Timeout"])]
        visibility = props(resources, queue)["VisibilityTimeout"]
        assert isinstance(visibility, int), "kept literal: the local stack reads it"
        # Holds for every timeout the parameter admits, not only the default.
        assert visibility >= 6 * timeout["MaxValue"] >= 6 * timeout["Default"], function


def test_each_queue_has_a_dead_letter_queue_after_five_receives(template: dict[str, Any], resources: dict[str, Any]) -> None:
    receive_param = "MaxReceiveCount"
    # AWS's advice for queues feeding Lambda: throttled invocations count as receives
    assert template["Parameters"][receive_param]["Default"] == 5 == PipelineConfig().max_receive_count
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["MAX_RECEIVE_COUNT"] == {"Ref": receive_param}, "the handlers must know the DLQ's count"
    dlqs = set()
    for queue in FUNCTIONS.values():
        redrive = props(resources, queue)["RedrivePolicy"]
        assert redrive["maxReceiveCount"] == {"Ref": receive_param}
        dlq = getatt_target(redrive["deadLetterTargetArn"])
        assert resources[dlq]["Type"] == "AWS::SQS::Queue" and dlq not in FUNCTIONS.values()
        dlqs.add(dlq)
    assert len(dlqs) == len(FUNCTIONS)


def test_sqs_event_sources_report_partial_failures(template: dict[str, Any], resources: dict[str, Any]) -> None:
    params = template["Parameters"]
    for function, queue in FUNCTIONS.items():
        (event,) = props(resources, function)["Events"].values()
        assert event["Type"] == "SQS"
        source = event["Properties"]
        assert getatt_target(source["Queue"]) == queue
        assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        concurrency = params[ref_target(source["ScalingConfig"]["MaximumConcurrency"])]
        assert 2 <= concurrency["MinValue"] <= concurrency["Default"] <= concurrency["MaxValue"] <= 1000
        if function == "VideoFunction":  # one segment per invocation: segments spread over instances
            assert source["BatchSize"] == 1
            continue
        batch = params[ref_target(source["BatchSize"])]
        assert 1 <= batch["MinValue"] <= batch["Default"] <= batch["MaxValue"] <= 10


def notification_rules(resources: dict[str, Any]) -> set[tuple[str, str, str]]:
    rules = set()
    for config in props(resources, "Bucket")["NotificationConfiguration"]["QueueConfigurations"]:
        (rule,) = config["Filter"]["S3Key"]["Rules"]
        assert rule["Name"] == "prefix"
        rules.add((config["Event"], rule["Value"], getatt_target(config["Queue"])))
    return rules


def test_notifications_route_models_and_queries_and_never_results(resources: dict[str, Any]) -> None:
    bucket = props(resources, "Bucket")["NotificationConfiguration"]
    assert set(bucket) == {"QueueConfigurations"}, "no Lambda or SNS notifications"
    rules = notification_rules(resources)
    assert rules == {
        ("s3:ObjectCreated:*", "models/", "EnrollQueue"),
        ("s3:ObjectRemoved:*", "models/", "EnrollQueue"),
        ("s3:ObjectCreated:*", "queries/", "RecognizeQueue"),
    }
    for _, prefix, _ in rules:  # results/ matches no rule: writing a result cannot loop
        assert prefix and not "results/x".startswith(prefix) and not prefix.startswith("results/")


def test_queue_policies_admit_only_this_bucket(resources: dict[str, Any]) -> None:
    bucket_name = props(resources, "Bucket")["BucketName"]
    policies = {lid: r["Properties"] for lid, r in resources.items() if r["Type"] == "AWS::SQS::QueuePolicy"}
    covered = {}
    for lid, policy in policies.items():
        (statement,) = policy["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        source = statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
        # The ARN is built from the bucket's name expression (no !Ref Bucket: circular).
        assert source == ["arn:${AWS::Partition}:s3:::${Name}", {"Name": bucket_name}]
        assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
        (queue,) = policy["Queues"]
        covered[ref_target(queue)] = lid
        assert getatt_target(statement["Resource"]) == ref_target(queue)
    assert set(covered) == NOTIFIED
    # S3 checks it may send to the queues when the notification configuration is set.
    assert set(resources["Bucket"]["DependsOn"]) == set(covered.values())


# --- Storage ---------------------------------------------------------------------------------


def test_bucket_is_private_encrypted_tls_only_with_expiring_queries_and_results(resources: dict[str, Any]) -> None:
    bucket = props(resources, "Bucket")
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    (sse,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    expiring = {
        rule["Prefix"]: rule["ExpirationInDays"]
        for rule in bucket["LifecycleConfiguration"]["Rules"]
        if "ExpirationInDays" in rule
    }
    assert expiring == {"queries/": {"Ref": "RetentionDays"}, "results/": {"Ref": "RetentionDays"}, "work/": 1}

    policy = props(resources, "BucketPolicy")
    assert policy["Bucket"] == {"Ref": "Bucket"}
    (deny,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Resource"] == [{"Fn::GetAtt": ["Bucket", "Arn"]}, {"Fn::Sub": "${Bucket.Arn}/*"}]


def test_tables_match_the_architecture(resources: dict[str, Any]) -> None:
    def keys(table: str) -> dict[str, tuple[str, str]]:
        p = props(resources, table)
        types = {a["AttributeName"]: a["AttributeType"] for a in p["AttributeDefinitions"]}
        return {k["KeyType"]: (k["AttributeName"], types[k["AttributeName"]]) for k in p["KeySchema"]}

    assert keys("JobsTable") == {"HASH": ("job_id", "S")}
    assert keys("GalleryTable") == {"HASH": ("person", "S"), "RANGE": ("image_key", "S")}
    for table in ("JobsTable", "GalleryTable"):
        p = props(resources, table)
        assert p["BillingMode"] == "PAY_PER_REQUEST"
        assert p["SSESpecification"] == {"SSEEnabled": True}
        assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props(resources, "JobsTable")["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert "TimeToLiveSpecification" not in props(resources, "GalleryTable")
    # The person index: entries by person or cluster, newest first (sk starts with the time);
    # no PITR (a forgotten person's appearances must not stay restorable), TTL with the results.
    assert keys("PeopleIndexTable") == {"HASH": ("pk", "S"), "RANGE": ("sk", "S")}
    index = props(resources, "PeopleIndexTable")
    assert index["BillingMode"] == "PAY_PER_REQUEST" and index["SSESpecification"] == {"SSEEnabled": True}
    assert "PointInTimeRecoverySpecification" not in index
    assert index["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert resources["PeopleIndexTable"]["DeletionPolicy"] == "Delete"


# --- Functions -------------------------------------------------------------------------------


def test_functions_run_the_handlers_from_src(template: dict[str, Any], resources: dict[str, Any]) -> None:
    common = template["Globals"]["Function"]
    assert common["Runtime"] == "python3.12"
    assert common["Architectures"] == ["x86_64"]
    assert common["CodeUri"] == "src/"
    handlers = {"EnrollFunction": "handlers.enroll.handler", "RecognizeFunction": "handlers.recognize.handler",
                "VideoFunction": "handlers.video.handler"}
    params = template["Parameters"]
    for function, handler in handlers.items():
        assert resources[function]["Metadata"] == {"BuildMethod": "makefile"}
        fn = props(resources, function)
        assert fn["Handler"] == handler
        module = ROOT / "src" / (handler.rsplit(".", 1)[0].replace(".", "/") + ".py")
        assert module.is_file(), module
        for setting in ("MemorySize", "Timeout"):
            assert ref_target(fn[setting]) in params, (function, setting)


def test_environment_is_wired_to_parameters_with_the_engine_defaults(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert set(env) == {
        "JOBS_TABLE", "GALLERY_TABLE", "LAMBDAFACE_THRESHOLD", "LAMBDAFACE_REVIEW_BAND", "LAMBDAFACE_DETECTOR",
        "LAMBDAFACE_ENROLL_JITTERS", "LAMBDAFACE_MAX_BYTES", "LAMBDAFACE_MAX_PIXELS",
        "MAX_RECEIVE_COUNT", "JOB_TTL_DAYS", "POWERTOOLS_SERVICE_NAME", "LOG_LEVEL",
        "UNKNOWNS_TABLE", "LAMBDAFACE_REMEMBER_UNKNOWNS", "LAMBDAFACE_UNKNOWN_RETENTION_DAYS",
        "LAMBDAFACE_UNKNOWN_THRESHOLD", "PEOPLE_INDEX_TABLE", "LAMBDAFACE_RETENTION_DAYS", "CORRECTIONS_TABLE",
    }
    assert env["JOBS_TABLE"] == {"Ref": "JobsTable"} and env["GALLERY_TABLE"] == {"Ref": "GalleryTable"}
    defaults = parameter_defaults(template)
    value = {name: defaults[ref_target(ref)] for name, ref in env.items() if "TABLE" not in name}
    # A deployment with default parameters behaves like the engine's defaults (no silent drift).
    engine, pipeline = EngineConfig(), PipelineConfig()
    assert float(value["LAMBDAFACE_THRESHOLD"]) == engine.threshold
    assert float(value["LAMBDAFACE_REVIEW_BAND"]) == engine.review_band
    assert value["LAMBDAFACE_DETECTOR"] == engine.detector
    assert int(value["LAMBDAFACE_ENROLL_JITTERS"]) == engine.enroll_jitters
    assert int(value["LAMBDAFACE_MAX_BYTES"]) == engine.max_bytes
    assert int(value["LAMBDAFACE_MAX_PIXELS"]) == engine.max_pixels
    assert int(value["MAX_RECEIVE_COUNT"]) == pipeline.max_receive_count
    assert int(value["JOB_TTL_DAYS"]) == pipeline.job_ttl_days
    assert value["POWERTOOLS_SERVICE_NAME"] == "lambdaface"
    assert env["UNKNOWNS_TABLE"] == {"Ref": "UnknownsTable"}
    assert value["LAMBDAFACE_REMEMBER_UNKNOWNS"] == str(pipeline.remember_unknowns).lower() == "false"  # opt-in
    assert int(value["LAMBDAFACE_UNKNOWN_RETENTION_DAYS"]) == pipeline.unknown_retention_days
    assert float(value["LAMBDAFACE_UNKNOWN_THRESHOLD"]) == pipeline.unknown_threshold
    assert env["PEOPLE_INDEX_TABLE"] == {"Ref": "PeopleIndexTable"}
    assert env["LAMBDAFACE_RETENTION_DAYS"] == {"Ref": "RetentionDays"}  # the index's entries expire with the results
    assert int(value["LAMBDAFACE_RETENTION_DAYS"]) == pipeline.retention_days
    assert env["CORRECTIONS_TABLE"] == {"Ref": "CorrectionsTable"}


def test_video_settings_are_parameters_with_the_engine_defaults(template: dict[str, Any], resources: dict[str, Any]) -> None:
    """Segments, sampling and the limits are template parameters; deployed defaults = VideoConfig's."""
    queue_url = {"Ref": "VideoQueue"}
    assert props(resources, "RecognizeFunction")["Environment"]["Variables"] == {
        "VIDEO_QUEUE_URL": queue_url, "LAMBDAFACE_ANNOTATE": {"Ref": "AnnotatedImages"},
        "LAMBDAFACE_ONE_FACE_PER_PERSON": {"Ref": "OneFacePerPerson"},
    }
    assert parameter_defaults(template)["AnnotatedImages"] == str(PipelineConfig().annotate).lower()
    # One face per person per photo or frame: on by default, as the engine's default.
    assert parameter_defaults(template)["OneFacePerPerson"] == str(EngineConfig().one_face_per_person).lower() == "true"
    assert props(resources, "EnrollFunction")["Environment"]["Variables"] == {"ENROLL_QUEUE_URL": {"Ref": "EnrollQueue"}}
    env = props(resources, "VideoFunction")["Environment"]["Variables"]
    assert env.pop("VIDEO_QUEUE_URL") == queue_url
    params = {name: ref_target(ref) for name, ref in env.items()}
    assert params == {
        "LAMBDAFACE_SEGMENT_S": "SegmentSeconds", "LAMBDAFACE_SAMPLE_FPS": "SampleFps",
        "LAMBDAFACE_VIDEO_DETECTOR": "VideoDetector", "LAMBDAFACE_VIDEO_MAX_BYTES": "VideoMaxBytes",
        "LAMBDAFACE_VIDEO_MAX_DURATION_S": "VideoMaxDurationSeconds", "LAMBDAFACE_ONE_FACE_PER_PERSON": "OneFacePerPerson",
    }
    defaults, video = parameter_defaults(template), VideoConfig()
    assert float(defaults["SegmentSeconds"]) == video.segment_s and float(defaults["SampleFps"]) == video.sample_fps
    assert defaults["VideoDetector"] == video.detector
    assert int(defaults["VideoMaxBytes"]) == video.max_bytes
    assert float(defaults["VideoMaxDurationSeconds"]) == video.max_duration_s
    # Segments read their part of the video by ranged GETs: /tmp need not hold it (Lambda's free 512 MB).
    storage = props(resources, "VideoFunction")["EphemeralStorage"]["Size"]
    assert int(defaults[ref_target(storage)]) == 512 < video.max_bytes / 10**6


def test_outputs_name_the_bucket_queues_and_tables(template: dict[str, Any]) -> None:
    outputs = {name: out["Value"] for name, out in template["Outputs"].items()}
    for name, lid in {
        "BucketName": "Bucket", "EnrollQueueUrl": "EnrollQueue", "RecognizeQueueUrl": "RecognizeQueue",
        "VideoQueueUrl": "VideoQueue", "VideoFunctionName": "VideoFunction",
        "JobsTableName": "JobsTable", "GalleryTableName": "GalleryTable", "UnknownsTableName": "UnknownsTable",
        "UnknownsSweepFunctionName": "UnknownsSweepFunction", "PeopleIndexTableName": "PeopleIndexTable",
    }.items():
        assert outputs[name] == {"Ref": lid}


# --- Sample events ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "event_name", "key", "queue"),
    [
        ("enroll.json", "ObjectCreated:Put", "models/john/john0.jpg", "EnrollQueue"),
        ("delete.json", "ObjectRemoved:Delete", "models/john/john0.jpg", "EnrollQueue"),
        ("recognize.json", "ObjectCreated:Put", "queries/john at the café.jpg", "RecognizeQueue"),
    ],
)
def test_sample_events_are_what_the_queues_deliver(resources: dict[str, Any], name: str, event_name: str, key: str, queue: str) -> None:
    (message,) = json.loads((EVENTS / name).read_text())["Records"]
    assert message["eventSource"] == "aws:sqs"
    assert message["eventSourceARN"].rsplit(":", 1)[1].split("-")[1] == queue
    assert message["md5OfBody"] == hashlib.md5(message["body"].encode()).hexdigest()
    assert message["attributes"]["ApproximateReceiveCount"] == "1"
    (record,) = json.loads(message["body"])["Records"]
    assert record["eventSource"] == "aws:s3" and record["eventName"] == event_name
    assert unquote_plus(record["s3"]["object"]["key"]) == key
    # The notification rules would route this event to that queue.
    routed = {
        q for event, prefix, q in notification_rules(resources)
        if key.startswith(prefix) and event.split(":")[1] == event_name.split(":")[0]
    }
    assert routed == {queue}


def test_sample_s3_test_event() -> None:
    (message,) = json.loads((EVENTS / "s3-test-event.json").read_text())["Records"]
    assert message["md5OfBody"] == hashlib.md5(message["body"].encode()).hexdigest()
    assert json.loads(message["body"])["Event"] == "s3:TestEvent"


# --- The loader ------------------------------------------------------------------------------


def test_load_template_expands_short_form_tags(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "A: !Ref Thing\nB: !GetAtt Queue.Arn\nC: !Sub ['${X}-y', {X: !Ref Z}]\n"
        "D: !If [Cond, !Sub '${AWS::StackName}', !GetAZs '']\nE: !Not [!Equals [!Ref P, '']]\n"
    )
    assert load_template(path) == {
        "A": {"Ref": "Thing"},
        "B": {"Fn::GetAtt": ["Queue", "Arn"]},
        "C": {"Fn::Sub": ["${X}-y", {"X": {"Ref": "Z"}}]},
        "D": {"Fn::If": ["Cond", {"Fn::Sub": "${AWS::StackName}"}, {"Fn::GetAZs": ""}]},
        "E": {"Fn::Not": [{"Fn::Equals": [{"Ref": "P"}, ""]}]},
    }


# --- Reconciliation (issue 20): the gallery against models/, hourly -----------------------------


def test_the_reconciler_runs_hourly_and_only_reads_lists_and_sends_removals(template: dict[str, Any],
                                                                            resources: dict[str, Any]) -> None:
    fn = props(resources, "ReconcileFunction")
    assert resources["ReconcileFunction"]["Metadata"] == {"BuildMethod": "makefile"}
    assert fn["Handler"] == "handlers.reconcile.handler" and (ROOT / "src/handlers/reconcile.py").is_file()
    assert fn["Environment"]["Variables"] == {"LAMBDAFACE_BUCKET": {"Ref": "Bucket"}, "ENROLL_QUEUE_URL": {"Ref": "EnrollQueue"}}
    (event,) = fn["Events"].values()
    assert event["Type"] == "Schedule" and event["Properties"]["Schedule"] == "rate(1 hour)"
    assert "Policies" not in fn and getatt_target(fn["Role"]) == "ReconcileFunctionRole"
    assert template["Outputs"]["ReconcileFunctionName"]["Value"] == {"Ref": "ReconcileFunction"}

    def arn(lid: str) -> str:
        return json.dumps({"Fn::GetAtt": [lid, "Arn"]}, sort_keys=True)

    bucket = arn("Bucket")
    results = json.dumps({"Fn::Sub": "${Bucket.Arn}/results/models/*"}, sort_keys=True)
    # never an image (the existence checks are listings), never a gallery write: the forget job does it
    assert grants(resources, "ReconcileFunction", "s3") == {"s3:ListBucket": {bucket}, "s3:GetObject": {results}}
    listings = [s for s in role_statements(resources, "ReconcileFunction") if s["Action"] == "s3:ListBucket"]
    assert {s["Condition"]["StringLike"]["s3:prefix"] for s in listings} == {"models/*", "results/models/*"}
    assert grants(resources, "ReconcileFunction", "dynamodb") == {
        "dynamodb:Scan": {arn("GalleryTable")}, "dynamodb:GetItem": {arn("GalleryTable")}}
    assert grants(resources, "ReconcileFunction", "sqs") == {"sqs:SendMessage": {arn("EnrollQueue")}}
    assert grants(resources, "ReconcileFunction", "logs") == {
        a: {arn("ReconcileLogGroup")} for a in ("logs:CreateLogStream", "logs:PutLogEvents")}
    services = {a.split(":")[0] for s in role_statements(resources, "ReconcileFunction") for a in as_list(s["Action"])}
    assert services == {"logs", "sqs", "s3", "dynamodb"}
    for statement in role_statements(resources, "ReconcileFunction"):
        assert statement.get("Sid") and "*" not in json.dumps(statement["Action"])
    makefile = (ROOT / "src/Makefile").read_text()
    assert re.search(r"^build-\S+(?: build-\S+)* build-ReconcileFunction(?: build-\S+)*: package$", makefile, re.M)


def test_forget_waits_past_a_retry(resources: dict[str, Any]) -> None:
    """`lambdaface forget` waits longer than a failed attempt's message takes to come back."""
    from lambdaface import cli
    from shared.config import FUNCTION_TIMEOUT_MAX_S, QUEUE_VISIBILITY_S

    assert props(resources, "EnrollQueue")["VisibilityTimeout"] == QUEUE_VISIBILITY_S
    args = cli.build_parser().parse_args(["forget", "john", "--bucket", "b"])
    assert args.timeout > QUEUE_VISIBILITY_S + FUNCTION_TIMEOUT_MAX_S
