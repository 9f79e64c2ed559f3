"""The Lambda package `sam build` makes (src/Makefile): small enough, nothing missing, nothing extra.

`sam build` runs once per session (no Docker: python3.12 on PATH). Each function's build dir is
then run the way Lambda runs it: python3.12 without site-packages, the build dir and a boto3-only
dir (the runtime's boto3) on the path, the template's environment, and AWS credentials of a role
that holds exactly the template's policy, against moto's server with IAM enforcement on. The seed
example goes through it: enroll john0 as john, recognize john1 as john, then delete john0.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import urllib.request
import uuid
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import botocore.exceptions
import pytest
from support import ROOT
from support.aws import REGION, client
from support.build import build_cache, python312
from support.lambda_events import LambdaQueue
from support.template import as_list, resolve, role_of, role_statements
from support.video import photo_video

from lambdaface.template import TEMPLATE, load_template, parameter_defaults

SAM = ROOT / ".venv-sam" / "bin" / "sam"
EVENTS = ROOT / "events"
FUNCTIONS = ("EnrollFunction", "RecognizeFunction", "VideoFunction", "UnknownsSweepFunction", "ReconcileFunction", "ApiFunction")
WITH_OPENCV = {"VideoFunction"}  # the others must stay without it (150 MB)
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
MODEL_FILES = {  # dlib's landmarks, and what shared/engine/onnx_convert.py makes of its networks (src/Makefile)
    "shape_predictor_5_face_landmarks.dat",
    "dlib_face_recognition_resnet_model_v1.onnx",
    "mmod_human_face_detector.onnx",
    "mmod_human_face_detector.json",
    "frontal_face_detector.svm",
}
CACHE = build_cache()


def venv_models_dir() -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    assert spec and spec.submodule_search_locations, "face_recognition_models is not installed in the venv"
    return str(Path(next(iter(spec.submodule_search_locations))) / "models")


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sam build` into a fresh directory, once per session."""
    assert SAM.exists(), f"{SAM} is missing: run `make sam-install`"
    out = tmp_path_factory.mktemp("sam") / "build"
    env = {
        **os.environ,
        "PATH": f"{Path(python312()).parent}{os.pathsep}{os.environ['PATH']}",
        "SAM_CLI_TELEMETRY": "0",
        "LAMBDAFACE_MODELS_DIR": venv_models_dir(),  # copy the 3 files instead of downloading 100 MB
    }
    run = subprocess.run(
        [str(SAM), "build", "--template", str(TEMPLATE), "--build-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return out


@pytest.fixture(scope="session")
def boto3_dir() -> Path:
    """boto3 alone, as the python3.12 runtime provides it (the package must not bring its own)."""
    version = importlib.metadata.version("boto3")
    target = CACHE / f"boto3-{version}"
    if not target.is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = CACHE / f"boto3.{uuid.uuid4().hex}"
        run = subprocess.run(
            [python312(), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "--target", str(tmp), f"boto3=={version}"],
            capture_output=True, text=True,
        )
        assert run.returncode == 0, run.stderr[-4000:]
        try:
            tmp.rename(target)
        except OSError:  # another session won the race
            shutil.rmtree(tmp)
    return target


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# --- What is in the package ------------------------------------------------------------------


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_fits_lambda_and_holds_only_what_runs(build_dir: Path, function: str) -> None:
    root = build_dir / function
    size = tree_size(root)
    print(f"{function}: {size / 2**20:.0f} MiB unzipped")
    assert size <= LAMBDA_UNZIPPED_LIMIT, f"{function} is {size / 2**20:.0f} MiB"
    top = {p.name for p in root.iterdir()}
    for needed in ("handlers", "shared", "numpy", "dlib", "onnxruntime", "PIL", "aws_lambda_powertools",
                   "face_recognition_models"):
        assert needed in top, needed
    assert {p.name for p in (root / "face_recognition_models" / "models").iterdir()} == MODEL_FILES
    assert ("cv2" in top) == (function in WITH_OPENCV)
    for unwanted in ("boto3", "botocore", "lambdaface", "tests", "bin", "s3transfer"):
        assert unwanted not in top, f"{unwanted} must not be packaged"
    assert not list(root.rglob("shape_predictor_68_face_landmarks.dat"))
    assert not list((root / "shared").rglob("__pycache__"))
    assert (root / "handlers" / "enroll.py").read_bytes() == (ROOT / "src" / "handlers" / "enroll.py").read_bytes()


def test_built_template_points_each_function_at_its_package(build_dir: Path) -> None:
    built = load_template(build_dir / "template.yaml")["Resources"]
    for function in FUNCTIONS:
        assert built[function]["Properties"]["CodeUri"] == function


# --- Running it ------------------------------------------------------------------------------

DRIVER = r"""
import json, sys
calls = json.load(open(sys.argv[1]))

class Context:
    function_name = calls["function"]
    memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + calls["function"]
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    def get_remaining_time_in_millis(self):
        return 60000

# Record every AWS call (service, operation, target) for the parent to check against the policy.
import boto3
boto3.setup_default_session()
aws_calls = []
def record(params, model, event_name, **kwargs):
    target = {k: params[k] for k in ("TableName", "Bucket", "Key", "Prefix", "QueueUrl") if k in params}
    if "TransactItems" in params:  # one call per table the transaction writes (AWS checks each item's table)
        for table in sorted({op[kind]["TableName"] for op in params["TransactItems"] for kind in op}):
            aws_calls.append([event_name.split(".")[1], model.name, {"TableName": table}])
        return
    if "Entries" in params and event_name.split(".")[1] == "eventbridge":  # PutEvents: one call per bus
        for bus in sorted({e.get("EventBusName", "default") for e in params["Entries"]}):
            aws_calls.append(["eventbridge", model.name, {"EventBusName": bus}])
        return
    if "RequestItems" in params:  # BatchWriteItem / BatchGetItem: one call per table
        for table in sorted(params["RequestItems"]):
            aws_calls.append([event_name.split(".")[1], model.name, {"TableName": table}])
        return
    aws_calls.append([event_name.split(".")[1], model.name, target])
boto3.DEFAULT_SESSION.events.register("provide-client-params", record)

handler = __import__("handlers." + calls["module"], fromlist=["handler"]).handler
responses = [handler(event, Context()) for event in calls["events"]]

import importlib.util, numpy, dlib, PIL, aws_lambda_powertools, boto3, shared.engine
origins = {m.__name__: m.__file__ for m in (numpy, dlib, PIL, aws_lambda_powertools, boto3, shared.engine)}
origins["face_recognition_models"] = list(importlib.util.find_spec("face_recognition_models").submodule_search_locations)[0]
missing = [name for name in ("cv2", "lambdaface") if importlib.util.find_spec(name) is not None]
print("\n" + json.dumps({"responses": responses, "origins": origins, "present": missing, "aws_calls": aws_calls}))
"""


class Moto:
    """moto's server with the template's bucket and tables, named uniquely."""

    def __init__(self, endpoint: str, template: dict[str, Any]) -> None:
        self.endpoint, self.template = endpoint, template
        suffix = uuid.uuid4().hex[:8]
        self.bucket = f"lambdaface-package-{suffix}"
        self.tables = {lid: f"{lid}-{suffix}" for lid in ("JobsTable", "GalleryTable", "UnknownsTable", "PeopleIndexTable",
                                                           "CorrectionsTable")}
        self.s3 = self.client("s3")
        self.dynamodb = self.client("dynamodb")
        self.s3.create_bucket(Bucket=self.bucket)
        resources = template["Resources"]
        for lid, name in self.tables.items():
            p = resources[lid]["Properties"]
            self.dynamodb.create_table(TableName=name, KeySchema=p["KeySchema"],
                                       AttributeDefinitions=p["AttributeDefinitions"], BillingMode=p["BillingMode"])
        self.video = LambdaQueue.create(self.client("sqs"), f"VideoQueue-{suffix}")  # the functions send to it
        self.video_queue = self.video.url
        self.enroll = LambdaQueue.create(self.client("sqs"), f"EnrollQueue-{suffix}")  # reconciliation, delayed purges
        self.queue_arns = {self.video.url: self.video.arn, self.enroll.url: self.enroll.arn}
        self.names = {
            "AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": "123456789012",
            "Bucket": self.bucket, "Bucket.Arn": f"arn:aws:s3:::{self.bucket}",
            **{lid: name for lid, name in self.tables.items()},
            **{f"{lid}.Arn": self.dynamodb.describe_table(TableName=n)["Table"]["TableArn"] for lid, n in self.tables.items()},
            **{f"{lid}.Arn": f"arn:aws:sqs:{REGION}:123456789012:{lid}" for lid in ("EnrollQueue", "RecognizeQueue")},
            "VideoQueue": self.video_queue, "VideoQueue.Arn": self.queue_arns[self.video_queue],
            "EnrollQueue": self.enroll.url, "EnrollQueue.Arn": self.enroll.arn,
            **{f"{lid}.Arn": f"arn:aws:logs:{REGION}:123456789012:log-group:{lid}:*"
               for lid in ("EnrollLogGroup", "RecognizeLogGroup", "VideoLogGroup", "UnknownsSweepLogGroup",
                           "ReconcileLogGroup", "ApiLogGroup")},
            **parameter_defaults(template),
        }

    def client(self, service: str, **credentials: str) -> Any:
        return client(self.endpoint, service, **credentials)

    def role_credentials(self, function: str) -> dict[str, str]:
        """Credentials of a role holding the function's policy, as the template writes it.

        moto checks S3 actions against object ARNs, but DynamoDB and EventBridge actions only against `*` and no
        `s3:prefix` condition: here table and event bus ARNs become `*` and the ListBucket condition goes
        (test_template.py checks both as written). AWS authorises SendMessageBatch as
        sqs:SendMessage, moto as sqs:SendMessageBatch: here it is granted with SendMessage. Likewise AWS
        authorises ListObjectsV2 as s3:ListBucket, moto (since 5.2) as s3:ListObjectsV2: granted with ListBucket.
        """
        role_id = role_of(self.template["Resources"], function)
        role = self.template["Resources"][role_id]["Properties"]
        iam = self.client("iam")
        name = f"{role_id}-{uuid.uuid4().hex[:8]}"
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(role["AssumeRolePolicyDocument"]))["Role"]["Arn"]
        statements = self.statements(function)
        for statement in statements:
            if str(statement["Action"]).count("dynamodb:") or str(statement["Action"]).count("events:"):
                statement["Resource"] = "*"
            if "sqs:SendMessage" in as_list(statement["Action"]):
                statement["Action"] = [*as_list(statement["Action"]), "sqs:SendMessageBatch"]
            if "s3:ListBucket" in as_list(statement["Action"]):
                statement["Action"] = [*as_list(statement["Action"]), "s3:ListObjectsV2"]
            statement.pop("Condition", None)
        document = {"Version": "2012-10-17", "Statement": statements}
        iam.put_role_policy(RoleName=name, PolicyName="template", PolicyDocument=json.dumps(document))
        creds = self.client("sts").assume_role(RoleArn=arn, RoleSessionName=function)["Credentials"]
        return {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                "AWS_SESSION_TOKEN": creds["SessionToken"]}

    def statements(self, function: str) -> list[dict[str, Any]]:
        """The function role's policy statements, resolved against this stack."""
        return [resolve(statement, self.names) for statement in role_statements(self.template["Resources"], function)]

    def enforce_iam(self, count: str) -> str:
        """Set moto's INITIAL_NO_AUTH_ACTION_COUNT ("0": enforce from now on); returns the old one."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=count.encode(), method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request) as response:
            return json.load(response)["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]

    def event(self, sample: str | dict[str, Any]) -> dict[str, Any]:
        """events/<sample> (or an event) with this bucket, and the ETag and size of the object it names."""
        event = json.loads((EVENTS / sample).read_text()) if isinstance(sample, str) else sample
        for message in event.get("Records", []):  # a scheduled event has none
            body = json.loads(message["body"])
            if body.get("Event") == "s3:TestEvent":
                body["Bucket"] = self.bucket
            for record in body.get("Records", []):
                record["s3"]["bucket"].update(name=self.bucket, arn=f"arn:aws:s3:::{self.bucket}")
                obj = record["s3"]["object"]
                if record["eventName"].startswith("ObjectCreated"):
                    head = self.s3.head_object(Bucket=self.bucket, Key=unquote_plus(obj["key"]))
                    obj.update(eTag=head["ETag"].strip('"'), size=head["ContentLength"])
            message["body"] = json.dumps(body)
        return event

    def environment(self, function: str) -> dict[str, str]:
        """The function's environment as deployed with default parameters, plus Lambda's own."""
        own = self.template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
        variables = {**self.template["Globals"]["Function"]["Environment"]["Variables"], **own}
        return {
            **{k: str(resolve(v, self.names)) for k, v in variables.items()},
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
            "AWS_LAMBDA_FUNCTION_NAME": function, "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            **self.role_credentials(function),
        }

    def json(self, key: str) -> dict[str, Any]:
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def exists(self, key: str) -> bool:
        return bool(self.s3.list_objects_v2(Bucket=self.bucket, Prefix=key).get("KeyCount"))


@pytest.fixture(scope="module")
def moto(moto_endpoint: str) -> Moto:
    return Moto(moto_endpoint, load_template(TEMPLATE))


# IAM action of each S3 operation the handlers may call (an unknown one fails the check).
S3_ACTIONS = {
    "GetObject": "s3:GetObject", "HeadObject": "s3:GetObject", "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket", "PutObject": "s3:PutObject", "DeleteObject": "s3:DeleteObject",
}


def denied_calls(moto: Moto, function: str, aws_calls: list[list[Any]]) -> list[list[Any]]:
    """The recorded AWS calls that the function's policy, as the template writes it, does not allow.

    Evaluates actions, resource ARNs (tables included) and the `s3:prefix` condition, which
    moto's own enforcement does not."""
    statements = moto.statements(function)
    tables = {name: moto.names[f"{lid}.Arn"] for lid, name in moto.tables.items()}
    denied = []
    for service, operation, target in aws_calls:
        context: dict[str, str] = {}
        if service == "s3":
            action = S3_ACTIONS.get(operation, f"s3:unmapped:{operation}")
            resource = f"arn:aws:s3:::{target['Bucket']}" + (f"/{target['Key']}" if "Key" in target else "")
            if action == "s3:ListBucket":
                context["s3:prefix"] = target.get("Prefix", "")
        elif service == "dynamodb":
            action, resource = f"dynamodb:{operation}", tables.get(target.get("TableName", ""), "unknown table")
        elif service == "sqs":  # SendMessageBatch is authorised as SendMessage
            action = "sqs:SendMessage" if operation == "SendMessageBatch" else f"sqs:{operation}"
            resource = moto.queue_arns.get(target.get("QueueUrl", ""), "unknown queue")
        elif service == "eventbridge":  # IAM's prefix is events:
            action = f"events:{operation}"
            resource = f"arn:aws:events:{REGION}:{moto.names['AWS::AccountId']}:event-bus/{target.get('EventBusName', 'default')}"
        else:
            action, resource = f"{service}:{operation}", "*"
        if not any(
            action in as_list(s["Action"])
            and any(fnmatchcase(resource, pattern) for pattern in as_list(s["Resource"]))
            and all(
                op == "StringLike" and all(fnmatchcase(context.get(k, ""), v) for k, v in values.items())
                for op, values in s.get("Condition", {}).items()
            )
            for s in statements
        ):
            denied.append([action, resource, context])
    return denied


def invoke(build_dir: Path, boto3_dir: Path, moto: Moto, function: str, samples: list[str | dict[str, Any]],
           tmp_path: Path, **settings: str) -> dict[str, Any]:
    """Run the function's handler in the built package on the sample events (names in events/, or
    events), as Lambda would; `settings` override environment variables."""
    module = load_template(TEMPLATE)["Resources"][function]["Properties"]["Handler"].split(".")[1]
    calls = tmp_path / f"{function}-{uuid.uuid4().hex[:6]}.json"
    calls.write_text(json.dumps({"function": function, "module": module, "events": [moto.event(s) for s in samples]}))
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
        "PYTHONPATH": f"{build_dir / function}{os.pathsep}{boto3_dir}",
        **moto.environment(function),
        **settings,
    }
    previous = moto.enforce_iam("0")
    try:
        run = subprocess.run([python312(), "-S", "-c", DRIVER, str(calls)], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
    finally:
        moto.enforce_iam(previous)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    out["logs"] = run.stdout[-6000:] + run.stderr[-6000:]
    for name, origin in out["origins"].items():
        expected = boto3_dir if name == "boto3" else build_dir / function
        assert Path(origin).resolve().is_relative_to(expected.resolve()), (name, origin)
    assert out["present"] == (["cv2"] if function in WITH_OPENCV else []), "opencv only for video; never the command line"
    assert out["aws_calls"], "the handler made no AWS call"
    assert denied_calls(moto, function, out["aws_calls"]) == [], "the template's policy must allow every call"
    return out


def gallery_faces(moto: Moto) -> set[tuple[str, str]]:
    """(person, image_key) of the gallery's face items (those with an embedding)."""
    items = moto.dynamodb.scan(TableName=moto.tables["GalleryTable"])["Items"]
    return {(i["person"]["S"], i["image_key"]["S"]) for i in items if "embedding" in i}


def test_built_package_runs_the_seed_example_with_the_template_permissions(
    build_dir: Path, boto3_dir: Path, moto: Moto, faces_dir: Path, tmp_path: Path
) -> None:
    moto.s3.put_object(Bucket=moto.bucket, Key="models/john/john0.jpg", Body=(faces_dir / "seed" / "john0.jpg").read_bytes())
    query = "queries/john at the café.jpg"  # events/recognize.json names it URL-encoded
    moto.s3.put_object(Bucket=moto.bucket, Key=query, Body=(faces_dir / "seed" / "john1.jpg").read_bytes())

    enroll = invoke(build_dir, boto3_dir, moto, "EnrollFunction", ["s3-test-event.json", "enroll.json"], tmp_path)
    assert enroll["responses"] == [{"batchItemFailures": []}] * 2, enroll["logs"]
    enrolled = moto.json("results/models/john/john0.jpg.json")
    assert enrolled["status"] == "succeeded", enrolled
    assert enrolled["kind"] == "enroll" and enrolled["person"] == "john"
    assert gallery_faces(moto) == {("john", "models/john/john0.jpg")}

    recognize = invoke(build_dir, boto3_dir, moto, "RecognizeFunction", ["recognize.json"], tmp_path)
    assert recognize["responses"] == [{"batchItemFailures": []}], recognize["logs"]
    result = moto.json(f"results/{query}.json")
    assert result["status"] == "succeeded", result
    (face,) = result["faces"]
    assert face["person"] == "john" and face["distance"] < float(moto.names["Threshold"])
    assert result["people"] == ["john"]
    assert moto.exists(result["annotated"])

    moto.s3.delete_object(Bucket=moto.bucket, Key="models/john/john0.jpg")
    delete = invoke(build_dir, boto3_dir, moto, "EnrollFunction", ["delete.json"], tmp_path)
    assert delete["responses"] == [{"batchItemFailures": []}], delete["logs"]
    assert gallery_faces(moto) == set()

    jobs = moto.dynamodb.scan(TableName=moto.tables["JobsTable"])["Items"]
    assert {j["status"]["S"] for j in jobs} == {"succeeded"}
    assert len(jobs) >= 2


def test_built_packages_remember_and_sweep_unknown_faces_with_the_template_permissions(
    build_dir: Path, boto3_dir: Path, moto: Moto, faces_dir: Path, tmp_path: Path
) -> None:
    """recognize remembers an unknown face (and snapshots the store); the sweep, with remembering
    off (the template's default), forgets it: each call allowed by its role."""
    query = "queries/unknown jim.jpg"
    moto.s3.put_object(Bucket=moto.bucket, Key=query, Body=(faces_dir / "seed" / "jim-carrey.jpg").read_bytes())
    recognize = invoke(build_dir, boto3_dir, moto, "RecognizeFunction", [sample_for("recognize.json", query)], tmp_path,
                       LAMBDAFACE_REMEMBER_UNKNOWNS="true", LAMBDAFACE_GALLERY_COMPACT_EVERY="1")
    assert recognize["responses"] == [{"batchItemFailures": []}], recognize["logs"]
    (face,) = moto.json(f"results/{query}.json")["faces"]
    assert face["person"] is None and face["cluster"].startswith("u-")

    def remembered() -> list[dict[str, Any]]:
        items = moto.dynamodb.scan(TableName=moto.tables["UnknownsTable"])["Items"]
        return [i for i in items if "embedding" in i or "vector" in i]

    assert [i["person"]["S"] for i in remembered() if "embedding" in i] == [face["cluster"]]
    assert moto.exists("unknowns/snapshots/")
    scheduled = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}
    sweep = invoke(build_dir, boto3_dir, moto, "UnknownsSweepFunction", [scheduled], tmp_path)
    assert sweep["responses"] == [{"remembering": False, "forgotten": 1, "complete": True}], sweep["logs"]
    assert remembered() == []


