"""template.yaml's synchronous API: ApiFunction behind a Function URL that takes only SigV4-signed
requests (AWS_IAM), its own least-privilege role (reads the gallery, writes only store=true's
photo), SnapStart and provisioned concurrency as parameters, off by default and never together,
the URL as an output; SAM's translation makes an IAM-authenticated URL and no public permission."""
from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from support.template import as_list, role_of, role_statements
from test_template import TRANSLATE, grants, sam_env, sam_tool

from lambdaface.local.spec import stack_spec
from lambdaface.template import TEMPLATE, load_template, parameter_defaults

API = "ApiFunction"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def test_the_function_url_takes_only_signed_requests(template: dict[str, Any]) -> None:
    props = template["Resources"][API]["Properties"]
    assert props["Handler"] == "handlers.api.handler" and template["Resources"][API]["Metadata"] == {"BuildMethod": "makefile"}
    assert props["FunctionUrlConfig"] == {"AuthType": "AWS_IAM", "InvokeMode": "BUFFERED"}
    assert "Events" not in props  # nothing else invokes it
    assert template["Outputs"]["ApiUrl"]["Value"] == {"Fn::GetAtt": ["ApiFunctionUrl", "FunctionUrl"]}
    assert props["Environment"]["Variables"]["LAMBDAFACE_BUCKET"] == {"Ref": "Bucket"}


def test_the_role_reads_the_gallery_and_writes_only_what_store_needs(template: dict[str, Any]) -> None:
    """Without store=true the function reads the gallery only; with it, the photo and its job's
    outputs under queries/api/ and results/queries/api/, as the recognize function's for uploads."""
    resources = template["Resources"]
    assert role_of(resources, API) == "ApiFunctionRole"
    sub = lambda prefix: json.dumps({"Fn::Sub": "${Bucket.Arn}/" + prefix}, sort_keys=True)  # noqa: E731
    arn = lambda lid: json.dumps({"Fn::GetAtt": [lid, "Arn"]}, sort_keys=True)  # noqa: E731
    unknowns = sub("unknowns/snapshots/*")
    assert grants(resources, API, "s3") == {
        "s3:GetObject": {sub("gallery/snapshots/*"), sub("queries/api/*"), sub("results/queries/api/*"), unknowns},
        "s3:PutObject": {sub("queries/api/*"), sub("results/queries/api/*"), unknowns},
        "s3:ListBucket": {arn("Bucket")},
        "s3:DeleteObject": {unknowns},
        "s3:AbortMultipartUpload": {unknowns},
    }
    listings = [s for s in role_statements(resources, API) if s["Action"] == "s3:ListBucket"]
    assert {s["Condition"]["StringLike"]["s3:prefix"] for s in listings} == {"queries/api/*", "unknowns/snapshots/*"}
    dynamodb = grants(resources, API, "dynamodb")
    assert {a for a, r in dynamodb.items() if arn("GalleryTable") in r} == {"dynamodb:GetItem", "dynamodb:Query"}
    assert {a for a, r in dynamodb.items() if arn("JobsTable") in r} == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert {a for a, r in dynamodb.items() if arn("PeopleIndexTable") in r} == {"dynamodb:GetItem", "dynamodb:PutItem",
                                                                                  "dynamodb:BatchWriteItem"}
    recognize = grants(resources, "RecognizeFunction", "dynamodb")
    unknown_actions = {a for a, r in recognize.items() if arn("UnknownsTable") in r}
    assert {a for a, r in dynamodb.items() if arn("UnknownsTable") in r} == unknown_actions
    assert grants(resources, API, "logs") == {a: {arn("ApiLogGroup")} for a in ("logs:CreateLogStream", "logs:PutLogEvents")}
    services = {a.split(":")[0] for s in role_statements(resources, API) for a in as_list(s["Action"])}
    assert services == {"s3", "dynamodb", "logs", "events"}  # no queue: a video is refused, not planned
    assert all(s["Effect"] == "Allow" for s in role_statements(resources, API))


def test_snapstart_and_provisioned_concurrency_are_parameters_off_by_default(template: dict[str, Any]) -> None:
    defaults = parameter_defaults(template)
    assert (defaults["ApiSnapStart"], defaults["ApiProvisionedConcurrency"], defaults["ApiReservedConcurrency"]) == ("false", "0", "0")
    props = template["Resources"][API]["Properties"]
    assert props["SnapStart"] == {"ApplyOn": {"Fn::If": ["UseApiSnapStart", "PublishedVersions", "None"]}}
    assert props["ProvisionedConcurrencyConfig"]["Fn::If"][0] == "HasApiProvisionedConcurrency"
    assert props["AutoPublishAlias"] == "live"  # both apply to published versions
    rule = template["Rules"]["ApiSnapStartOrProvisionedConcurrency"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ApiSnapStart"}, "true"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "ApiProvisionedConcurrency"}, 0]}
    # the local stack reads it as a URL function with the template's timeout
    spec = stack_spec(template).url_functions[API]
    assert (spec.handler, spec.auth_type, spec.timeout_s) == ("handlers.api.handler", "AWS_IAM", int(defaults["ApiTimeout"]))


def test_sam_makes_an_iam_url_on_the_alias_and_no_public_permission() -> None:
    run = subprocess.run([sam_tool("python"), "-c", TRANSLATE, str(TEMPLATE)], capture_output=True, text=True, env=sam_env())
    assert run.returncode == 0, run.stderr
    translated = json.loads(run.stdout)["Resources"]
    urls = [r["Properties"] for r in translated.values() if r["Type"] == "AWS::Lambda::Url"]
    assert len(urls) == 1 and urls[0]["AuthType"] == "AWS_IAM"
    assert urls[0]["TargetFunctionArn"] == {"Ref": "ApiFunctionAliaslive"}  # the alias: SnapStart, provisioned concurrency
    permissions = [r["Properties"] for r in translated.values() if r["Type"] == "AWS::Lambda::Permission"]
    assert not [p for p in permissions if p.get("Principal") == "*"]
