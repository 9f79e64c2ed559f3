"""The synchronous API's client: `lambdaface recognize --sync FILE...`, `lambdaface compare --sync A B`.

Each request is signed with AWS Signature V4 for the service `lambda` (botocore's SigV4Auth) with
the usual AWS credentials: on AWS, of a principal allowed lambda:InvokeFunctionUrl (and
lambda:InvokeFunction) on the function; on the local stack, any keys on loopback, its own keys in
remote mode. A 429 (throttled) or 503 (unavailable) answer is retried with exponential backoff.

Where: --api-url, else $LAMBDAFACE_API_URL (the stack's ApiUrl output), else the endpoint
(--endpoint-url, $AWS_ENDPOINT_URL): the local stack serves the API on its own address.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

API_URL_ENV = "LAMBDAFACE_API_URL"
SERVICE = "lambda"
RETRY_STATUSES = (429, 503)
ATTEMPTS = 8
BACKOFF_S = 0.1  # the first retry's wait; doubled each time (with jitter), at most MAX_BACKOFF_S
MAX_BACKOFF_S = 5.0


class ApiFailed(Exception):
    """The API answered with an error (after the retries, for 429 and 503)."""

    def __init__(self, status: int, document: dict[str, Any]) -> None:
        error = document.get("error") or {}
        super().__init__(f"HTTP {status} {error.get('code', '?')}: {error.get('message', '')}")
        self.status, self.document = status, document


@dataclass
class ApiClient:
    """Signed calls to the synchronous API at `url` (its connections kept open between calls)."""

    url: str
    region: str
    credentials: Any  # botocore Credentials
    attempts: int = ATTEMPTS

    def __post_init__(self) -> None:
        from botocore.httpsession import URLLib3Session

        self.url = self.url.rstrip("/")
        self.http = URLLib3Session(timeout=120)
        self.retries = 0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ApiClient":
        import boto3

        session = boto3.Session(region_name=args.region) if args.region else boto3.Session()
        url = args.api_url or os.environ.get(API_URL_ENV) or args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        if not url:
            raise SystemExit(f"lambdaface: no API URL: pass --api-url or set ${API_URL_ENV} (the stack's ApiUrl output)")
        credentials = session.get_credentials()
        if credentials is None:
            from botocore.exceptions import NoCredentialsError

            raise NoCredentialsError()
        return cls(url, session.region_name or "us-east-1", credentials.get_frozen_credentials())

    def call(self, path: str, body: bytes, params: dict[str, Any] | None = None,
             content_type: str = "application/octet-stream") -> dict[str, Any]:
        """POST `body` to `path`: the response document (ApiFailed on an error answer)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        query = urlencode({k: _text(v) for k, v in (params or {}).items() if v is not None})
        url = f"{self.url}{path}" + (f"?{query}" if query else "")
        for attempt in range(self.attempts):
            request = AWSRequest("POST", url, data=body, headers={"Content-Type": content_type})
            SigV4Auth(self.credentials, SERVICE, self.region).add_auth(request)
            response = self.http.send(request.prepare())
            try:
                document = json.loads(response.content or b"{}")
            except ValueError:
                document = {"error": {"code": f"HTTP_{response.status_code}", "message": response.text[:300]}}
            if response.status_code == 200:
                return document
            if response.status_code not in RETRY_STATUSES or attempt == self.attempts - 1:
                raise ApiFailed(response.status_code, document)
            self.retries += 1
            wait = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** attempt)
            time.sleep(random.uniform(wait / 2, wait))
        raise AssertionError("unreachable")

    def recognize(self, data: bytes, **params: Any) -> dict[str, Any]:
        return self.call("/recognize", data, params)

    def compare(self, a: bytes, b: bytes, threshold: float | None = None) -> dict[str, Any]:
        body, content_type = multipart({"a": a, "b": b})
        return self.call("/compare", body, {"threshold": threshold}, content_type)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def multipart(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body of named files, and its content type."""
    boundary = f"lambdaface-{uuid.uuid4().hex}"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        for name, data in files.items()
    ) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _line(name: str, doc: dict[str, Any]) -> str:
    from lambdaface.watch import describe

    took = (doc.get("timings_ms") or {}).get("total")
    return f"{name}  recognize {doc.get('status', '?')}  {describe(doc)}  " + (f"{took / 1000:.2f} s" if took else "-")


def recognize(args: argparse.Namespace, files: list[Path]) -> int:
    """`lambdaface recognize --sync`: one call per file; a line (or the document) each."""
    api = ApiClient.from_args(args)
    code = 0
    for f in files:
        try:
            doc = api.recognize(f.read_bytes(), person=args.person, top_k=args.top_k,
                                threshold=args.threshold, annotate=bool(args.out), store=args.store)
        except ApiFailed as failed:
            print(f"{f.name}  failed {failed.document.get('error', {}).get('code', failed.status)}: "
                  f"{failed.document.get('error', {}).get('message', '')}", file=sys.stderr)
            code = 1
            continue
        jpeg = doc.pop("annotated_jpeg", None)
        print(json.dumps(doc) if args.json else _line(f.name, doc), flush=True)
        if args.person:
            prefix = f"{f.name}: " if len(files) > 1 else ""
            print(f"{prefix}Faces match: {args.person in (doc.get('people') or [])}", flush=True)
        if args.out and jpeg:
            import base64

            target = Path(args.out) / f"{f.name}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(jpeg))
            print(f"annotated: {target}", flush=True)
    return code


def compare(args: argparse.Namespace) -> int:
    """`lambdaface compare --sync A B`: each pair of faces' distance and whether they match."""
    if len(args.unknown) != 1:
        raise SystemExit("lambdaface: compare --sync takes two images, A and B")
    api = ApiClient.from_args(args)
    a, b = Path(args.known), Path(args.unknown[0])
    for f in (a, b):
        if not f.is_file():
            raise SystemExit(f"lambdaface: {f}: no such file")
    try:
        doc = api.compare(a.read_bytes(), b.read_bytes(), args.threshold)
    except ApiFailed as failed:
        print(f"lambdaface: {failed}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc))
    else:
        for pair in doc["pairs"]:
            print(f"{a.name} face {pair['a']} / {b.name} face {pair['b']}: distance {pair['distance']:.4f}, "
                  f"{'match' if pair['match'] else 'no match'}")
        print(f"Faces match: {doc['match']}")
    return 0


def add_sync_args(p: argparse.ArgumentParser, threshold: bool = True) -> None:
    """--sync and its options (the connection arguments are the caller's; `threshold`: add --threshold)."""
    p.add_argument("--sync", action="store_true", help="one signed call to the synchronous API per image (no upload)")
    p.add_argument("--api-url", default=None, help=f"the API's URL (default: ${API_URL_ENV}, else the endpoint)")
    if threshold:
        p.add_argument("--threshold", type=float, default=None, help="with --sync: the distance under which faces match")

