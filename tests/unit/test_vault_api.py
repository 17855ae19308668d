"""The Vault API's pure rules: masking, key lookup, the write body's problems, exception classification."""

from __future__ import annotations

import math
from typing import Any

import aiohttp
import pytest
from marshmallow import ValidationError

from refapi.api.vault import SecretWriteBody, find_key, is_sensitive, masked
from refapi.backends.vault import SecretNotFound, classify
from refapi.openapi.operation import flatten


def test_masking_covers_every_marker_whatever_the_value() -> None:
    data = {"DB_Password": None, "apiToken": "", "client_SECRET": 3, "private_key": {"a": 1}, "host": "h",
            "privatekey": "k", "user": None}
    assert masked(data) == {"DB_Password": "***", "apiToken": "***", "client_SECRET": "***", "private_key": "***",
                            "host": "h", "privatekey": "k", "user": None}
    assert is_sensitive("X_PRIVATE_KEY_PEM") and not is_sensitive("tok")


def test_key_lookup_is_exact_then_case_insensitive_first_in_sorted_order() -> None:
    data = {"b": 1, "Key": 2, "KEY": 3, "key": 4}
    assert find_key(data, "Key") == "Key"
    assert find_key(data, "kEy") == "KEY"
    assert find_key({"Key": 2}, "key") == "Key"
    assert find_key(data, "missing") is None


def load_problems(document: Any) -> list[tuple[list[str], str]]:
    try:
        SecretWriteBody().load(document)
    except ValidationError as exc:
        return [(p["loc"], p["type"]) for p in flatten(exc.messages, "body")]
    return []


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"a": "x" * 10000, "b": 1, "c": -2.5, "d": True, "e": 0}, []),
        ({}, [(["body"], "too_few_fields")]),
        ({f"k{i}": 1 for i in range(50)}, []),
        ({f"k{i}": 1 for i in range(51)}, [(["body"], "too_many_fields")]),
        ({"a b": 1, "c.d": 2}, [(["body"], "string_pattern_mismatch")]),
        ({"x" * 100: 1}, []),
        ({"x" * 101: 1}, [(["body"], "string_too_long")]),
        ({"a": math.inf}, [(["body", "a"], "value_type")]),
        ({"a": "x" * 10001, "b": None, "c": [], "d": {}}, [(["body", n], "value_type") for n in "abcd"]),
        ("text", [(["body"], "dict_type")]),
    ],
)
def test_write_body_rules(document: Any, expected: list[tuple[list[str], str]]) -> None:
    assert load_problems(document) == expected


def test_write_body_keeps_every_entry() -> None:
    assert SecretWriteBody().load({"a": "1", "b": 2}) == {"a": "1", "b": 2}


def test_classification() -> None:
    assert classify(aiohttp.ClientConnectionError()) == "unreachable"
    assert classify(ConnectionRefusedError()) == "unreachable"
    assert classify(aiohttp.ClientPayloadError()) == "error"
    assert classify(SecretNotFound()) is None
    assert classify(ValueError()) is None
