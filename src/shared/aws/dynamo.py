"""Small helpers over the low-level DynamoDB client: (de)serialising items, building updates."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _plain(value: Any) -> Any:
    """DynamoDB's Decimal, Binary and sets as plain Python values."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Binary):
        return bytes(value.value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, set)):
        return [_plain(v) for v in value]
    return value


def _dynamo(value: Any) -> Any:
    """Python values DynamoDB accepts (floats as Decimal)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dynamo(v) for v in value]
    return value


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item (attribute values) from a dict of Python values; None values are left out."""
    return {k: _serializer.serialize(_dynamo(v)) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """A dict of plain Python values from a DynamoDB item."""
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def value(v: Any) -> dict[str, Any]:
    """One attribute value."""
    return _serializer.serialize(_dynamo(v))


class Update:
    """Builds an UpdateItem call: `SET #a = :a`, `REMOVE #b` and the placeholders they need."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.sets: list[str] = []
        self.removes: list[str] = []

    def name(self, attribute: str) -> str:
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def val(self, v: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value(v)
        return placeholder

    def set(self, attribute: str, v: Any) -> "Update":
        """SET attribute = v (REMOVE attribute when v is None)."""
        if v is None:
            self.removes.append(self.name(attribute))
        else:
            self.sets.append(f"{self.name(attribute)} = {self.val(v)}")
        return self

    def set_expression(self, attribute: str, expression: str) -> "Update":
        """SET attribute = <expression>, written with placeholders from name() and val()."""
        self.sets.append(f"{self.name(attribute)} = {expression}")
        return self

    def kwargs(self, condition: str | None = None) -> dict[str, Any]:
        """UpdateExpression and friends, ready for client.update_item(**...)."""
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        out: dict[str, Any] = {"UpdateExpression": " ".join(parts), "ExpressionAttributeNames": self.names}
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        if condition:
            out["ConditionExpression"] = condition
        return out
