"""template.yaml for unknown faces (issue 15): the opt-in parameters, the unknowns table (TTL, no
backups, deleted with the stack), the settings in every function's environment, least-privilege
access for recognition and video, the hourly sweep function with its own role and log group, and
(issue 20) the alarms on the sweep's metrics."""
from __future__ import annotations

import json
import re
import subprocess
from typing import Any

from support import ROOT
from support.template import as_list, role_of, role_statements
from test_template import TRANSLATE, sam_env, sam_tool
from test_template_dashboard import _check_own_metric

from lambdaface.template import TEMPLATE, parameter_defaults
from shared.config import PipelineConfig
from shared.pipeline import metrics

SWEEP = "UnknownsSweepFunction"
REMEMBERING = ("RecognizeFunction", "VideoFunction")  # the functions that meet unknown faces
TABLE_ACTIONS = {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                 "dynamodb:ConditionCheckItem", "dynamodb:BatchWriteItem", "dynamodb:TransactWriteItems"}


def arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def grants(resources: dict[str, Any], function: str) -> dict[str, list[Any]]:
    """{action: [resource, ...]} of a function's role."""
    out: dict[str, list[Any]] = {}
    for statement in role_statements(resources, function):
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            out.setdefault(action, []).extend(as_list(statement["Resource"]))
    return out


def block(logical_id: str) -> str:
    """The template's text of one resource (its comments included)."""
    text = TEMPLATE.read_text()
    match = re.search(rf"^  {logical_id}:\n(.*?)(?=^  \S|^\S)", text, re.M | re.S)
    assert match, logical_id
    return match.group(1)


def test_the_parameters_are_opt_in_with_the_pipelines_defaults(template: dict[str, Any]) -> None:
    params, pipeline = template["Parameters"], PipelineConfig()
    remember = params["RememberUnknowns"]
    assert (remember["Type"], remember["AllowedValues"], remember["Default"]) == ("String", ["true", "false"], "false")
    assert "forget" in remember["Description"] and "group" in remember["Description"]
    days = params["UnknownRetentionDays"]
    assert (days["Type"], days["Default"], days["MinValue"], days["MaxValue"]) == ("Number", 30, 1, 3650)
    threshold = params["UnknownThreshold"]
    assert threshold["Type"] == "String" and threshold["AllowedPattern"] == params["Threshold"]["AllowedPattern"]
    defaults = parameter_defaults(template)
    assert defaults["RememberUnknowns"] == str(pipeline.remember_unknowns).lower()
    assert int(defaults["UnknownRetentionDays"]) == pipeline.unknown_retention_days
    assert float(defaults["UnknownThreshold"]) == pipeline.unknown_threshold
    assert re.fullmatch(threshold["AllowedPattern"], defaults["UnknownThreshold"])


