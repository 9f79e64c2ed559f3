"""What the local stack must create, read from template.yaml (the one source of truth).

`stack_spec(template)` resolves the intrinsic functions the template uses (`Ref`, `Fn::GetAtt`,
`Fn::Sub`, `Fn::If`, `Fn::Equals`, `Fn::Not`) against parameter defaults and deterministic local
physical names, and returns the bucket, its notification rules, the queues, the tables, the
SQS-triggered functions and the scheduled ones (every event a `rate(...)` Schedule). Any other
intrinsic function is refused with a TemplateError. `parameters` override the parameters' defaults,
as `sam deploy --parameter-overrides` would.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

ACCOUNT_ID = "123456789012"  # moto's default account
STACK_NAME = "lambdaface"
ENDPOINT = "{endpoint}"  # stands for the local endpoint in queue URLs until it is known (`local_url`)


class TemplateError(ValueError):
    """The template declares something the local stack cannot reproduce."""


@dataclass(frozen=True)
class QueueSpec:
    logical_id: str
    name: str
    attributes: dict[str, str]  # SQS CreateQueue attributes, RedrivePolicy excluded
    dlq: str | None = None  # logical id of the dead-letter queue
    max_receive_count: int | None = None


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    name: str
    properties: dict[str, Any]  # CreateTable arguments (KeySchema, AttributeDefinitions, ...)
    ttl_attribute: str | None = None


@dataclass(frozen=True)
class NotificationSpec:
    queue: str  # logical id
    events: tuple[str, ...]
    prefix: str | None = None
    suffix: str | None = None


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    handler: str  # "module.function"
    queue: str  # logical id of the queue that triggers it
    batch_size: int = 10
    batching_window_s: int = 0
    report_batch_item_failures: bool = False
    timeout_s: int = 3
    memory_mb: int = 128
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduledSpec:
    """A function run on a schedule (EventBridge's `rate(...)`), with a Scheduled Event."""

    logical_id: str
    name: str
    handler: str  # "module.function"
    rate_s: int  # seconds between runs
    timeout_s: int = 3
    memory_mb: int = 128
    environment: dict[str, str] = field(default_factory=dict)
    rule: str = ""  # the EventBridge rule's name, in the event's `resources`
    input: str | None = None  # the event's `Input` (JSON text): sent instead of the Scheduled Event


@dataclass(frozen=True)
class UrlFunctionSpec:
    """A function behind a Function URL (no event source): the local stack serves it over HTTP."""

    logical_id: str
    name: str
    handler: str  # "module.function"
    auth_type: str  # "AWS_IAM" or "NONE" (the local stack signs-checks both as its other services)
    timeout_s: int = 3
    memory_mb: int = 128
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExpirySpec:
    """A bucket lifecycle rule that expires objects: those under `prefix`, `days` after their writing."""

    rule_id: str
    prefix: str
    days: int


@dataclass(frozen=True)
class StackSpec:
    bucket: str
    notifications: tuple[NotificationSpec, ...]
    queues: dict[str, QueueSpec]
    tables: dict[str, TableSpec]
    functions: dict[str, FunctionSpec]
    region: str
    scheduled: dict[str, ScheduledSpec] = field(default_factory=dict)
    expiry: tuple[ExpirySpec, ...] = ()  # the bucket's lifecycle expirations (local.expiry applies them)
    url_functions: dict[str, UrlFunctionSpec] = field(default_factory=dict)  # the synchronous API (local/api.py)

    def queue_arn(self, logical_id: str) -> str:
        return f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{self.queues[logical_id].name}"


_SUB = re.compile(r"\$\{([^}!]+)\}")


class _Resolver:
    """Evaluates CloudFormation intrinsic functions for a local, deterministic stack."""

    def __init__(self, template: Mapping[str, Any], region: str, names: Mapping[str, str],
                 parameters: Mapping[str, str] | None = None):
        self.resources: dict[str, Any] = dict(template.get("Resources") or {})
        declared: dict[str, Any] = dict(template.get("Parameters") or {})
        self.params = {name: str(p.get("Default", "")) for name, p in declared.items()}
        for name, value in (parameters or {}).items():
            if name not in declared:
                raise TemplateError(f"no parameter {name!r} in the template; it has {', '.join(declared)}")
            self.params[name] = _checked_parameter(name, declared[name] or {}, str(value))
        self.conditions: dict[str, Any] = dict(template.get("Conditions") or {})
        self.region = region
        self.names = dict(names)  # logical id -> physical name overrides
        self.pseudo = {
            "AWS::StackName": STACK_NAME,
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }

    def physical_name(self, logical_id: str) -> str:
        if logical_id in self.names:
            return self.names[logical_id]
        resource = self.resources[logical_id]
        props = resource.get("Properties") or {}
        explicit = {
            "AWS::S3::Bucket": "BucketName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::DynamoDB::Table": "TableName",
            "AWS::Serverless::Function": "FunctionName",
            "AWS::Lambda::Function": "FunctionName",
        }.get(resource.get("Type", ""))
        name = self.value(props.get(explicit)) if explicit else None
        if not name:
            name = f"{STACK_NAME}-{logical_id}".lower() if resource.get("Type") == "AWS::S3::Bucket" \
                else f"{STACK_NAME}-{logical_id}"
        self.names[logical_id] = str(name)
        return self.names[logical_id]

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.resources:
            kind = self.resources[name].get("Type", "")
            if kind == "AWS::SQS::Queue":  # moto's queue URLs: the endpoint, account, name
                return f"{ENDPOINT}/{ACCOUNT_ID}/{self.physical_name(name)}"
            return self.physical_name(name)
        raise TemplateError(f"!Ref {name}: no such parameter or resource")

    def get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id not in self.resources:
            raise TemplateError(f"!GetAtt {logical_id}.{attribute}: no such resource")
        kind = self.resources[logical_id].get("Type", "")
        name = self.physical_name(logical_id)
        service = {"AWS::SQS::Queue": "sqs", "AWS::DynamoDB::Table": "dynamodb", "AWS::S3::Bucket": "s3"}
        if attribute == "Arn":
            if kind == "AWS::SQS::Queue":
                return f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{name}"
            if kind == "AWS::DynamoDB::Table":
                return f"arn:aws:dynamodb:{self.region}:{ACCOUNT_ID}:table/{name}"
            if kind == "AWS::S3::Bucket":
                return f"arn:aws:s3:::{name}"
            if kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
                return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{name}"
            return f"arn:aws:{service.get(kind, 'local')}:{self.region}:{ACCOUNT_ID}:{name}"
        if attribute in ("QueueName", "TableName", "BucketName"):
            return name
        if attribute == "QueueUrl":
            return self.ref(logical_id)
        return f"{logical_id}.{attribute}"  # unused locally (e.g. StreamArn): keep it recognizable

    def condition(self, name: str) -> bool:
        return bool(self.value(self.conditions[name]))

    def value(self, node: Any) -> Any:
        """`node` with every intrinsic function evaluated."""
        if isinstance(node, list):
            return [self.value(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
                return self.get_att(logical_id, attribute)
            if fn == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.value(arg[1]))
                return _SUB.sub(lambda m: str(self._sub_var(m.group(1), extra)), text)
            if fn == "Fn::If":
                cond, yes, no = arg
                return self.value(yes if self.condition(cond) else no)
            if fn == "Fn::Equals":
                a, b = self.value(arg)
                return str(a) == str(b)
            if fn == "Fn::Not":
                return not self.value(arg[0]) if isinstance(arg, list) else not self.value(arg)
            if fn.startswith("Fn::") or fn == "Condition":
                raise TemplateError(f"{fn} is not supported by the local stack")
        return {k: v for k, v in ((k, self.value(v)) for k, v in node.items()) if v is not None}

    def _sub_var(self, name: str, extra: Mapping[str, Any]) -> Any:
        if name in extra:
            return extra[name]
        if "." in name:
            return self.get_att(*name.split(".", 1))
        return self.ref(name)


def _checked_parameter(name: str, declared: Mapping[str, Any], value: str) -> str:
    """`value` for parameter `name`, refused (TemplateError) where CloudFormation would refuse it."""
    allowed = declared.get("AllowedValues")
    if allowed is not None and value not in [str(a) for a in allowed]:
        raise TemplateError(f"parameter {name}={value!r}: not one of {', '.join(map(str, allowed))}")
    pattern = declared.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(str(pattern), value):
        raise TemplateError(f"parameter {name}={value!r}: does not match {pattern}")
    if declared.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise TemplateError(f"parameter {name}={value!r}: not a number") from None
        if "MinValue" in declared and number < float(declared["MinValue"]):
            raise TemplateError(f"parameter {name}={value}: below its MinValue {declared['MinValue']}")
        if "MaxValue" in declared and number > float(declared["MaxValue"]):
            raise TemplateError(f"parameter {name}={value}: above its MaxValue {declared['MaxValue']}")
    return value


_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> int:
    """Seconds between runs of an EventBridge `rate(N minute|minutes|hour|hours|day|days)`."""
    match = _RATE.match(str(expression).strip())
    if not match or int(match[1]) < 1:
        raise TemplateError(f"schedule {expression!r}: the local stack runs only rate(N minutes|hours|days)")
    return int(match[1]) * _UNIT_S[match[2].rstrip("s")]


def local_url(value: str, endpoint: str) -> str:
    """A resolved value with the local endpoint filled in (queue URLs)."""
    return value.replace(ENDPOINT, endpoint)


def _of_type(resources: Mapping[str, Any], *types: str) -> list[str]:
    return [lid for lid, r in resources.items() if isinstance(r, dict) and r.get("Type") in types]


def _merge_globals(globals_: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals: maps merge (Environment.Variables), scalars and lists are overridden."""
    merged: dict[str, Any] = dict(globals_)
    for key, value in props.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_globals(merged[key], value)
        else:
            merged[key] = value
    return merged


def _queue_attributes(props: Mapping[str, Any]) -> dict[str, str]:
    names = {
        "VisibilityTimeout": "VisibilityTimeout",
        "MessageRetentionPeriod": "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
        "DelaySeconds": "DelaySeconds",
        "MaximumMessageSize": "MaximumMessageSize",
        "FifoQueue": "FifoQueue",
        "ContentBasedDeduplication": "ContentBasedDeduplication",
    }
    out = {}
    for prop, attribute in names.items():
        if prop in props:
            value = props[prop]
            out[attribute] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def stack_spec(
    template: Mapping[str, Any], region: str = "us-east-1", bucket: str | None = None,
    parameters: Mapping[str, str] | None = None,
) -> StackSpec:
    """The resources of `template` as the local stack creates them; `bucket` renames the bucket,
    `parameters` override parameter defaults (TemplateError for a name the template lacks or a
    value it does not allow)."""
    resources = template.get("Resources") or {}
    buckets = _of_type(resources, "AWS::S3::Bucket")
    if len(buckets) != 1:
        raise TemplateError(f"expected one AWS::S3::Bucket, found {len(buckets)}")
    r = _Resolver(template, region, {buckets[0]: bucket} if bucket else {}, parameters)
    queues = _queues(r)
    arn_to_queue = {r.get_att(lid, "Arn"): lid for lid in queues}
    functions, scheduled, url_functions = _functions(r, template, arn_to_queue)
    return StackSpec(
        bucket=r.physical_name(buckets[0]),
        notifications=_notifications(r, buckets[0], arn_to_queue),
        queues=queues,
        tables=_tables(r),
        functions=functions,
        region=region,
        scheduled=scheduled,
        expiry=_expiry(r, buckets[0]),
        url_functions=url_functions,
    )


def _queue_of(arn_to_queue: Mapping[str, str], arn: Any, where: str) -> str:
    if arn not in arn_to_queue:
        raise TemplateError(f"{where}: {arn} is not a queue of the template")
    return arn_to_queue[arn]


def _queues(r: _Resolver) -> dict[str, QueueSpec]:
    """Every AWS::SQS::Queue, with its dead-letter queue's logical id."""
    found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for lid in _of_type(r.resources, "AWS::SQS::Queue"):
        props = r.value(r.resources[lid].get("Properties") or {})
        redrive = props.get("RedrivePolicy") or {}
        found[lid] = (props, json.loads(redrive) if isinstance(redrive, str) else redrive)
    arn_to_queue = {r.get_att(lid, "Arn"): lid for lid in found}
    queues = {}
    for lid, (props, redrive) in found.items():
        dlq = redrive.get("deadLetterTargetArn")
        if dlq is not None and dlq not in arn_to_queue:
            raise TemplateError(f"{lid}: dead-letter queue {dlq} is not in the template")
        queues[lid] = QueueSpec(
            logical_id=lid,
            name=r.physical_name(lid),
            attributes=_queue_attributes(props),
            dlq=arn_to_queue[dlq] if dlq is not None else None,
            max_receive_count=int(redrive["maxReceiveCount"]) if "maxReceiveCount" in redrive else None,
        )
    return queues


def _notifications(r: _Resolver, bucket_id: str, arn_to_queue: Mapping[str, str]) -> tuple[NotificationSpec, ...]:
    """The bucket's S3 -> SQS notification rules."""
    props = r.value(r.resources[bucket_id].get("Properties") or {})
    rules = []
    for rule in (props.get("NotificationConfiguration") or {}).get("QueueConfigurations") or []:
        filters = {f["Name"].lower(): f["Value"] for f in ((rule.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []}
        rules.append(NotificationSpec(
            queue=_queue_of(arn_to_queue, rule["Queue"], f"{bucket_id} notification"),
            events=(rule["Event"],) if isinstance(rule["Event"], str) else tuple(rule["Event"]),
            prefix=filters.get("prefix"),
            suffix=filters.get("suffix"),
        ))
    return tuple(rules)


def _expiry(r: _Resolver, bucket_id: str) -> tuple[ExpirySpec, ...]:
    """The bucket's enabled lifecycle rules that expire objects after a number of days."""
    props = r.value(r.resources[bucket_id].get("Properties") or {})
    rules = []
    for rule in (props.get("LifecycleConfiguration") or {}).get("Rules") or []:
        days = rule.get("ExpirationInDays")
        if str(rule.get("Status", "Enabled")) != "Enabled" or days is None:
            continue
        prefix = rule.get("Prefix") or ((rule.get("Filter") or {}).get("Prefix")) or ""
        rules.append(ExpirySpec(str(rule.get("Id", "")), str(prefix), int(days)))
    return tuple(rules)


def _tables(r: _Resolver) -> dict[str, TableSpec]:
    """Every AWS::DynamoDB::Table, as CreateTable arguments and its TTL attribute."""
    tables = {}
    for lid in _of_type(r.resources, "AWS::DynamoDB::Table"):
        props = r.value(r.resources[lid].get("Properties") or {})
        ttl = props.get("TimeToLiveSpecification") or {}
        create = {k: props[k] for k in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes",
                                        "LocalSecondaryIndexes") if k in props}
        create["BillingMode"] = props.get("BillingMode", "PROVISIONED")
        if create["BillingMode"] == "PROVISIONED":
            create["ProvisionedThroughput"] = props.get("ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
        tables[lid] = TableSpec(lid, r.physical_name(lid), create, ttl.get("AttributeName") if ttl.get("Enabled") else None)
    return tables


SCHEDULES = ("Schedule", "ScheduleV2")


def _functions(
    r: _Resolver, template: Mapping[str, Any], arn_to_queue: Mapping[str, str]
) -> tuple[dict[str, FunctionSpec], dict[str, ScheduledSpec], dict[str, UrlFunctionSpec]]:
    """Every AWS::Serverless::Function with an enabled SQS event source, every one whose events
    are all schedules, and every one with a Function URL and no event (SAM's Globals merged in)."""
    globals_ = r.value((template.get("Globals") or {}).get("Function") or {})
    functions: dict[str, FunctionSpec] = {}
    scheduled: dict[str, ScheduledSpec] = {}
    url_functions: dict[str, UrlFunctionSpec] = {}
    for lid in _of_type(r.resources, "AWS::Serverless::Function"):
        props = _merge_globals(globals_, r.value(r.resources[lid].get("Properties") or {}))
        events = props.get("Events") or {}
        if not events and props.get("FunctionUrlConfig"):
            url_functions[lid] = UrlFunctionSpec(
                logical_id=lid, name=r.physical_name(lid), handler=str(props["Handler"]),
                auth_type=str(props["FunctionUrlConfig"].get("AuthType", "AWS_IAM")),
                timeout_s=int(props.get("Timeout", 3)), memory_mb=int(props.get("MemorySize", 128)),
                environment={k: str(v) for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()},
            )
            continue
        if events and all(e.get("Type") in SCHEDULES for e in events.values()):
            spec = _scheduled(r, lid, props, events)
            if spec is not None:
                scheduled[lid] = spec
            continue
        sqs_events = [e["Properties"] for e in events.values() if e.get("Type") == "SQS"]
        if len(sqs_events) != 1 or any(e.get("Type") in SCHEDULES for e in events.values()):
            raise TemplateError(
                f"{lid}: expected one SQS event source or only Schedule events, found "
                f"{', '.join(str(e.get('Type')) for e in events.values()) or 'none'}"
            )
        source = sqs_events[0]
        if source.get("Enabled") is False:
            continue
        functions[lid] = FunctionSpec(
            logical_id=lid,
            name=r.physical_name(lid),
            handler=str(props["Handler"]),
            queue=_queue_of(arn_to_queue, source["Queue"], f"{lid} SQS event"),
            batch_size=int(source.get("BatchSize", 10)),
            batching_window_s=int(source.get("MaximumBatchingWindowInSeconds", 0)),
            report_batch_item_failures="ReportBatchItemFailures" in (source.get("FunctionResponseTypes") or []),
            timeout_s=int(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            environment={k: str(v) for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()},
        )
    if not functions:
        raise TemplateError("no SQS-triggered AWS::Serverless::Function in the template")
    return functions, scheduled, url_functions


def _scheduled(r: _Resolver, lid: str, props: Mapping[str, Any], events: Mapping[str, Any]) -> ScheduledSpec | None:
    """A function whose events are all schedules: the one enabled schedule, or None if none is."""
    enabled = []
    for event_id, event in events.items():
        source = event.get("Properties") or {}
        state = str(source.get("State", "ENABLED")).upper()
        if source.get("Enabled") is False or state == "DISABLED":
            continue
        enabled.append((event_id, source))
    if not enabled:
        return None
    if len(enabled) > 1:
        raise TemplateError(f"{lid}: expected one enabled schedule, found {len(enabled)}")
    event_id, source = enabled[0]
    expression = source.get("Schedule") or source.get("ScheduleExpression") or ""
    payload = source.get("Input")
    return ScheduledSpec(
        logical_id=lid,
        name=r.physical_name(lid),
        handler=str(props["Handler"]),
        rate_s=rate_seconds(expression),
        timeout_s=int(props.get("Timeout", 3)),
        memory_mb=int(props.get("MemorySize", 128)),
        environment={k: str(v) for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()},
        rule=f"{STACK_NAME}-{lid}{event_id}",
        input=None if payload is None else payload if isinstance(payload, str) else json.dumps(payload),
    )
