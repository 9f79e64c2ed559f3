"""The synchronous API under the local stack's access rules (`lambdaface local --allow-remote`, on
loopback): a request signed with the stack's keys for the service `lambda` is answered; unsigned,
other keys, a body other than the one signed, another service's signature, a foreign Host or a web
page's Origin get 403 from the guard before any worker sees them; `compare --sync` signs with the keys."""
from __future__ import annotations

from pathlib import Path

from support.cli import lambdaface
from support.signed import send
from support.stack import StackProcess, stack_fixture

from lambdaface.local.keys import Keys
from lambdaface.sync_client import multipart

stack = stack_fixture("sync-api-remote", "--allow-remote", workers=1)


def compare_body(faces_dir: Path) -> tuple[bytes, dict[str, str]]:
    seed = faces_dir / "seed"
    body, content_type = multipart({"a": (seed / "john1.jpg").read_bytes(), "b": (seed / "john2.jpg").read_bytes()})
    return body, {"Content-Type": content_type}


def test_the_stacks_keys_are_needed(stack: StackProcess, faces_dir: Path) -> None:
    body, headers = compare_body(faces_dir)
    signed = send(stack.endpoint, "lambda", "POST", "/compare", headers, body, keys=stack.keys)
    assert signed.status == 200 and signed.json()["match"] is True, signed.body[:300]
    refusals = {
        "unsigned": send(stack.endpoint, "lambda", "POST", "/compare", headers, body),
        "other keys": send(stack.endpoint, "lambda", "POST", "/compare", headers, body,
                           keys=Keys("AKIAOTHERKEYS0000000", "not-the-stacks-secret")),
        "signed for s3": send(stack.endpoint, "s3", "POST", "/compare", headers, body, keys=stack.keys),
        "foreign host": send(stack.endpoint, "lambda", "POST", "/compare", headers, body, keys=stack.keys,
                             host="evil.example:80"),
        "web page": send(stack.endpoint, "lambda", "POST", "/compare", {**headers, "Origin": "http://evil.example"},
                         body, keys=stack.keys),
    }
    for why, answer in refusals.items():
        assert answer.status == 403, (why, answer.status, answer.body[:200])
    # A signature over one body does not carry another: the guard hashes the body it got.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest("POST", f"{stack.endpoint}/compare", data=body, headers=headers)
    SigV4Auth(Credentials(stack.keys.access_key_id, stack.keys.secret_access_key), "lambda", "us-east-1").add_auth(request)
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(stack.endpoint)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    mid = len(body) // 2
    other = body[:mid] + bytes([body[mid] ^ 1]) + body[mid + 1:]  # one bit of one image changed
    connection.request("POST", "/compare", body=other, headers={k: str(v) for k, v in request.headers.items()} | {
        "Content-Length": str(len(other))})
    assert connection.getresponse().status == 403
    connection.close()


def test_lambda_signatures_reach_only_the_api(stack: StackProcess) -> None:
    answer = send(stack.endpoint, "lambda", "GET", f"/{stack.bucket}?list-type=2", keys=stack.keys)
    assert answer.status == 403 and b"synchronous API" in answer.body


def test_compare_sync_signs_with_the_stacks_keys(stack: StackProcess, faces_dir: Path) -> None:
    seed = faces_dir / "seed"
    done = lambdaface("compare", "--sync", str(seed / "john1.jpg"), str(seed / "jim-carrey.jpg"), stack=stack)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "Faces match: False"
