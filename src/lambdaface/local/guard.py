"""The local stack's front door: a WSGI middleware in front of moto's server.

In every mode it refuses (403), before moto sees the request:
- moto's control API (`/moto-api/`, which resets or reconfigures everything) and its fake
  instance metadata (`/latest/`);
- a request whose `Host` names anything but the stack: the address the connection reached, a name
  the stack was told (`names`: localhost on loopback, the machine's names on a wildcard bind,
  `--host-name`), or the bucket's virtual-host name on one of them (the DNS-rebinding path);
- a request from a web page: an `Origin` other than the stack's own, or `Sec-Fetch-Site`
  cross-site / same-site (the AWS SDKs and CLI send neither);
- a request not signed with AWS Signature V4 (header or presigned query; S3's presigned SigV2
  query too) for S3, SQS, DynamoDB or EventBridge, the only services the stack serves (and
  `lambda` for the synchronous API's paths, /recognize and /compare, only: local/api.py); of
  EventBridge, only the calls the stack uses (EVENTS_ACTIONS: the workers' PutEvents, the stack's
  own rule to its events queue), never an API destination (moto's HTTP calls stay off).
It strips every `Access-Control-*` header from moto's responses (moto grants CORS to any origin).

With `keys` (remote mode) it also verifies each signature against them, as AWS does: the access
key, the signature over the canonical request (botocore computes the expected one), the clock
(15 minutes either way) or a presigned URL's expiry, and a payload hash the request declares
against its body. UNSIGNED-PAYLOAD and the streaming payload forms are accepted with the headers'
signature over the declared value (plain HTTP carries no encryption: see docs/SECURITY.md).
"""
from __future__ import annotations

import calendar
import hashlib
import hmac
import io
import ipaddress
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import quote, unquote, urlsplit

from botocore.auth import HmacV1Auth, SigV4Auth
from botocore.credentials import Credentials

from lambdaface.local.keys import Keys

SERVICES = ("s3", "sqs", "dynamodb", "events")
API_SERVICE, API_PATHS = "lambda", ("/recognize", "/compare")  # a Function URL's requests are signed for `lambda`
EVENTS_ACTIONS = ("AWSEvents.PutEvents", "AWSEvents.PutRule", "AWSEvents.PutTargets")
MAX_SKEW_S = 15 * 60  # AWS's RequestTimeTooSkewed
MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4's longest X-Amz-Expires
SIGV4 = "AWS4-HMAC-SHA256"
UNCHECKED_PAYLOADS = ("UNSIGNED-PAYLOAD", "STREAMING-")


class Refused(Exception):
    """A request the guard answers itself: 403 with `code` (by service) and `message`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "denied", "key", "signature"
        self.message = message


@dataclass(frozen=True)
class Signed:
    """What a request's SigV4 (or SigV2 query) signature claims."""

    access_key: str
    service: str
    region: str
    date: str  # X-Amz-Date (SigV4) or "" (SigV2)
    signed_headers: tuple[str, ...]
    signature: str
    presigned: bool
    version: int = 4
    expires: int = 0  # presigned: X-Amz-Expires seconds (SigV4) or the epoch (SigV2)


