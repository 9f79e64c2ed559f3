"""Remote mode (`lambdaface local --allow-remote`, issue 21), tested on loopback: every request must
be signed (SigV4) with the stack's keys. Unsigned requests and requests signed with other keys get
403 from S3, SQS and DynamoDB; presigned URLs need the keys too; and the whole flow works with them:
the workers, enroll, recognize, a video, forget, people, unknowns, report and the AWS CLI."""
from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from support import ROOT
from support.cli import lambdaface
from support.signed import LIST_QUEUES, LIST_TABLES, list_objects, send
from support.stack import StackProcess, stack_fixture

from lambdaface.local import keys as stack_keys
from lambdaface.local.keys import DUMMY, Keys
from lambdaface.local.process import REGION, clean_env

stack = stack_fixture("remote", "--allow-remote", "--remember-unknowns", workers=1)
AWS = str(Path(sys.executable).with_name("aws"))


def _requests(bucket: str) -> dict[str, tuple[str, str, str, dict[str, str], bytes]]:
    return {"s3": list_objects(bucket), "sqs": LIST_QUEUES, "dynamodb": LIST_TABLES}


def _client(stack: StackProcess, service: str, keys: Keys, **config: Any) -> Any:
    return boto3.client(service, endpoint_url=stack.endpoint, region_name=REGION, config=Config(**config), **keys.boto())


def _call(client: Any) -> Any:
    service = client.meta.service_model.service_name
    if service == "s3":
        return client.list_objects_v2(Bucket="faces")
    return client.list_queues() if service == "sqs" else client.list_tables()


def test_the_keys_are_kept_owner_only_and_printed_once(stack: StackProcess) -> None:
    path = stack.state_dir / stack_keys.KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(stack.state_dir.stat().st_mode) == 0o700
    assert stack.keys == stack_keys.read(path) and stack.keys != DUMMY
    assert stack.stderr().count(stack.keys.secret_access_key) == 1
    assert stack.keys.secret_access_key not in "\n".join(stack.lines)  # stdout: job lines only


@pytest.mark.parametrize("service", ["s3", "sqs", "dynamodb"])
def test_unsigned_and_wrongly_signed_requests_get_403(stack: StackProcess, service: str) -> None:
    name, method, path, headers, body = _requests(stack.bucket)[service]
    assert send(stack.endpoint, name, method, path, headers, body).status == 403  # unsigned
    for keys in (DUMMY, Keys(stack.keys.access_key_id, "not-the-secret"), stack_keys.generate()):
        assert send(stack.endpoint, name, method, path, headers, body, keys=keys).status == 403, keys
        with pytest.raises(ClientError) as refused:
            _call(_client(stack, service, keys, retries={"max_attempts": 1}))
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert send(stack.endpoint, name, method, path, headers, body, keys=stack.keys).status == 200
    assert _call(stack.client(service))["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_signature_must_cover_this_request_now(stack: StackProcess) -> None:
    name, method, path, headers, body = LIST_TABLES
    stale = datetime.now(timezone.utc) - timedelta(minutes=20)
    with mock.patch("botocore.auth.get_current_datetime", return_value=stale):  # a captured, replayed request
        assert send(stack.endpoint, name, method, path, headers, body, keys=stack.keys).status == 403
    s3 = stack.client("s3")
    signed: dict[str, Any] = {}

    def swap_body(request: Any, **_: Any) -> None:  # after signing: the body is not the one signed
        signed["headers"] = dict(request.headers)
        request.body = b"forged bytes"  # as long as the signed ones

    s3.meta.events.register("before-send.s3.PutObject", swap_body)
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=stack.bucket, Key="queries/swapped.jpg", Body=b"signed bytes")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert b"x-amz-content-sha256" in signed["headers"]["Authorization"].lower()


def test_presigned_urls_need_the_stacks_keys(stack: StackProcess) -> None:
    stack.client("s3").put_object(Bucket=stack.bucket, Key="queries/presigned.txt", Body=b"kept")

    def fetch(url: str) -> int:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                assert response.read() == b"kept"
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    params = {"Bucket": stack.bucket, "Key": "queries/presigned.txt"}
    for version in ("s3v4", None):  # SigV4, and botocore's default for this endpoint (SigV2)
        mine = _client(stack, "s3", stack.keys, signature_version=version)
        url = mine.generate_presigned_url("get_object", Params=params)
        assert fetch(url) == 200
        assert fetch(url.replace("presigned.txt", "presigned.txx")) == 403  # another object, the same signature
        junk = _client(stack, "s3", Keys(stack.keys.access_key_id, "junk"), signature_version=version)
        assert fetch(junk.generate_presigned_url("get_object", Params=params)) == 403
        assert fetch(_client(stack, "s3", DUMMY, signature_version=version).generate_presigned_url("get_object", Params=params)) == 403
        short = mine.generate_presigned_url("get_object", Params=params, ExpiresIn=1)
        time.sleep(2.1)
        assert fetch(short) == 403  # expired