def test_built_enroll_package_hands_a_merged_persons_entries_on_with_the_template_permissions(
    build_dir: Path, boto3_dir: Path, moto: Moto, faces_dir: Path, tmp_path: Path
) -> None:
    """While `lambdaface merge jo johnny` runs (its mark armed), the forget of jo's last face moves
    jo's person-index entries to johnny: each call allowed by the enroll role."""
    key = "models/jo/john0.jpg"
    moto.s3.put_object(Bucket=moto.bucket, Key=key, Body=(faces_dir / "seed" / "john0.jpg").read_bytes())
    enroll = invoke(build_dir, boto3_dir, moto, "EnrollFunction", [sample_for("enroll.json", key)], tmp_path)
    assert enroll["responses"] == [{"batchItemFailures": []}], enroll["logs"]
    assert ("jo", key) in gallery_faces(moto)
    index, sk, source = moto.tables["PeopleIndexTable"], "2026-12-04T10:00:00.000Z#queries/jo.jpg#0", "queries/jo.jpg"
    for item in ({"pk": "p#jo", "sk": sk, "person": "jo", "source": source},
                 {"pk": f"s#{source}", "sk": "#source", "entries": {"M": {sk: {"S": "p#jo"}}}, "version": {"N": "1"}},
                 {"pk": "m#jo", "sk": "#merge", "into": "johnny", "armed": {"BOOL": True}, "expires_at": {"N": "4102444800"}}):
        moto.dynamodb.put_item(TableName=index, Item={k: v if isinstance(v, dict) else {"S": v} for k, v in item.items()})
    moto.s3.delete_object(Bucket=moto.bucket, Key=key)
    delete = invoke(build_dir, boto3_dir, moto, "EnrollFunction", [sample_for("delete.json", key)], tmp_path)
    assert delete["responses"] == [{"batchItemFailures": []}], delete["logs"]
    assert ("jo", key) not in gallery_faces(moto)
    entries = {(i["pk"]["S"], i["sk"]["S"]) for i in moto.dynamodb.scan(TableName=index)["Items"]}
    assert ("p#johnny", sk) in entries and ("p#jo", sk) not in entries


