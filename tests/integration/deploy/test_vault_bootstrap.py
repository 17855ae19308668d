"""conf/vault/bootstrap.sh's certificate step against the Vault double, through a stand-in for the vault CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.servers.vault import VaultDouble
from tests.support.processes import REPO

BOOTSTRAP = REPO / "conf" / "vault" / "bootstrap.sh"

# Just the vault CLI calls the certificate step makes, printed the way the CLI prints them: -format=json is Go's
# two-space indented JSON, -field prints the bare value without a newline when stdout is not a terminal.
FAKE_VAULT = """#!{python}
import json, os, sys, urllib.request

def call(method, path, body=None):
    request = urllib.request.Request(
        os.environ["VAULT_ADDR"] + "/v1/" + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={{"X-Vault-Token": os.environ["VAULT_TOKEN"], "Content-Type": "application/json"}},
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)

args = sys.argv[1:]
if args == ["status"]:
    sys.exit(0)
if args[:2] == ["write", "-format=json"]:
    params = dict(arg.split("=", 1) for arg in args[3:])
    print(json.dumps(call("POST", args[2], params), indent=2))
elif args[0] == "read" and args[1].startswith("-field="):
    sys.stdout.write(call("GET", args[2])["data"][args[1].split("=", 1)[1]])
else:
    sys.exit("fake vault: unexpected arguments " + repr(args))
"""


@pytest.fixture
def vault_cli(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vault"
    fake.write_text(FAKE_VAULT.format(python=sys.executable))
    fake.chmod(0o755)
    return bin_dir


def bootstrap_tls(vault: VaultDouble, vault_cli: Path, tls_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{vault_cli}:{os.environ['PATH']}",
        "VAULT_ADDR": vault.url,
        "VAULT_TOKEN": vault.root_token,
        "TLS_DIR": str(tls_dir),
        # The double's role allows localhost only; the compose role also allows the service names.
        "TLS_ALT_NAMES": "localhost",
    }
    return subprocess.run(
        ["sh", str(BOOTSTRAP), "tls"], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_certificate_step_writes_a_verifiable_chain_and_keeps_it_while_valid(
    vault: VaultDouble, vault_cli: Path, tmp_path: Path
) -> None:
    tls_dir = tmp_path / "tls"
    issued = bootstrap_tls(vault, vault_cli, tls_dir)
    assert issued.returncode == 0, issued.stderr
    assert "issued" in issued.stdout

    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tls_dir / "ca.pem"), str(tls_dir / "cert.pem")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    chain = x509.load_pem_x509_certificates((tls_dir / "cert.pem").read_bytes())
    assert len(chain) == 2  # leaf + intermediate, what nginx must send
    key = serialization.load_pem_private_key((tls_dir / "key.pem").read_bytes(), password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*spki) == chain[0].public_key().public_bytes(*spki)
    assert (tls_dir / "key.pem").stat().st_mode & 0o777 == 0o600
    names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)

    kept = bootstrap_tls(vault, vault_cli, tls_dir)
    assert kept.returncode == 0, kept.stderr
    assert "kept" in kept.stdout
    assert x509.load_pem_x509_certificates((tls_dir / "cert.pem").read_bytes())[0] == chain[0]
