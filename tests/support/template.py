"""Reading template.yaml: roles' policy statements, and intrinsic functions resolved against names."""
from __future__ import annotations

import re
from typing import Any


def as_list(value: Any) -> list[Any]:
    """IAM's "one or a list"."""
    return value if isinstance(value, list) else [value]


def role_of(resources: dict[str, Any], function: str) -> str:
    """The logical id of a function's role (`Role: !GetAtt X.Arn`)."""
    role = resources[function]["Properties"]["Role"]
    assert isinstance(role, dict) and "Fn::GetAtt" in role, role
    logical_id, attribute = role["Fn::GetAtt"]
    assert attribute == "Arn", role
    return logical_id


def role_statements(resources: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """The policy statements of a function's role, as the template writes them."""
    policies = resources[role_of(resources, function)]["Properties"]["Policies"]
    return [statement for policy in policies for statement in policy["PolicyDocument"]["Statement"]]


def resolve(value: Any, names: dict[str, str]) -> Any:
    """`Ref`, `Fn::GetAtt` and string `Fn::Sub` against `names` ("Bucket", "Bucket.Arn", ...)."""
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return names[arg]
        if fn == "Fn::GetAtt":
            return names[".".join(arg)]
        if fn == "Fn::Sub" and isinstance(arg, str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: names[m.group(1)], arg)
    if isinstance(value, dict):
        return {k: resolve(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, names) for v in value]
    return value