def test_built_reconciler_sends_removals_and_reports_with_the_template_permissions(
    build_dir: Path, boto3_dir: Path, moto: Moto, tmp_path: Path
) -> None:
    """A face whose image is gone gets a removal event on the enroll queue; an image without a face
    is reported: every call allowed by ReconcileFunctionRole (no image read, no gallery write)."""
    gallery = moto.tables["GalleryTable"]
    gone = "models/john/gone.jpg"
    for item in ({"person": {"S": "john"}, "image_key": {"S": gone}, "embedding": {"B": bytes(512)}, "etag": {"S": "e"}},
                 {"person": {"S": "#order"}, "image_key": {"S": gone}, "event_time": {"S": "2026-01-01T00:00:00.000Z"},
                  "deleted": {"BOOL": False}, "log_seq": {"N": "1"}, "face_person": {"S": "john"}, "etag": {"S": "e"}}):
        moto.dynamodb.put_item(TableName=gallery, Item=item)
    moto.s3.put_object(Bucket=moto.bucket, Key="models/jim/there.jpg", Body=b"x")
    scheduled = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}
    run = invoke(build_dir, boto3_dir, moto, "ReconcileFunction", [scheduled], tmp_path, LAMBDAFACE_RECONCILE_GRACE_S="0")
    [report] = run["responses"]
    assert (report["forgotten_keys"], report["missing_keys"]) == ([gone], ["models/jim/there.jpg"]), run["logs"]
    [message] = moto.enroll.receive_all()
    [record] = json.loads(message["Body"])["Records"]
    assert (record["eventName"], record["eventTime"]) == ("ObjectRemoved:Delete", "2026-01-01T00:00:00.000Z")


