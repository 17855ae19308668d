#!/bin/sh
# Bootstrap the compose stack's dev-mode Vault for refapi: KV secrets, transit key, PKI (root + intermediate, role
# `refapi`), a policy and an AppRole whose ids go to refapi, and nginx's certificate. Idempotent: safe to re-run.
#
# Usage (inside the hashicorp/vault image, as conf/docker-compose.yml runs it):
#   bootstrap.sh          everything, then the nginx certificate if it is missing or due
#   bootstrap.sh tls      only the nginx certificate, if due (the renewal entry point; then `nginx -s reload`)
# Environment: VAULT_ADDR, VAULT_TOKEN (a token allowed to configure Vault), the service passwords named below,
# APPROLE_DIR and TLS_DIR (output directories on shared volumes), REFAPI_UID (owner of the AppRole files).
# The image has only busybox besides the vault CLI: no openssl, jq or curl.
set -eu

: "${APPROLE_DIR:=/run/refapi/approle}" "${TLS_DIR:=/run/refapi/tls}" "${REFAPI_UID:=10001}"
: "${TLS_COMMON_NAME:=localhost}" "${TLS_ALT_NAMES:=localhost,nginx}" "${TLS_CERT_TTL:=720h}"

log() { echo "vault-bootstrap: $*"; }

wait_for_vault() {
    # Compose starts this after Vault's healthcheck passes; the bound only guards a manual run.
    tries=0
    until vault status >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt 60 ] || { log "Vault at $VAULT_ADDR is not answering"; exit 1; }
        sleep 1
    done
}

mounted() { vault secrets list | grep -q "^$1/ "; }

secrets() {
    # Backend credentials live here, not in refapi's environment (contract §3.6).
    vault kv put -mount=secret postgres user=refapi password="$POSTGRES_PASSWORD" database=refapi >/dev/null
    vault kv put -mount=secret mysql user=refapi password="$MYSQL_PASSWORD" database=refapi >/dev/null
    vault kv put -mount=secret mongodb user=refapi password="$MONGODB_PASSWORD" database=refapi >/dev/null
    vault kv put -mount=secret redis-1 password="$REDIS_PASSWORD" >/dev/null
    vault kv put -mount=secret rabbitmq user=refapi password="$RABBITMQ_PASSWORD" vhost=/ >/dev/null
    vault kv put -mount=secret refapi environment=compose >/dev/null
    log "KV secrets written"
}

transit() {
    mounted transit || vault secrets enable transit >/dev/null
    vault read transit/keys/refapi >/dev/null 2>&1 || vault write -f transit/keys/refapi >/dev/null
    log "transit key refapi ready"
}

pki() {
    if mounted pki_int; then
        log "PKI already set up"
        return
    fi
    work=$(mktemp -d)
    vault secrets enable pki >/dev/null
    vault secrets tune -max-lease-ttl=87600h pki >/dev/null
    vault write -field=certificate pki/root/generate/internal common_name="refapi Root CA" ttl=87600h >"$work/root.pem"
    vault secrets enable -path=pki_int pki >/dev/null
    vault secrets tune -max-lease-ttl=43800h pki_int >/dev/null
    vault write -field=csr pki_int/intermediate/generate/internal common_name="refapi Intermediate CA" >"$work/int.csr"
    vault write -field=certificate pki/root/sign-intermediate csr=@"$work/int.csr" format=pem_bundle ttl=43800h \
        >"$work/int.pem"
    vault write pki_int/intermediate/set-signed certificate=@"$work/int.pem" >/dev/null
    # The names refapi and nginx are reached by: on the host (localhost) and inside the compose network.
    vault write pki_int/roles/refapi allowed_domains=localhost,nginx,refapi allow_bare_domains=true \
        allow_subdomains=false allow_localhost=true allow_ip_sans=true max_ttl=720h >/dev/null
    rm -rf "$work"
    log "PKI root pki/, intermediate pki_int/, role refapi"
}

