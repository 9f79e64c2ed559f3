"""Raw HTTP requests to a local stack, signed (botocore's SigV4) or not, with any Host or Origin:
what a browser, a DNS-rebinding page or a stranger on the network would send."""
from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lambdaface.local.keys import Keys
from lambdaface.local.process import REGION

# one request per service, as the SDKs send them: (service, method, path, headers, body)
LIST_TABLES = ("dynamodb", "POST", "/", {"X-Amz-Target": "DynamoDB_20120810.ListTables",
                                          "Content-Type": "application/x-amz-json-1.0"}, b"{}")
LIST_QUEUES = ("sqs", "POST", "/", {"X-Amz-Target": "AmazonSQS.ListQueues",
                                     "Content-Type": "application/x-amz-json-1.0"}, b"{}")


def list_objects(bucket: str) -> tuple[str, str, str, dict[str, str], bytes]:
    return ("s3", "GET", f"/{bucket}?list-type=2", {}, b"")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lowercase names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send(endpoint: str, service: str, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes = b"", keys: Keys | None = None, host: str | None = None) -> Answer:
    """Send one request to `endpoint`; signed with `keys` (SigV4, over the Host sent) unless None.
    `host` replaces the Host header (the connection still goes to `endpoint`)."""
    parts = urlsplit(endpoint)
    headers = dict(headers or {})
    headers["Host"] = host or parts.netloc
    if keys is not None:
        request = AWSRequest(method=method, url=f"{endpoint}{path}", data=body, headers=headers)
        SigV4Auth(Credentials(keys.access_key_id, keys.secret_access_key), service, REGION).add_auth(request)
        headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()
