"""template.yaml for job events (issue 22): the roles that finish jobs may put events on the default
bus and nothing else of EventBridge; the optional notifications (off by default): a topic under a
KMS key of the stack's own, two rules whose patterns match the events the pipeline puts (checked
by moto's EventBridge on real job_events details), and a topic policy for those rules only."""
from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
from support.aws import client
from support.moto import moto_server
from support.template import as_list, role_statements

from lambdaface.template import parameter_defaults
from shared.pipeline import job_events

FINISHERS = ("EnrollFunction", "RecognizeFunction", "VideoFunction", "ApiFunction")  # the API: store=true's job
DEFAULT_BUS = {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default"}
NOTIFICATIONS = ("NotificationKey", "NotificationTopic", "NotificationTopicPolicy", "UnknownFaceRule", "PeopleSeenRule")


def events_grants(resources: dict[str, Any], function: str) -> list[tuple[str, Any]]:
    return [(action, resource) for s in role_statements(resources, function) for action in as_list(s["Action"])
            if action.startswith("events:") for resource in as_list(s["Resource"])]


def test_the_roles_that_finish_jobs_only_put_events_on_the_default_bus(resources: dict[str, Any]) -> None:
    for function in FINISHERS:
        assert events_grants(resources, function) == [("events:PutEvents", DEFAULT_BUS)], function
    for function in ("UnknownsSweepFunction", "ReconcileFunction"):
        assert events_grants(resources, function) == [], function


def test_notifications_are_off_by_default(template: dict[str, Any], resources: dict[str, Any]) -> None:
    defaults = parameter_defaults(template)
    assert defaults["Notifications"] == "false" and defaults["NotifyPeople"] == ""
    assert template["Conditions"]["NotificationsOn"] == {"Fn::Equals": [{"Ref": "Notifications"}, "true"]}
    for logical_id in NOTIFICATIONS:
        assert resources[logical_id]["Condition"] in ("NotificationsOn", "NotifyPeopleOn"), logical_id
    assert resources["PeopleSeenRule"]["Condition"] == "NotifyPeopleOn"
    assert template["Outputs"]["NotificationTopicArn"]["Condition"] == "NotificationsOn"


def test_the_topic_is_encrypted_and_only_the_rules_publish(resources: dict[str, Any]) -> None:
    topic = resources["NotificationTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "NotificationKey"}
    key = resources["NotificationKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    eventbridge = [s for s in key["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": "events.amazonaws.com"}]
    assert [sorted(as_list(s["Action"])) for s in eventbridge] == [["kms:Decrypt", "kms:GenerateDataKey"]]
    [statement] = resources["NotificationTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"} and statement["Action"] == "sns:Publish"
    assert statement["Resource"] == {"Ref": "NotificationTopic"}
    sources = statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::If"]
    assert sources == ["NotifyPeopleOn", [{"Fn::GetAtt": ["UnknownFaceRule", "Arn"]}, {"Fn::GetAtt": ["PeopleSeenRule", "Arn"]}],
                       [{"Fn::GetAtt": ["UnknownFaceRule", "Arn"]}]]
    for rule in ("UnknownFaceRule", "PeopleSeenRule"):
        [target] = resources[rule]["Properties"]["Targets"]
        assert target["Arn"] == {"Ref": "NotificationTopic"}
        assert "EventBusName" not in resources[rule]["Properties"]  # the default bus


def _pattern(resources: dict[str, Any], rule: str, people: list[str]) -> dict[str, Any]:
    """The rule's pattern with NotifyPeople set to `people`."""
    pattern = json.loads(json.dumps(resources[rule]["Properties"]["EventPattern"]))
    if pattern["detail"].get("people") == {"Ref": "NotifyPeople"}:
        pattern["detail"]["people"] = people
    return pattern


DOCUMENTS = {
    "obama-photo": {"job_id": "1", "kind": "recognize", "status": "succeeded", "source": "queries/a.jpg", "people": ["obama"],
                    "faces": [{"person": "obama"}]},
    "stranger-photo": {"job_id": "2", "kind": "recognize", "status": "succeeded", "source": "queries/b.jpg", "people": [],
                       "faces": [{"person": None, "cluster": "u-1"}]},
    "both-video": {"job_id": "3", "kind": "recognize", "media": "video", "status": "succeeded", "source": "queries/c.mp4",
                   "people": ["biden"], "appearances": [{"person": "biden"}, {"person": None}]},
    "obama-enrolled": {"job_id": "4", "kind": "enroll", "status": "succeeded", "source": "models/obama/o.jpg", "person": "obama"},
    "rose-photo": {"job_id": "5", "kind": "recognize", "status": "succeeded", "source": "queries/d.jpg", "people": ["rose"],
                   "faces": [{"person": "rose"}]},
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.mark.parametrize("rule, expected", [("UnknownFaceRule", {"stranger-photo", "both-video"}),
                                            ("PeopleSeenRule", {"obama-photo", "both-video"})])
def test_the_rules_match_the_events_the_pipeline_puts(resources: dict[str, Any], endpoint: str, rule: str,
                                                      expected: set[str]) -> None:
    events, sqs = client(endpoint, "events"), client(endpoint, "sqs")
    url = sqs.create_queue(QueueName=f"rule-{rule}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=rule, EventPattern=json.dumps(_pattern(resources, rule, ["obama", "biden"])))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
    for name, document in DOCUMENTS.items():
        detail = job_events.detail(document, "bucket")
        events.put_events(Entries=[{"Source": "lambdaface", "DetailType": job_events.detail_type(detail),
                                    "Detail": json.dumps({**detail, "name": name})}])
    matched = set()
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in got:
            matched.add(json.loads(m["Body"])["detail"]["name"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert matched == expected
