"""template.yaml's dashboard and alarms reference only resources that exist in the template and
metrics that exist: AWS's own (by name, for the namespace and dimension) or the ones the handlers
emit (shared/pipeline/metrics.py's catalogue: names, dimension sets, kind and status values)."""
from __future__ import annotations

import json
import re
from typing import Any

from shared.pipeline import metrics

# AWS's metrics the dashboard and alarms may use: namespace -> (dimension, resource type, attribute) and names.
AWS_METRICS = {
    "AWS/Lambda": ({"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"},
                   "FunctionName", "AWS::Serverless::Function", None),
    "AWS/SQS": ({"ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed", "ApproximateAgeOfOldestMessage", "NumberOfMessagesSent",
                 "NumberOfMessagesReceived", "NumberOfMessagesDeleted"}, "QueueName", "AWS::SQS::Queue", "QueueName"),
}
PSEUDO = {"AWS::Region", "AWS::StackName", "AWS::AccountId", "AWS::Partition"}


def _sub_reference(template: dict[str, Any], name: str) -> tuple[str, str | None]:
    """(logical id or parameter, attribute) of a `${...}` in a Fn::Sub; it must exist."""
    logical_id, _, attribute = name.partition(".")
    assert name in PSEUDO or logical_id in template["Resources"] or logical_id in template["Parameters"], name
    return logical_id, attribute or None


