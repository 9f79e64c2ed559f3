"""Read template.yaml, the single source of truth for resources, without CloudFormation.

`load_template` turns the short-form intrinsic functions (`!Ref`, `!Sub`, `!GetAtt`, ...) into
their long form (`{"Ref": ...}`, `{"Fn::Sub": ...}`, `{"Fn::GetAtt": [resource, attribute]}`),
so the local stack and the tests can read queue settings, table keys and parameters as data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"

_FUNCTIONS = (
    "And", "Base64", "Cidr", "Equals", "FindInMap", "GetAZs", "GetAtt", "If", "ImportValue",
    "Join", "Not", "Or", "Select", "Split", "Sub", "Transform",
)


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that knows CloudFormation's short-form tags."""


def _construct(node: yaml.Node, loader: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


def _function(name: str):
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value = _construct(node, loader)
        if name == "GetAtt" and isinstance(value, str):
            resource, _, attribute = value.partition(".")
            value = [resource, attribute]
        return {f"Fn::{name}": value}

    return construct


_CfnLoader.add_constructor("!Ref", lambda loader, node: {"Ref": loader.construct_scalar(node)})
_CfnLoader.add_constructor("!Condition", lambda loader, node: {"Condition": loader.construct_scalar(node)})
for _name in _FUNCTIONS:
    _CfnLoader.add_constructor(f"!{_name}", _function(_name))


def load_template(path: str | Path = TEMPLATE) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML template into plain dicts and lists (long-form intrinsics)."""
    with open(path, encoding="utf-8") as stream:
        return yaml.load(stream, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


def parameter_defaults(template: dict[str, Any]) -> dict[str, str]:
    """Each parameter's default, as the string CloudFormation would pass to `!Ref`."""
    return {
        name: str(spec["Default"])
        for name, spec in template.get("Parameters", {}).items()
        if "Default" in spec
    }
