"""The `refapi` command: `serve` runs HTTP (and HTTPS) in one process; `spec` prints or writes the OpenAPI document."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web

from refapi import __version__, logs
from refapi.config import ConfigError, Settings

log = logging.getLogger("refapi.cli")
DEFAULT_SPEC_PATH = Path(__file__).resolve().parent.parent / "schemas" / "openapi.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="refapi",
        description=(
            "refapi: a reference REST service integrating Vault, PostgreSQL, MySQL, MongoDB, Redis and RabbitMQ. "
            "Configuration comes from environment variables (see README, 'Configuration')."
        ),
    )
    parser.add_argument("--version", action="version", version=f"refapi {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "serve",
        help="serve HTTP on API_FIRST_HTTP_PORT, plus HTTPS on API_FIRST_HTTPS_PORT when API_FIRST_ENABLE_TLS=true",
        description="Run one refapi process (for several workers use gunicorn -c conf/gunicorn.conf.py).",
    )
    spec = commands.add_parser("spec", help="print the OpenAPI document generated from the code")
    spec.add_argument("--format", choices=("yaml", "json"), default="yaml")
    spec.add_argument(
        "--write",
        nargs="?",
        const=str(DEFAULT_SPEC_PATH),
        metavar="PATH",
        help=f"write it to PATH instead (default {DEFAULT_SPEC_PATH.relative_to(DEFAULT_SPEC_PATH.parents[1])})",
    )
    args = parser.parse_args(argv)
    if args.command == "spec":
        return _spec(args.format, args.write)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"refapi: invalid configuration: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    return asyncio.run(serve(settings))


def _spec(fmt: str, write: str | None) -> int:
    from refapi.openapi.spec import dump_spec, generate_spec

    text = dump_spec(generate_spec(), fmt)
    if write is None:
        sys.stdout.write(text)
    else:
        Path(write).write_text(text, encoding="utf-8")
        print(f"refapi: wrote {write}", file=sys.stderr)
    return 0


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


async def serve(settings: Settings) -> int:
    from refapi.app import build_app

    runner = web.AppRunner(build_app(settings), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.bind_host, settings.http_port).start()
        log.info("serving HTTP", extra={"port": settings.http_port})
        if settings.enable_tls:
            await _start_https(runner, settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


async def _start_https(runner: web.AppRunner, settings: Settings) -> None:
    if settings.tls_cert_file and settings.tls_key_file:
        try:
            context = tls_context(settings.tls_cert_file, settings.tls_key_file)
        except (OSError, ssl.SSLError) as exc:
            log.error("cannot load the TLS certificate, serving HTTP only: %s", type(exc).__name__)
            return
    else:
        from refapi import keys

        # No files: a certificate from Vault PKI, re-issued in the background on this same context.
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        vault = runner.app.get(keys.VAULT)
        if vault is None or not await vault.keep_tls_certificate(context):
            log.error("TLS enabled but no certificate (TLS_CERT_FILE/TLS_KEY_FILE unset, Vault PKI unavailable); "
                      "serving HTTP only")
            return
    await web.TCPSite(runner, settings.bind_host, settings.https_port, ssl_context=context).start()
    log.info("serving HTTPS", extra={"port": settings.https_port})


if __name__ == "__main__":
    raise SystemExit(main())