def url_event(path: str, body: bytes, query: str = "", content_type: str = "image/jpeg") -> dict[str, Any]:
    """A Function URL request as Lambda passes it to the handler (payload format 2.0)."""
    import base64

    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
            "headers": {"content-type": content_type},
            "requestContext": {"http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"}},
            "body": base64.b64encode(body).decode(), "isBase64Encoded": True}


def test_built_api_answers_in_one_call_with_the_template_permissions(
    build_dir: Path, boto3_dir: Path, moto: Moto, faces_dir: Path, tmp_path: Path
) -> None:
    """The synchronous API's package, under ApiFunctionRole: recognize (the gallery's snapshot and
    log read), verify, compare, a bad input, then store=true (the photo under queries/api/ and its
    job, run in the call). Before store=true nothing is written."""
    from lambdaface.sync_client import multipart

    seed = faces_dir / "seed"
    model = "models/john/john0 for the api.jpg"  # a key of its own: the module's other tests order john0.jpg's events
    moto.s3.put_object(Bucket=moto.bucket, Key=model, Body=(seed / "john0.jpg").read_bytes())
    enroll = invoke(build_dir, boto3_dir, moto, "EnrollFunction", [sample_for("enroll.json", model)], tmp_path,
                    LAMBDAFACE_GALLERY_COMPACT_EVERY="1")  # a snapshot the API loads (S3) before the log (DynamoDB)
    assert enroll["responses"] == [{"batchItemFailures": []}], enroll["logs"]
    assert moto.exists("gallery/snapshots/")
    objects = lambda: sorted(o["Key"] for o in moto.s3.list_objects_v2(Bucket=moto.bucket).get("Contents", []))  # noqa: E731
    before = objects()
    body, content_type = multipart({"a": (seed / "john1.jpg").read_bytes(), "b": (seed / "jim-carrey.jpg").read_bytes()})
    events = [url_event("/recognize", (seed / "john1.jpg").read_bytes()),
              url_event("/recognize", (seed / "john2.jpg").read_bytes(), "person=john"),
              url_event("/recognize", (seed / "jim-carrey.jpg").read_bytes()),
              url_event("/compare", body, content_type=content_type),
              url_event("/recognize", b"not an image at all"),
              url_event("/recognize", (seed / "john1.jpg").read_bytes(), "store=true")]
    api = invoke(build_dir, boto3_dir, moto, "ApiFunction", events, tmp_path)
    statuses = [r["statusCode"] for r in api["responses"]]
    docs = [json.loads(r["body"]) for r in api["responses"]]
    assert statuses == [200, 200, 200, 200, 415, 200], api["logs"]
    assert [d.get("people") for d in docs[:3]] == [["john"], ["john"], []]
    assert docs[3]["match"] is False and docs[4]["error"]["code"] == "NOT_AN_IMAGE"
    stored = docs[5]["source"]  # store=true: the photo, and its job run in the call (result, annotated copy, job)
    assert stored.startswith("queries/api/") and docs[5]["job_id"] and docs[5]["people"] == ["john"]
    assert objects() == sorted([*before, stored, f"results/{stored}.json", f"results/{stored}.jpg"])
    assert moto.json(f"results/{stored}.json") == docs[5]
    jobs = moto.dynamodb.scan(TableName=moto.tables["JobsTable"])["Items"]
    assert [j["status"]["S"] for j in jobs if j["key"]["S"] == stored] == ["succeeded"]
    moto.s3.delete_object(Bucket=moto.bucket, Key=model)  # the module's other tests find no john
    forget = invoke(build_dir, boto3_dir, moto, "EnrollFunction", [sample_for("delete.json", model)], tmp_path)
    assert forget["responses"] == [{"batchItemFailures": []}], forget["logs"]
    assert not [face for face in gallery_faces(moto) if face[1] == model]


