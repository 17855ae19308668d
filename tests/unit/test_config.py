"""Settings from the environment: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import ipaddress

import pytest

from refapi.config import DEFAULT_CORS_ORIGINS, ConfigError, RedisNode, Settings


def test_defaults_match_the_contract() -> None:
    settings = Settings.from_env({})
    assert (settings.http_port, settings.https_port, settings.workers) == (8001, 8444, 4)
    assert settings.max_request_size == 10485760 and settings.max_message_size == 1000000
    assert (settings.rate_limit_general, settings.rate_limit_health, settings.rate_limit_metrics) == (100, 200, 1000)
    assert settings.cors_origins == DEFAULT_CORS_ORIGINS and len(DEFAULT_CORS_ORIGINS) == 8
    assert settings.redis_nodes == (RedisNode("redis-1", "localhost", 6379),)


@pytest.mark.parametrize("raw", ["true", "1", "YES", "On"])
def test_booleans_accept_the_contract_spellings(raw: str) -> None:
    assert Settings.from_env({"DEBUG": raw}).debug is True


def test_lists_networks_and_redis_nodes_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "CORS_ORIGINS": " http://a.example , http://b.example ,",
            "TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16",
            "REDIS_NODES": "127.0.0.1:7001, second=127.0.0.1:7002,127.0.0.1:7003",
        }
    )
    assert settings.cors_origins == ("http://a.example", "http://b.example")
    assert settings.trusted_proxies == (ipaddress.ip_network("10.0.0.1/32"), ipaddress.ip_network("192.168.0.0/16"))
    assert [node.name for node in settings.redis_nodes] == ["redis-1", "second", "redis-3"]
    assert settings.redis_node("second") == RedisNode("second", "127.0.0.1", 7002)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_FIRST_HTTP_PORT", "eighty"),
        ("API_FIRST_HTTP_PORT", "70000"),
        ("DEBUG", "maybe"),
        ("BACKEND_TIMEOUT", "0"),
        ("TRUSTED_PROXIES", "not-an-ip"),
        ("REDIS_NODES", "localhost"),
        ("LOG_LEVEL", "LOUD"),
        ("CRITICAL_SERVICES", "postgres,oracle"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_secrets_stay_out_of_repr() -> None:
    settings = Settings.from_env(
        {"VAULT_TOKEN": "s.supersecret", "POSTGRES_PASSWORD": "pw-123", "REFAPI_API_KEYS": "k1"}
    )
    text = repr(settings)
    assert "s.supersecret" not in text and "pw-123" not in text and "k1" not in text