def _dashboard(template: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, str | None]]]:
    """The dashboard body, parsed, with each `${...}` replaced by a marker; {marker: reference}."""
    [(logical_id, dashboard)] = [(k, r) for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(body, str), logical_id
    refs: dict[str, tuple[str, str | None]] = {}

    def mark(match: re.Match[str]) -> str:
        marker = f"@ref{len(refs)}@"
        refs[marker] = _sub_reference(template, match[1])
        return marker

    return json.loads(re.sub(r"\$\{([^}!]+)\}", mark, body)), refs


def _check_aws_metric(template: dict[str, Any], namespace: str, name: str, dims: dict[str, Any],
                      resolve: Any) -> None:
    names, dimension, resource_type, attribute = AWS_METRICS[namespace]
    assert name in names, (namespace, name)
    assert list(dims) == [dimension], (namespace, name, dims)
    logical_id, attr = resolve(dims[dimension])
    assert template["Resources"][logical_id]["Type"] == resource_type, (name, logical_id)
    assert attr == attribute, (name, logical_id, attr)


def _check_own_metric(name: str, dims: dict[str, Any], resolve: Any) -> None:
    assert name in metrics.CATALOGUE, name
    assert tuple(sorted(dims)) in {tuple(sorted(s)) for s in metrics.CATALOGUE[name]}, (name, dims)
    assert resolve(dims["service"]) == ("ServiceName", None), dims  # the Powertools service name parameter
    assert dims.get("kind", "enroll") in metrics.KINDS and dims.get("status", "failed") in metrics.STATUSES, dims


def test_the_dashboard_shows_only_metrics_that_exist(template: dict[str, Any]) -> None:
    body, refs = _dashboard(template)

    def resolve(value: str) -> tuple[str, str | None]:
        assert value in refs, value
        return refs[value]

    seen: set[tuple[str, str]] = set()
    searches = 0
    for widget in body["widgets"]:
        props = widget["properties"]
        assert props["region"] in refs and refs[props["region"]] == ("AWS::Region", None)
        for line in props["metrics"]:
            if isinstance(line[0], dict):  # a metric math expression
                expression = line[0]["expression"]
                search = re.fullmatch(r"""SEARCH\('\{(\w+),([\w,]+)\} MetricName="(\w+)" service="(@ref\d+@)"', '\w+', \d+\)""",
                                      expression)
                assert search, expression
                namespace, dimensions, name, service = search.groups()
                assert namespace == metrics.NAMESPACE
                _check_own_metric(name, {d: service for d in dimensions.split(",")}, resolve)
                searches += 1
                continue
            options = line[-1] if isinstance(line[-1], dict) else {}
            parts = line[:-1] if options else line
            namespace, name, *pairs = parts
            assert "." not in parts, "write every metric out in full"
            dims = dict(zip(pairs[::2], pairs[1::2]))
            if namespace == metrics.NAMESPACE:
                _check_own_metric(name, dims, resolve)
            else:
                _check_aws_metric(template, namespace, name, dims, resolve)
            seen.add((namespace, name))
            assert options.get("stat", props.get("stat")) in {"Sum", "Average", "Maximum", "Minimum", "SampleCount", "p50", "p95", "p99"}
    # What the issue asks the dashboard to show.
    for wanted in [("LambdaFace", "Jobs"), ("LambdaFace", "JobDuration"), ("AWS/Lambda", "Duration"),
                   ("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles"), ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
                   ("AWS/SQS", "ApproximateAgeOfOldestMessage")]:
        assert wanted in seen, wanted
    assert searches == 1  # failures by error code
    functions = {v for k, v in refs.items() if template["Resources"].get(v[0], {}).get("Type") == "AWS::Serverless::Function"}
    queues = {v[0] for v in refs.values() if template["Resources"].get(v[0], {}).get("Type") == "AWS::SQS::Queue"}
    assert {f for f, _ in functions} == {"EnrollFunction", "RecognizeFunction", "VideoFunction", "UnknownsSweepFunction",
                                         "ApiFunction"}
    assert queues == {"EnrollQueue", "RecognizeQueue", "VideoQueue", "EnrollDeadLetterQueue",
                      "RecognizeDeadLetterQueue", "VideoDeadLetterQueue"}


def test_the_dashboard_jobs_widget_covers_every_kind_and_status(template: dict[str, Any]) -> None:
    body, _ = _dashboard(template)
    [jobs] = [w for w in body["widgets"] if w["properties"]["title"] == "Jobs by kind and status"]
    pairs = {(m[5], m[7]) for m in jobs["properties"]["metrics"]}
    assert pairs == {(k, s) for k in metrics.KINDS for s in metrics.STATUSES}


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_alarms_watch_queue_age_and_function_errors_of_real_resources(template: dict[str, Any]) -> None:
    alarms = _alarms(template)
    by_metric: dict[tuple[str, str], set[str]] = {}
    for logical_id, props in alarms.items():
        if props.get("Namespace") == metrics.NAMESPACE or "Metrics" in props:
            continue  # the unknown-face sweep's alarms on its own metrics: tests/test_template_unknowns.py
        [dimension] = props["Dimensions"]
        value = dimension["Value"]
        if "Ref" in value:
            target, attribute = value["Ref"], None
        else:
            target, attribute = value["Fn::GetAtt"]
        _check_aws_metric(template, props["Namespace"], props["MetricName"], {dimension["Name"]: "x"},
                          lambda _: (target, attribute))
        assert props["TreatMissingData"] == "notBreaching" and props["EvaluationPeriods"] >= 1, logical_id
        by_metric.setdefault((props["Namespace"], props["MetricName"]), set()).add(target)
    assert by_metric[("AWS/SQS", "ApproximateAgeOfOldestMessage")] == {"EnrollQueue", "RecognizeQueue", "VideoQueue"}
    assert by_metric[("AWS/Lambda", "Errors")] == {"EnrollFunction", "RecognizeFunction", "VideoFunction",
                                                    "UnknownsSweepFunction", "ReconcileFunction", "ApiFunction"}
    assert by_metric[("AWS/Lambda", "Throttles")] == {"ApiFunction"}  # callers get 429 and retry: sustained, it alarms
    assert by_metric[("AWS/SQS", "ApproximateNumberOfMessagesVisible")] == {
        "EnrollDeadLetterQueue", "RecognizeDeadLetterQueue", "VideoDeadLetterQueue"}  # the existing ones, kept


def test_queue_age_alarms_leave_room_for_a_retry(template: dict[str, Any]) -> None:
    """A message that failed once waits a visibility timeout before it is seen again: an age alarm
    below that would fire on every ordinary retry."""
    resources = template["Resources"]
    for props in _alarms(template).values():
        if props.get("MetricName") == "ApproximateAgeOfOldestMessage":
            queue = props["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
            visibility = resources[queue]["Properties"]["VisibilityTimeout"]
            assert isinstance(visibility, int) and props["Threshold"] > visibility, (queue, visibility)
