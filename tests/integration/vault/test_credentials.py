"""Backend credentials from Vault: resolved at startup, re-read after an authentication failure."""

from __future__ import annotations

import dataclasses
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from refapi import keys
from refapi.app import build_app
from refapi.backends.credentials import CredentialStore
from refapi.backends.vault import secret_reader
from tests.integration.vault.conftest import VaultApp, isolated_settings
from tests.servers.vault import VaultDouble
from tests.support.contract import checked


async def test_startup_takes_each_field_from_vault_else_env(make_vault_app: VaultApp, vault: VaultDouble) -> None:
    vault.put_secret("postgres", {"user": "vault-user", "password": "vault-pw"})
    vault.put_secret("redis-1", {"password": "redis-pw"})
    client = await make_vault_app(vault, postgres_db="env-db", mysql_password="env-mysql")
    store = client.app[keys.CREDENTIALS]
    assert store.get("postgres") == {"user": "vault-user", "password": "vault-pw", "database": "env-db"}
    assert store.get("redis") == {"password": "redis-pw"}
    assert store.get("mysql")["password"] == "env-mysql"  # no secret: environment


async def test_without_vault_configuration_env_and_defaults_apply(make_vault_app: VaultApp, vault: VaultDouble) -> None:
    vault.put_secret("postgres", {"password": "vault-pw"})
    client = await make_vault_app(vault, vault_token="", postgres_password="env-pw")
    assert client.app[keys.CREDENTIALS].get("postgres")["password"] == "env-pw"
    assert ("GET", "/v1/secret/data/postgres") not in vault.request_log


async def test_vault_down_at_startup_keeps_env_and_warns(
    make_vault_app: VaultApp, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_vault_app(vault_addr="http://127.0.0.1:9", vault_token="t", rabbitmq_user="env-user")
    assert client.app[keys.CREDENTIALS].get("rabbitmq")["user"] == "env-user"
    assert any(r.name == "refapi.credentials" and r.levelname == "WARNING" for r in caplog.records)


async def test_refresh_picks_up_a_rotated_secret(make_vault_app: VaultApp, vault: VaultDouble) -> None:
    vault.put_secret("mongodb", {"user": "app", "password": "old"})
    app = build_app(isolated_settings(vault_addr=vault.url, vault_token=vault.root_token))
    store = app[keys.CREDENTIALS] = CredentialStore(app[keys.SETTINGS], secret_reader(app), min_refresh_interval=0)
    await make_vault_app(app=app)
    assert store.get("mongodb")["password"] == "old"
    assert await store.refresh("mongodb") is False  # unchanged
    vault.put_secret("mongodb", {"user": "app", "password": "new"})
    assert await store.refresh("mongodb") is True
    assert store.get("mongodb") == {"user": "app", "password": "new", "database": "refapi"}


def _mysql(statement: str) -> None:
    # The shared MariaDB accepts root over its unix socket; users made here authenticate with passwords over TCP.
    subprocess.run(["mysql", "-u", "root", "-e", statement], check=True, capture_output=True, timeout=30)


@pytest.fixture
def mysql_user() -> Iterator[str]:
    try:
        _mysql("SELECT 1")
    except (OSError, subprocess.SubprocessError):
        pytest.skip("no local MariaDB administration (mysql -u root)")
    name = f"vault_rot_{secrets.token_hex(4)}"
    _mysql(f"CREATE USER '{name}'@'127.0.0.1' IDENTIFIED BY 'first-password'; "
           f"GRANT ALL ON refapi.* TO '{name}'@'127.0.0.1'")
    yield name
    _mysql(f"DROP USER IF EXISTS '{name}'@'127.0.0.1'")


async def test_rotated_database_password_is_picked_up_after_an_authentication_failure(
    make_vault_app: VaultApp, vault: VaultDouble, mysql_user: str
) -> None:
    # PostgreSQL here trusts every local connection, so the rotation is shown on MariaDB, which checks passwords.
    # The password was rotated in the database, but Vault still holds the old one when refapi starts.
    _mysql(f"ALTER USER '{mysql_user}'@'127.0.0.1' IDENTIFIED BY 'second-password'")
    vault.put_secret("mysql", {"user": mysql_user, "password": "first-password", "database": "refapi"})
    settings = isolated_settings(vault_addr=vault.url, vault_token=vault.root_token, mysql_port=3306)
    app = build_app(dataclasses.replace(settings, db_pool_min=1, db_pool_max=2))
    # Re-reads are normally at most every 30 s per service; this test rotates faster than that.
    app[keys.CREDENTIALS] = CredentialStore(app[keys.SETTINGS], secret_reader(app), min_refresh_interval=0)
    client = await make_vault_app(app=app)

    assert (await checked(await client.get("/health/mysql")))["status"] == "unhealthy"
    vault.put_secret("mysql", {"user": mysql_user, "password": "second-password", "database": "refapi"})
    # The next request is rejected with the old password, re-reads the secret and succeeds with the new one.
    body = await checked(await client.get("/health/mysql"))
    assert body["status"] == "healthy"
    assert app[keys.CREDENTIALS].get("mysql")["password"] == "second-password"