def sample_for(name: str, key: str) -> dict[str, Any]:
    """events/<name>, about `key` instead."""
    event = json.loads((EVENTS / name).read_text())
    body = json.loads(event["Records"][0]["body"])
    body["Records"][0]["s3"]["object"]["key"] = quote_plus(key)
    event["Records"][0]["body"] = json.dumps(body)
    return event


def video_messages(moto: Moto) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What waits on the video queue, and the SQS event Lambda would make of it (one record each)."""
    messages = moto.video.receive_all()
    return messages, moto.video.event(messages)


def test_built_video_package_fans_a_video_out_with_the_template_permissions(
    build_dir: Path, boto3_dir: Path, moto: Moto, faces_dir: Path, tmp_path: Path
) -> None:
    """recognize (no OpenCV) hands a video to the video queue; the video package plans it and
    recognises its segments with OpenCV and the CNN detector, each call allowed by its role."""
    model = "models/emmons/john0.jpg"
    moto.s3.put_object(Bucket=moto.bucket, Key=model, Body=(faces_dir / "seed" / "john0.jpg").read_bytes())
    enroll = invoke(build_dir, boto3_dir, moto, "EnrollFunction", [sample_for("enroll.json", model)], tmp_path)
    assert enroll["responses"] == [{"batchItemFailures": []}], enroll["logs"]
    key = "queries/john.mp4"
    still = photo_video(tmp_path / "john.mp4", [faces_dir / "seed" / "john1.jpg"], seconds=2, fps=5.0)
    moto.s3.put_object(Bucket=moto.bucket, Key=key, Body=still.read_bytes())

    recognize = invoke(build_dir, boto3_dir, moto, "RecognizeFunction", [sample_for("recognize.json", key)], tmp_path)
    assert recognize["responses"] == [{"batchItemFailures": []}], recognize["logs"]
    assert ["sqs", "SendMessage", {"QueueUrl": moto.video_queue}] in recognize["aws_calls"]
    settings = {"LAMBDAFACE_SEGMENT_S": "1", "LAMBDAFACE_SAMPLE_FPS": "1"}  # 2 segments of 1 frame
    plan, plan_event = video_messages(moto)
    assert [json.loads(m["Body"])["type"] for m in plan] == ["plan"]
    planned = invoke(build_dir, boto3_dir, moto, "VideoFunction", [plan_event], tmp_path, **settings)
    assert planned["responses"] == [{"batchItemFailures": []}], planned["logs"]
    assert ["sqs", "SendMessageBatch", {"QueueUrl": moto.video_queue}] in planned["aws_calls"]
    segments, segments_event = video_messages(moto)
    assert sorted(json.loads(m["Body"])["index"] for m in segments) == [0, 1]
    events = [{"Records": [record]} for record in segments_event["Records"]]  # one invocation each
    recognised = invoke(build_dir, boto3_dir, moto, "VideoFunction", events, tmp_path, **settings)
    assert recognised["responses"] == [{"batchItemFailures": []}] * 2, recognised["logs"]
    assert any(op == "PutObject" and t["Key"].startswith("work/segments/") for _, op, t in recognised["aws_calls"])

    result = moto.json(f"results/{key}.json")
    assert result["status"] == "succeeded", result
    assert (result["media"], result["segments"], result["frames_sampled"]) == ("video", 2, 2)
    assert result["people"] == ["emmons"] and result["appearances"] == [{"person": "emmons", "intervals": [[0.0, 2.0]], "seconds": 2.0, "first_s": 0.0, "last_s": 2.0}]
    assert [face["person"] for frame in result["frames"] for face in frame["faces"]] == ["emmons", "emmons"]


def test_the_roles_are_enforced(moto: Moto, faces_dir: Path) -> None:
    """moto's IAM enforcement is real: the enroll role reaches models/ and results/models/ only."""
    photo = (faces_dir / "seed" / "john2.jpg").read_bytes()
    for key in ("models/jane/jane0.jpg", "queries/jane.jpg"):
        moto.s3.put_object(Bucket=moto.bucket, Key=key, Body=photo)
    role = moto.role_credentials("EnrollFunction")
    credentials = {"aws_access_key_id": role["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": role["AWS_SECRET_ACCESS_KEY"],
                   "aws_session_token": role["AWS_SESSION_TOKEN"]}
    s3, dynamodb = moto.client("s3", **credentials), moto.client("dynamodb", **credentials)
    previous = moto.enforce_iam("0")
    try:
        assert s3.get_object(Bucket=moto.bucket, Key="models/jane/jane0.jpg")["Body"].read() == photo
        s3.put_object(Bucket=moto.bucket, Key="results/models/jane/jane0.jpg.json", Body=b"{}")
        denied = [
            lambda: s3.get_object(Bucket=moto.bucket, Key="queries/jane.jpg"),
            lambda: s3.put_object(Bucket=moto.bucket, Key="results/queries/jane.jpg.json", Body=b"{}"),
            lambda: s3.put_object(Bucket=moto.bucket, Key="models/jane/jane1.jpg", Body=photo),
            lambda: dynamodb.scan(TableName=moto.tables["GalleryTable"]),
        ]
        codes = []
        for call in denied:
            with pytest.raises(botocore.exceptions.ClientError) as error:
                call()
            codes.append(error.value.response["ResponseMetadata"]["HTTPStatusCode"])
    finally:
        moto.enforce_iam(previous)
    assert codes == [403] * len(denied), codes


def test_the_policy_check_can_fail(moto: Moto) -> None:
    """denied_calls() evaluates the template's policy: calls outside it are reported."""
    b = moto.bucket
    calls = [
        ["s3", "HeadObject", {"Bucket": b, "Key": "models/john/john0.jpg"}],
        ["s3", "ListObjectsV2", {"Bucket": b, "Prefix": "models/john/john0.jpg"}],
        ["dynamodb", "UpdateItem", {"TableName": moto.tables["GalleryTable"]}],
        ["s3", "GetObject", {"Bucket": b, "Key": "queries/x.jpg"}],
        ["s3", "ListObjectsV2", {"Bucket": b, "Prefix": "results/"}],
        ["s3", "PutObject", {"Bucket": b, "Key": "results/queries/x.jpg.json"}],
        ["s3", "CopyObject", {"Bucket": b, "Key": "results/models/x.json"}],
        ["dynamodb", "Scan", {"TableName": moto.tables["GalleryTable"]}],
        ["dynamodb", "PutItem", {"TableName": moto.tables["JobsTable"]}],
        ["dynamodb", "GetItem", {"TableName": "another-table"}],
        ["sqs", "SendMessage", {}],
    ]
    denied = [action for action, _, _ in denied_calls(moto, "EnrollFunction", calls)]
    assert denied == [
        "s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:unmapped:CopyObject",
        "dynamodb:Scan", "dynamodb:PutItem", "dynamodb:GetItem", "sqs:SendMessage",
    ]