def host_name(host: str) -> str:
    """The name part of a Host header, lowercased: "[::1]:80" -> "::1", "Example:80" -> "example"."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") > 1:  # a bare IPv6 address (not valid in Host, but unambiguous)
        return host
    return host.partition(":")[0].rstrip(".")


def is_loopback(host: str) -> bool:
    """Is `host` (an address or "localhost") a loopback address?"""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Guard:
    """WSGI middleware: see the module docstring. `names`: Host names (lowercase) the stack answers
    to besides the connection's own address; `bucket`: its virtual-host prefix; `keys`: remote mode."""

    def __init__(self, app: Any, names: Iterable[str], bucket: str, keys: Keys | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.names = {n.lower().strip("[]") for n in names}
        self.bucket = bucket.lower()
        self.keys = keys
        self.clock = clock

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        try:
            self.check(environ)
        except Refused as refusal:
            return _refuse(environ, start_response, refusal)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
            return start_response(status, kept, exc_info) if exc_info else start_response(status, kept)

        return self.app(environ, start)

    # --- the checks ----------------------------------------------------------------------------

    def check(self, environ: dict[str, Any]) -> None:
        """Raise Refused unless the request may reach moto."""
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith("/moto-api") or path.startswith("/latest/") or path == "/favicon.ico":
            raise Refused("denied", "moto's control API is not served by the local stack")
        self.check_host(environ)
        self.check_origin(environ)
        signed = parse_signature(environ)
        if (signed.service == API_SERVICE) != (path.rstrip("/") in API_PATHS):
            raise Refused("denied", f"the synchronous API ({', '.join(API_PATHS)}) is signed for service "
                                    f"{API_SERVICE!r}, and nothing else is")
        if signed.service not in SERVICES and signed.service != API_SERVICE:
            raise Refused("denied", f"the local stack serves {', '.join(SERVICES)}, not {signed.service!r}")
        if signed.service == "events":
            self.check_events(environ)
        if self.keys is not None:
            self.verify(environ, signed)

    @staticmethod
    def check_events(environ: dict[str, Any]) -> None:
        """Of EventBridge, only EVENTS_ACTIONS, and no target but an SQS queue (no API destination)."""
        action = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if action not in EVENTS_ACTIONS:
            raise Refused("denied", f"the local stack serves EventBridge's {', '.join(EVENTS_ACTIONS)} only, not {action!r}")
        if action == "AWSEvents.PutTargets":
            try:
                targets = json.loads(read_body(environ) or b"{}").get("Targets") or []
                arns = [str(t.get("Arn", "")) for t in targets]
            except (ValueError, AttributeError):
                raise Refused("denied", "PutTargets: the request is not JSON") from None
            if not arns or not all(a.startswith("arn:aws:sqs:") for a in arns):
                raise Refused("denied", "PutTargets: the local stack's rules target SQS queues only")

    def check_host(self, environ: dict[str, Any]) -> None:
        raw = str(environ.get("HTTP_HOST", ""))
        name = host_name(raw)
        if not name:
            raise Refused("denied", "a request must name the stack in its Host header")
        own = set(self.names)
        local = _local_address(environ)
        if local:
            own.add(local)
            if is_loopback(local):
                own.add("localhost")
        if name in own:
            return
        head, _, rest = name.partition(".")
        if head == self.bucket and rest in own:
            return
        raise Refused("denied", f"Host {raw!r} is not this stack's address")

    def check_origin(self, environ: dict[str, Any]) -> None:
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and origin.rstrip("/").lower() != f"http://{environ.get('HTTP_HOST', '')}".lower():
            raise Refused("denied", f"requests from web pages ({origin}) are refused")
        if str(environ.get("HTTP_SEC_FETCH_SITE", "")).lower() in ("cross-site", "same-site"):
            raise Refused("denied", "requests from other sites' web pages are refused")

    def verify(self, environ: dict[str, Any], signed: Signed) -> None:
        """Remote mode: the signature must be ours, fresh, and over this request."""
        assert self.keys is not None
        if not hmac.compare_digest(signed.access_key, self.keys.access_key_id):
            raise Refused("key", "the access key is not this stack's")
        now = self.clock()
        if signed.version == 2:
            if now > signed.expires:
                raise Refused("signature", "the presigned URL has expired")
            expected = _sigv2_signature(environ, signed, self.keys)
        else:
            when = _amz_time(signed.date)
            if signed.presigned:
                if not 0 < signed.expires <= MAX_PRESIGN_S:
                    raise Refused("signature", "X-Amz-Expires must be between 1 and 604800 seconds")
                if when - MAX_SKEW_S > now:
                    raise Refused("signature", "the presigned URL is dated in the future")
                if now > when + signed.expires:
                    raise Refused("signature", "the presigned URL has expired")
            elif abs(now - when) > MAX_SKEW_S:
                raise Refused("signature", "the request's time is too far from the stack's (RequestTimeTooSkewed)")
            if "host" not in signed.signed_headers:
                raise Refused("signature", "the host header must be signed")
            expected = _sigv4_signature(environ, signed, self.keys)
        if not hmac.compare_digest(expected, signed.signature):
            raise Refused("signature", "the request signature does not match (SignatureDoesNotMatch)")


# --- reading a request ---------------------------------------------------------------------------


def parse_signature(environ: dict[str, Any]) -> Signed:
    """The SigV4 header, SigV4 query or (S3) SigV2 query signature of a request; Refused if none."""
    auth = str(environ.get("HTTP_AUTHORIZATION", ""))
    query = _query_pairs(environ)
    params = {k: v for k, v in query}
    if auth:
        # moto picks the service from the scope the same way: auth.split(",")[0].split()[1]
        head = auth.split(",")[0].split()
        if len(head) != 2 or head[0] != SIGV4 or not head[1].startswith("Credential="):
            raise Refused("signature", "only AWS Signature Version 4 is accepted")
        fields = dict(part.strip().partition("=")[::2] for part in auth[len(SIGV4):].split(","))
        scope = fields.get("Credential", "").split("/")
        if len(scope) != 5 or scope[4] != "aws4_request" or not fields.get("Signature"):
            raise Refused("signature", "malformed Authorization header")
        date = str(environ.get("HTTP_X_AMZ_DATE", ""))
        if not date.startswith(scope[1]):
            raise Refused("signature", "X-Amz-Date is missing or does not match the credential's date")
        return Signed(scope[0], scope[3].lower(), scope[2], date,
                      tuple(h.strip() for h in fields.get("SignedHeaders", "").split(";") if h.strip()),
                      fields["Signature"], presigned=False)
    if params.get("X-Amz-Algorithm"):
        if params["X-Amz-Algorithm"] != SIGV4:
            raise Refused("signature", "only AWS Signature Version 4 is accepted")
        scope = params.get("X-Amz-Credential", "").split("/")
        date = params.get("X-Amz-Date", "")
        if len(scope) != 5 or scope[4] != "aws4_request" or not date.startswith(scope[1]) or not params.get("X-Amz-Signature"):
            raise Refused("signature", "malformed presigned URL")
        if scope[3].lower() != "s3":  # moto serves a presigned request as S3's, whatever the scope says
            raise Refused("denied", "presigned URLs are for S3 only")
        try:
            expires = int(params.get("X-Amz-Expires", ""))
        except ValueError:
            raise Refused("signature", "malformed X-Amz-Expires") from None
        return Signed(scope[0], "s3", scope[2], date,
                      tuple(h for h in params.get("X-Amz-SignedHeaders", "").split(";") if h),
                      params["X-Amz-Signature"], presigned=True, expires=expires)
    if params.get("AWSAccessKeyId") and params.get("Signature") and params.get("Expires"):
        try:
            expires = int(params["Expires"])
        except ValueError:
            raise Refused("signature", "malformed Expires") from None
        return Signed(params["AWSAccessKeyId"], "s3", "", "", (), params["Signature"], presigned=True,
                      version=2, expires=expires)
    raise Refused("denied", "the request is not signed (AWS Signature Version 4)")


def _query_pairs(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """The query string's (name, value) pairs, decoded."""
    text = str(environ.get("QUERY_STRING", ""))
    return [(unquote(k), unquote(v)) for k, _, v in (p.partition("=") for p in text.split("&") if p)]


def _raw_path(environ: dict[str, Any]) -> str:
    """The request's path as sent (still percent-encoded), which SigV4 signs for S3."""
    raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "")
    if raw.startswith(("http://", "https://")):
        raw = urlsplit(raw).path or "/"
    return raw.partition("?")[0] or quote(str(environ.get("PATH_INFO", "/")), safe="/~")


def _header(environ: dict[str, Any], name: str) -> str | None:
    if name == "content-type":
        return environ.get("CONTENT_TYPE")
    if name == "content-length":
        return environ.get("CONTENT_LENGTH")
    return environ.get("HTTP_" + name.upper().replace("-", "_"))


def read_body(environ: dict[str, Any]) -> bytes:
    """The request body, read once and put back for the app behind."""
    cached = environ.get("lambdaface.body")
    if cached is not None:
        return cached
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["lambdaface.body"] = body
    return body


def _amz_time(stamp: str) -> float:
    try:
        return calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise Refused("signature", f"malformed X-Amz-Date {stamp!r}") from None


def _payload_hash(environ: dict[str, Any], signed: Signed) -> str:
    """The payload hash the canonical request ends with; a declared hex hash is checked against the body."""
    if signed.presigned:
        return "UNSIGNED-PAYLOAD"
    declared = environ.get("HTTP_X_AMZ_CONTENT_SHA256")
    if declared is not None and declared.startswith(UNCHECKED_PAYLOADS):
        return declared
    actual = hashlib.sha256(read_body(environ)).hexdigest()
    if declared is not None and declared.lower() != actual:
        raise Refused("signature", "the body does not match X-Amz-Content-SHA256")
    return actual


def _canonical_query(environ: dict[str, Any], presigned: bool) -> str:
    pairs = [(quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in _query_pairs(environ)
             if not (presigned and k == "X-Amz-Signature")]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _sigv4_signature(environ: dict[str, Any], signed: Signed, keys: Keys) -> str:
    """The signature `keys` give this request (botocore computes it from the canonical request)."""
    headers = []
    for name in sorted(signed.signed_headers):
        value = _header(environ, name)
        if value is None:
            raise Refused("signature", f"signed header {name!r} is missing")
        headers.append(f"{name}:{' '.join(value.split())}")
    canonical = "\n".join([
        str(environ.get("REQUEST_METHOD", "GET")).upper(),
        _raw_path(environ),
        _canonical_query(environ, signed.presigned),
        "\n".join(headers) + "\n",
        ";".join(sorted(signed.signed_headers)),
        _payload_hash(environ, signed),
    ])
    signer = SigV4Auth(Credentials(keys.access_key_id, keys.secret_access_key), signed.service, signed.region)
    request = _Context({"timestamp": signed.date})
    return signer.signature(signer.string_to_sign(request, canonical), request)


@dataclass
class _Context:
    context: dict[str, str]


def _sigv2_signature(environ: dict[str, Any], signed: Signed, keys: Keys) -> str:
    """S3's presigned SigV2 (query) signature that `keys` give this request (botocore's HmacV1)."""
    signer = HmacV1Auth(Credentials(keys.access_key_id, keys.secret_access_key))
    amz = sorted((k[5:].lower().replace("_", "-"), str(v).strip()) for k, v in environ.items()
                 if k.startswith("HTTP_X_AMZ_"))
    resource = signer.canonical_resource(urlsplit(f"{_raw_path(environ)}?{environ.get('QUERY_STRING', '')}"))
    text = "\n".join([
        str(environ.get("REQUEST_METHOD", "GET")).upper(),
        str(environ.get("HTTP_CONTENT_MD5", "")),
        str(environ.get("CONTENT_TYPE", "")),
        str(signed.expires),
        *(f"{k}:{v}" for k, v in amz),
        resource,
    ])
    return signer.sign_string(text)


def _local_address(environ: dict[str, Any]) -> str:
    """The address the client's connection reached (the server's end of the socket)."""
    sock = environ.get("werkzeug.socket")
    try:
        return str(sock.getsockname()[0]).lower() if sock is not None else ""
    except OSError:
        return ""


# --- answering a refused request -------------------------------------------------------------------

_CODES = {  # kind -> (S3, SQS, DynamoDB) error codes, as the real services name them
    "denied": ("AccessDenied", "AccessDenied", "AccessDeniedException"),
    "key": ("InvalidAccessKeyId", "InvalidClientTokenId", "UnrecognizedClientException"),
    "signature": ("SignatureDoesNotMatch", "SignatureDoesNotMatch", "InvalidSignatureException"),
}


def _service_of(environ: dict[str, Any]) -> str:
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target.startswith("DynamoDB"):
        return "dynamodb"
    if target.startswith("AmazonSQS"):
        return "sqs-json"
    if target.startswith("AWSEvents"):
        return "events"
    scope = str(environ.get("HTTP_AUTHORIZATION", "")).split(",")[0].split("/")
    if len(scope) > 3 and scope[3] == "sqs":
        return "sqs"
    return "s3"


def _refuse(environ: dict[str, Any], start_response: Any, refusal: Refused) -> list[bytes]:
    s3_code, sqs_code, dynamodb_code = _CODES[refusal.kind]
    service = _service_of(environ)
    message = refusal.message.replace("&", "&amp;").replace("<", "&lt;")
    if service == "dynamodb":
        body, kind = _json(f"com.amazon.coral.service#{dynamodb_code}", refusal.message), "application/x-amz-json-1.0"
    elif service == "sqs-json":
        body, kind = _json(f"com.amazonaws.sqs#{sqs_code}", refusal.message), "application/x-amz-json-1.0"
    elif service == "events":
        body, kind = _json(dynamodb_code, refusal.message), "application/x-amz-json-1.1"
    elif service == "sqs":
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{sqs_code}</Code><Message>{message}</Message>"
                "</Error><RequestId>local</RequestId></ErrorResponse>").encode()
        kind = "text/xml"
    else:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{s3_code}</Code><Message>{message}</Message>'
                "<RequestId>local</RequestId></Error>").encode()
        kind = "application/xml"
    headers = [("Content-Type", kind), ("Content-Length", str(len(body)))]
    if service == "sqs-json":
        headers.append(("x-amzn-query-error", f"{sqs_code};Sender"))
    start_response("403 Forbidden", headers)
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def _json(kind: str, message: str) -> bytes:
    return json.dumps({"__type": kind, "message": message}).encode()