def test_the_table_expires_faces_keeps_no_backups_and_goes_with_the_stack(resources: dict[str, Any]) -> None:
    table = resources["UnknownsTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Delete", "Delete")
    props, gallery = table["Properties"], resources["GalleryTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert (props["KeySchema"], props["AttributeDefinitions"]) == (gallery["KeySchema"], gallery["AttributeDefinitions"])
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert "PointInTimeRecoverySpecification" not in props  # forgotten faces must not live on in backups
    skips = dict(re.findall(r"# checkov:skip=(CKV_AWS_\d+):(.+)", block("UnknownsTable")))
    assert set(skips) == {"CKV_AWS_28", "CKV_AWS_119"} and "backups" in skips["CKV_AWS_28"]


def test_every_function_gets_the_table_and_the_settings(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert {name: env[name] for name in env if "UNKNOWN" in name} == {
        "UNKNOWNS_TABLE": {"Ref": "UnknownsTable"},
        "LAMBDAFACE_REMEMBER_UNKNOWNS": {"Ref": "RememberUnknowns"},
        "LAMBDAFACE_UNKNOWN_RETENTION_DAYS": {"Ref": "UnknownRetentionDays"},
        "LAMBDAFACE_UNKNOWN_THRESHOLD": {"Ref": "UnknownThreshold"},
    }
    assert template["Outputs"]["UnknownsTableName"]["Value"] == {"Ref": "UnknownsTable"}


def test_recognition_may_remember_unknown_faces_and_write_their_snapshots(resources: dict[str, Any]) -> None:
    snapshots = {"Fn::Sub": "${Bucket.Arn}/unknowns/snapshots/*"}
    for function in REMEMBERING:
        granted = grants(resources, function)
        on_table = {action for action, targets in granted.items() if arn("UnknownsTable") in targets}
        assert on_table == TABLE_ACTIONS, function  # no Scan: recognition reads by key
        on_snapshots = {action for action, targets in granted.items() if snapshots in targets}
        assert on_snapshots == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}, function
        (listing,) = [s for s in role_statements(resources, function)
                      if s["Action"] == "s3:ListBucket" and "unknowns" in json.dumps(s)]
        assert listing["Resource"] == arn("Bucket")
        assert listing["Condition"] == {"StringLike": {"s3:prefix": "unknowns/snapshots/*"}}
        assert all(s.get("Sid") for s in role_statements(resources, function)), function
    # enrolling never touches unknown faces
    assert "UnknownsTable" not in json.dumps(role_statements(resources, "EnrollFunction"))
    assert "unknowns/" not in json.dumps(role_statements(resources, "EnrollFunction"))


def test_the_sweep_runs_hourly_from_the_common_package(template: dict[str, Any], resources: dict[str, Any]) -> None:
    sweep = resources[SWEEP]
    assert sweep["Type"] == "AWS::Serverless::Function" and sweep["Metadata"] == {"BuildMethod": "makefile"}
    props = sweep["Properties"]
    assert props["Handler"] == "handlers.unknowns_sweep.handler"
    assert (ROOT / "src/handlers/unknowns_sweep.py").is_file()
    assert (props["Timeout"], props["MemorySize"]) == (900, 3008)
    assert props["Environment"]["Variables"] == {"LAMBDAFACE_BUCKET": {"Ref": "Bucket"}}
    (event,) = props["Events"].values()
    assert event["Type"] == "Schedule" and event["Properties"]["Schedule"] == "rate(1 hour)"
    assert "Policies" not in props and role_of(resources, SWEEP) == "UnknownsSweepFunctionRole"
    log_group = resources[props["LoggingConfig"]["LogGroup"]["Ref"]]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert template["Outputs"]["UnknownsSweepFunctionName"]["Value"] == {"Ref": SWEEP}
    # src/Makefile builds it as the enroll and recognize functions' package
    makefile = (ROOT / "src/Makefile").read_text()
    (targets,) = re.findall(r"^(build-\S+(?: build-\S+)*): package$", makefile, re.M)
    assert set(targets.split()) == {"build-EnrollFunction", "build-RecognizeFunction", "build-UnknownsSweepFunction",
                                    "build-ReconcileFunction", "build-ApiFunction"}  # the reconciler and the API too
    (phony,) = re.findall(r"^\.PHONY: (.*)$", makefile, re.M)
    assert "build-UnknownsSweepFunction" in phony.split()
    skips = {check for check, _ in re.findall(r"# checkov:skip=(CKV_AWS_\d+):(.{40,})", block(SWEEP))}
    assert skips == {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"}


def test_the_sweeps_role_is_least_privilege(resources: dict[str, Any]) -> None:
    granted = grants(resources, SWEEP)
    assert {a for a, targets in granted.items() if arn("UnknownsTable") in targets} == TABLE_ACTIONS | {"dynamodb:Scan"}
    snapshots = {"Fn::Sub": "${Bucket.Arn}/unknowns/snapshots/*"}
    assert {a: t for a, t in granted.items() if a.startswith("s3:")} == {
        "s3:GetObject": [snapshots], "s3:PutObject": [snapshots], "s3:DeleteObject": [snapshots],
        "s3:AbortMultipartUpload": [snapshots], "s3:ListBucket": [arn("Bucket")],
    }
    (listing,) = [s for s in role_statements(resources, SWEEP) if s["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "unknowns/snapshots/*"}}
    assert {a: t for a, t in granted.items() if a.startswith("logs:")} == {
        "logs:CreateLogStream": [arn("UnknownsSweepLogGroup")], "logs:PutLogEvents": [arn("UnknownsSweepLogGroup")],
    }
    services = {action.split(":")[0] for action in granted}
    assert services == {"dynamodb", "s3", "logs"}  # no queue, and no other table but the person index:
    # a regroup moves each retired cluster's index entries to the survivor (pipeline/people_index.py),
    # and reads the `not <cluster>` corrections (one Query) to keep those faces apart
    index = {"dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    assert {a for a, targets in granted.items() if arn("PeopleIndexTable") in targets} == index
    assert {a for a, targets in granted.items() if arn("CorrectionsTable") in targets} == {"dynamodb:Query"}
    others = (arn("PeopleIndexTable"), arn("CorrectionsTable"))
    assert all([t for t in targets if t not in others] == [arn("UnknownsTable")] * (len(targets) - sum(
        t in others for t in targets)) for a, targets in granted.items() if a.startswith("dynamodb:"))
    for action, targets in granted.items():
        assert "*" not in action and "*" not in targets, action
    assert all(s.get("Sid") for s in role_statements(resources, SWEEP))


def test_sam_translates_the_schedule_into_an_hourly_rule_without_a_role() -> None:
    run = subprocess.run([sam_tool("python"), "-c", TRANSLATE, str(TEMPLATE)], capture_output=True, text=True,
                         env=sam_env(), timeout=300)
    assert run.returncode == 0, run.stderr
    translated = json.loads(run.stdout)["Resources"]
    rules = {lid: r["Properties"] for lid, r in translated.items() if r["Type"] == "AWS::Events::Rule"
             and "ScheduleExpression" in r["Properties"]}  # the notifications' rules: test_template_events.py
    assert sorted(rules) == sorted([f"{SWEEP}Hourly", "ReconcileFunctionHourly"])  # the reconciler: test_template.py
    rule = rules[f"{SWEEP}Hourly"]
    assert rule["ScheduleExpression"] == "rate(1 hour)"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [SWEEP, "Arn"]}
    permissions = [r["Properties"] for r in translated.values() if r["Type"] == "AWS::Lambda::Permission"]
    assert [p["Principal"] for p in permissions] == ["events.amazonaws.com"] * 2
    assert translated[SWEEP]["Properties"]["Role"] == {"Fn::GetAtt": ["UnknownsSweepFunctionRole", "Arn"]}


def own_metric(metric: dict[str, Any]) -> None:
    """A metric of the sweep's EMF (shared/pipeline/metrics.py), by the stack's service name."""
    assert metric["Namespace"] == metrics.NAMESPACE
    dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
    _check_own_metric(metric["MetricName"], dims, lambda value: (value["Ref"], None))


def test_an_alarm_fires_when_the_sweep_has_not_finished_for_three_runs(resources: dict[str, Any]) -> None:
    props = resources["UnknownsSweepIncompleteAlarm"]["Properties"]
    own_metric(props)
    assert props["MetricName"] == metrics.SWEEP_INCOMPLETE  # 1 per run out of time, 0 per finished run
    assert props["Statistic"] == "Minimum" and props["Period"] == 3600  # an hour breaches when no run in it finished
    assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (3, 3)
    assert (props["Threshold"], props["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert props["TreatMissingData"] == "breaching"  # no run at all is no finished run
    schedule = resources[SWEEP]["Properties"]["Events"]["Hourly"]["Properties"]["Schedule"]
    assert schedule == "rate(1 hour)"  # one run (one data point) per period


def test_an_alarm_fires_when_a_face_is_a_day_past_its_retention(resources: dict[str, Any]) -> None:
    props = resources["UnknownFaceRetentionAlarm"]["Properties"]
    age, overdue = props["Metrics"]
    own_metric(age["MetricStat"]["Metric"])
    assert age["MetricStat"]["Metric"]["MetricName"] == metrics.OLDEST_UNKNOWN_AGE and age["ReturnData"] is False
    assert (age["MetricStat"]["Stat"], age["MetricStat"]["Period"]) == ("Maximum", 3600)
    assert overdue["ReturnData"] is True
    assert overdue["Expression"] == {"Fn::Sub": f"{age['Id']} - ${{UnknownRetentionDays}} * 86400"}
    assert (props["Threshold"], props["ComparisonOperator"]) == (86400, "GreaterThanThreshold")  # a day past it
    assert props["EvaluationPeriods"] == 1 and props["TreatMissingData"] == "notBreaching"


def test_the_table_and_docs_say_how_a_face_expires(template: dict[str, Any]) -> None:
    """The sweep forgets at the retention; the TTL (shared/aws/unknowns_table.py) is a day later."""
    from shared.aws.unknowns_table import TTL_MARGIN_S

    assert TTL_MARGIN_S == 86400
    assert "TTL one day later" in template["Parameters"]["UnknownRetentionDays"]["Description"]
    assert "one day" in TEMPLATE.read_text().split("  UnknownsTable:")[0].rsplit("# Unknown faces", 1)[1]