approle() {
    vault policy write refapi - >/dev/null <<'EOF'
# refapi's rights, nothing more: its KV reads and writes, its transit key, certificates from its PKI role.
path "secret/data/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/*" { capabilities = ["read"] }
path "transit/keys/refapi" { capabilities = ["read"] }
path "transit/encrypt/refapi" { capabilities = ["update"] }
path "transit/decrypt/refapi" { capabilities = ["update"] }
path "pki_int/issue/refapi" { capabilities = ["update"] }
EOF
    vault auth list | grep -q "^approle/ " || vault auth enable approle >/dev/null
    vault write auth/approle/role/refapi token_policies=refapi token_ttl=1h token_max_ttl=4h >/dev/null
    mkdir -p "$APPROLE_DIR"
    umask 077
    vault read -field=role_id auth/approle/role/refapi/role-id >"$APPROLE_DIR/role-id"
    vault write -f -field=secret_id auth/approle/role/refapi/secret-id >"$APPROLE_DIR/secret-id"
    umask 022
    chown "$REFAPI_UID" "$APPROLE_DIR/role-id" "$APPROLE_DIR/secret-id"
    log "AppRole refapi: ids written to $APPROLE_DIR"
}

# A JSON string field of `vault ... -format=json` output, unescaped. The CLI prints one key per line and PEM
# text needs only \n unescaped, which is what busybox allows without jq.
json_field() {
    value=$(sed -n "s/^ *\"$2\": \"\(.*\)\",\{0,1\}\$/\1/p" "$1" | head -n 1)
    [ -n "$value" ] || { log "no $2 in Vault's answer"; exit 1; }
    printf '%b\n' "$value"
}

json_number() { sed -n "s/^ *\"$2\": \([0-9]*\),\{0,1\}\$/\1/p" "$1" | head -n 1; }

certificate_due() {
    # Re-issue when a third of the lifetime is left, like bin/issue-cert: renewal runs well before expiry.
    [ -s "$TLS_DIR/cert.pem" ] && [ -s "$TLS_DIR/key.pem" ] && [ -s "$TLS_DIR/validity" ] || return 0
    read -r issued expires <"$TLS_DIR/validity"
    now=$(date +%s)
    [ $((expires - now)) -lt $(((expires - issued) / 3)) ]
}

tls() {
    mkdir -p "$TLS_DIR"
    if ! certificate_due; then
        log "nginx certificate still valid; kept"
        return
    fi
    umask 077
    answer=$(mktemp)
    vault write -format=json pki_int/issue/refapi common_name="$TLS_COMMON_NAME" alt_names="$TLS_ALT_NAMES" \
        ip_sans=127.0.0.1 ttl="$TLS_CERT_TTL" >"$answer"
    # Written beside the targets, then renamed: nginx (re)loading never sees half a file.
    json_field "$answer" private_key >"$TLS_DIR/.key.pem"
    { json_field "$answer" certificate; json_field "$answer" issuing_ca; } >"$TLS_DIR/.cert.pem"
    { json_field "$answer" issuing_ca; vault read -field=certificate pki/cert/ca; echo; } >"$TLS_DIR/.ca.pem"
    echo "$(date +%s) $(json_number "$answer" expiration)" >"$TLS_DIR/.validity"
    rm -f "$answer"
    chmod 0644 "$TLS_DIR/.cert.pem" "$TLS_DIR/.ca.pem"
    mv "$TLS_DIR/.key.pem" "$TLS_DIR/key.pem"
    mv "$TLS_DIR/.cert.pem" "$TLS_DIR/cert.pem"
    mv "$TLS_DIR/.ca.pem" "$TLS_DIR/ca.pem"
    mv "$TLS_DIR/.validity" "$TLS_DIR/validity"
    umask 022
    log "nginx certificate for $TLS_COMMON_NAME issued into $TLS_DIR"
}

wait_for_vault
case "${1:-all}" in
    all) secrets; transit; pki; approle; tls ;;
    tls) tls ;;
    *) echo "usage: bootstrap.sh [all|tls]" >&2; exit 2 ;;
esac