def test_the_whole_flow_with_the_keys(stack: StackProcess, faces_dir: Path, tmp_path: Path) -> None:
    """The workers sign with the keys (every job below runs), so do the client commands and the AWS CLI."""
    seed = faces_dir / "seed"
    cli_env = {**clean_env(), "AWS_SHARED_CREDENTIALS_FILE": str(stack.state_dir / stack_keys.KEYS_FILE),
               "AWS_DEFAULT_REGION": REGION}

    def aws(*args: str, env: dict[str, str] = cli_env) -> subprocess.CompletedProcess:
        return subprocess.run([AWS, "--endpoint-url", stack.endpoint, *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    copy = aws("s3", "cp", str(seed / "john0.jpg"), f"s3://{stack.bucket}/models/john/john0.jpg")
    assert copy.returncode == 0, copy.stderr
    wrong = aws("s3", "ls", f"s3://{stack.bucket}/", env={**clean_env(), **DUMMY.env(), "AWS_DEFAULT_REGION": REGION})
    assert wrong.returncode != 0 and "InvalidAccessKeyId" in wrong.stderr, wrong.stdout + wrong.stderr
    for args in (("dynamodb", "list-tables"), ("sqs", "list-queues"), ("s3", "ls", f"s3://{stack.bucket}/models/john/")):
        listed = aws(*args)
        assert listed.returncode == 0, (args, listed.stderr)
    watched = lambdaface("watch", "--job", "models/john/john0.jpg", "--timeout", "180", stack=stack)
    assert watched.stdout.startswith("models/john/john0.jpg  enroll succeeded  john  "), watched.stdout + watched.stderr

    for person, photo in (("lin_manuel_miranda", "people/lin_manuel_miranda/lin1.png"), ("obama", "people/obama/obama.jpg")):
        enrolled = lambdaface("enroll", person, str(faces_dir / photo), stack=stack)
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    recognized = lambdaface("recognize", "--person", "john", str(seed / "john1.jpg"), str(seed / "jim-carrey.jpg"), stack=stack)
    assert "john1.jpg: Faces match: True" in recognized.stdout and "jim-carrey.jpg: Faces match: False" in recognized.stdout, \
        recognized.stdout + recognized.stderr
    video = lambdaface("recognize", "--json", "--timeout", "900", str(faces_dir / "video/short_hamilton_clip.mp4"),
                       stack=stack, timeout=960)
    assert video.returncode == 0, video.stdout + video.stderr
    clip = json.loads(video.stdout)
    assert clip["status"] == "succeeded" and "lin_manuel_miranda" in clip["people"], clip

    forgot = lambdaface("forget", "john", stack=stack)
    assert "forgot john: 1 face(s) removed from the gallery, 1 image(s) deleted" in forgot.stdout, forgot.stdout + forgot.stderr
    again = lambdaface("recognize", "--json", str(seed / "john2.jpg"), stack=stack)
    assert json.loads(again.stdout)["people"] == [], again.stdout + again.stderr
    people = lambdaface("people", "--json", stack=stack)
    assert sorted(json.loads(line)["person"] for line in people.stdout.splitlines()) == ["lin_manuel_miranda", "obama"]
    unknowns = lambdaface("unknowns", "--json", stack=stack)
    assert unknowns.returncode == 0 and unknowns.stdout.strip(), unknowns.stdout + unknowns.stderr  # jim carrey's face
    report = lambdaface("report", "--out", str(tmp_path / "report"), stack=stack)
    assert report.returncode == 0, report.stdout + report.stderr
    assert "short_hamilton_clip.mp4" in (tmp_path / "report" / "index.html").read_text(encoding="utf-8")


def test_a_client_command_with_other_keys_says_why_it_was_refused(stack: StackProcess) -> None:
    refused = subprocess.run([sys.executable, "-m", "lambdaface.cli", "people"], cwd=ROOT, capture_output=True, text=True,
                             env={**stack.client_env(), **DUMMY.env()}, timeout=120)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stderr.startswith("lambdaface: the endpoint refused the request (InvalidAccessKeyId: "), refused.stderr
    assert "Traceback" not in refused.stderr


def test_keys_from_the_environment_are_used_and_never_written(tmp_path: Path) -> None:
    given = stack_keys.generate()
    env = {stack_keys.ACCESS_KEY_ENV: given.access_key_id, stack_keys.SECRET_KEY_ENV: given.secret_access_key}
    with StackProcess(tmp_path / "state", "--allow-remote", workers=0, env=env) as remote:
        assert remote.keys == given
        assert remote.client("dynamodb").list_tables()["TableNames"]
        assert send(remote.endpoint, *LIST_TABLES[:4], LIST_TABLES[4], keys=DUMMY).status == 403
        assert given.secret_access_key not in remote.stderr()
        assert remote.stop() == 0
    assert not (tmp_path / "state" / stack_keys.KEYS_FILE).exists()


def test_generated_keys_are_kept_for_the_next_start(tmp_path: Path) -> None:
    with StackProcess(tmp_path / "state", "--allow-remote", workers=0) as first:
        kept = first.keys
        assert first.stop() == 0
    with StackProcess(tmp_path / "state", "--allow-remote", workers=0) as second:
        assert second.keys == kept
        assert second.client("s3").list_objects_v2(Bucket=second.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert second.stop() == 0
    assert (tmp_path / "state.stderr").read_text().count(kept.secret_access_key) == 1  # both runs' stderr


def test_remote_mode_may_listen_on_every_address(tmp_path: Path) -> None:
    """--host 0.0.0.0 with --allow-remote: it starts; a client reaching it on the machine's address
    (Host: that address) is served with the keys and refused without."""
    with StackProcess(tmp_path / "state", "--allow-remote", "--host", "0.0.0.0", workers=0) as remote:
        assert remote.endpoint.startswith("http://127.0.0.1:")
        address = _outward_address()
        port = remote.endpoint.rsplit(":", 1)[1]
        there = f"http://{address}:{port}"
        assert send(there, *LIST_TABLES[:4], LIST_TABLES[4], keys=remote.keys).status == 200
        assert send(there, *LIST_TABLES[:4], LIST_TABLES[4], keys=DUMMY).status == 403
        assert send(there, *LIST_TABLES[:4], LIST_TABLES[4], keys=remote.keys, host=f"evil.example:{port}").status == 403
        assert remote.stop() == 0


def _outward_address() -> str:
    """An address of this machine that is not loopback (else loopback: the test still runs)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this picks the outward interface
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"

