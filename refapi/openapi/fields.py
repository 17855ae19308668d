"""Marshmallow fields and validators whose errors carry the contract's `type` codes (§1.4) and never the value."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError, fields, validate


def problem(kind: str, msg: str) -> dict[str, str]:
    """A validation message in the shape the 422 envelope reports; marshmallow passes dicts through untouched."""
    return {"type": kind, "msg": msg}


MISSING = problem("missing", "Field required")


class Str(fields.String):
    default_error_messages = {
        "required": MISSING,
        "null": problem("string_type", "Input should be a valid string"),
        "invalid": problem("string_type", "Input should be a valid string"),
        "invalid_utf8": problem("string_type", "Input should be a valid string"),
    }


class Int(fields.Integer):
    """A JSON integer: booleans and floats are not integers here."""

    default_error_messages = {
        "required": MISSING,
        "null": problem("int_type", "Input should be a valid integer"),
        "invalid": problem("int_type", "Input should be a valid integer"),
        "too_large": problem("int_type", "Input should be a valid integer"),
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return value


class QueryInt(fields.Integer):
    """An integer from a query string or path: an optional '-' then digits, nothing else."""

    default_error_messages = {
        "required": MISSING,
        "null": problem("int_parsing", "Input should be a valid integer"),
        "invalid": problem("int_parsing", "Input should be a valid integer, unable to parse string as an integer"),
        "too_large": problem("int_parsing", "Input should be a valid integer"),
    }
    _SYNTAX = re.compile(r"-?[0-9]+")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not isinstance(value, str) or not self._SYNTAX.fullmatch(value):
            raise self.make_error("invalid")
        return int(value)


class Length(validate.Length):
    """Length in code points; the message states the bound, not the value."""

    def __call__(self, value: Any) -> Any:
        if self.min is not None and len(value) < self.min:
            unit = "character" if self.min == 1 else "characters"
            raise ValidationError(problem("string_too_short", f"String should have at least {self.min} {unit}"))
        if self.max is not None and len(value) > self.max:
            raise ValidationError(problem("string_too_long", f"String should have at most {self.max} characters"))
        return value


class Utf8Length(validate.Validator):
    """Length of the UTF-8 encoding, for payloads whose limit is in bytes (transit plaintext)."""

    def __init__(self, min: int = 0, max: int | None = None) -> None:
        self.min, self.max = min, max

    def __call__(self, value: str) -> str:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size < self.min:
            raise ValidationError(problem("string_too_short", f"String should be at least {self.min} byte(s) as UTF-8"))
        if self.max is not None and size > self.max:
            raise ValidationError(problem("string_too_long", f"String should be at most {self.max} bytes as UTF-8"))
        return value


class Range(validate.Range):
    def __call__(self, value: Any) -> Any:
        if self.min is not None and value < self.min:
            raise ValidationError(problem("greater_than_equal", f"Input should be greater than or equal to {self.min}"))
        if self.max is not None and value > self.max:
            raise ValidationError(problem("less_than_equal", f"Input should be less than or equal to {self.max}"))
        return value


class Pattern(validate.Regexp):
    """A full match (`re.match` with `$` would accept a trailing newline)."""

    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.message_text = f"String should match pattern '{pattern}'"

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(problem("string_pattern_mismatch", self.message_text))
        return value
