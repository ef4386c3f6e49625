"""TLS to PostgreSQL: with FRAUDFLOW_DB_SSLMODE=verify-full the server's certificate must chain to the
configured authority and name the host; a wrong authority or name is refused. The embedded server behind a TLS
front (tests/tlsproxy.py: the wheel's PostgreSQL is built without TLS) and certificates made here."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fraudflow.config import Settings, SettingsError
from fraudflow.db.target import RDS_CA_BUNDLE, resolve_database, tls_for
from fraudflow.local.postgres import EmbeddedPostgres
from tests.tlsproxy import TlsFront


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _authority(folder: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{name}.crt"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return certificate, key, path


def _server_certificate(folder: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("db.test"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    crt, pem = folder / "server.crt", folder / "server.key"
    crt.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return crt, pem


@pytest.fixture
async def tls_server(pg_server: EmbeddedPostgres, tmp_path: Path) -> AsyncIterator[tuple[TlsFront, Path, Path]]:
    ca, ca_key, ca_path = _authority(tmp_path, "right-ca")
    _, _, wrong_path = _authority(tmp_path, "wrong-ca")
    crt, key = _server_certificate(tmp_path, ca, ca_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    front = TlsFront(pg_server.port, context)
    await front.start()
    yield front, ca_path, wrong_path
    await front.stop()


def _settings(front: TlsFront, host: str, mode: str, rootcert: Path | None) -> Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": f"postgresql://postgres@{host}:{front.port}/postgres",
        "FRAUDFLOW_DB_SSLMODE": mode,
    }
    if rootcert is not None:
        values["FRAUDFLOW_DB_SSLROOTCERT"] = str(rootcert)
    return Settings(_env_file=None, **values)


async def _connect(settings: Settings) -> int:
    conn = await asyncpg.connect(**(await resolve_database(settings)).connect_kwargs(), timeout=10)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


async def test_verify_full_accepts_the_right_authority_and_name(
    tls_server: tuple[TlsFront, Path, Path],
) -> None:
    front, right, _ = tls_server
    assert await _connect(_settings(front, "localhost", "verify-full", right)) == 1
    assert await _connect(_settings(front, "127.0.0.1", "verify-full", right)) == 1
    assert front.sessions == 2  # both over TLS


async def test_verify_full_refuses_a_wrong_authority(tls_server: tuple[TlsFront, Path, Path]) -> None:
    front, _, wrong = tls_server
    with pytest.raises(ssl.SSLCertVerificationError):
        await _connect(_settings(front, "localhost", "verify-full", wrong))
    with pytest.raises(ssl.SSLCertVerificationError):  # the default: Amazon RDS's authorities, not ours
        await _connect(_settings(front, "localhost", "verify-full", None))
    assert front.sessions == 0


async def test_verify_full_refuses_a_wrong_name_that_verify_ca_accepts(
    tls_server: tuple[TlsFront, Path, Path],
) -> None:
    front, right, _ = tls_server
    with pytest.raises(ssl.SSLCertVerificationError):
        await _connect(_settings(front, "127.0.0.2", "verify-full", right))
    assert await _connect(_settings(front, "127.0.0.2", "verify-ca", right)) == 1


def test_the_rds_bundle_ships_and_a_bad_root_is_a_named_error(tmp_path: Path) -> None:
    assert RDS_CA_BUNDLE.read_text().count("BEGIN CERTIFICATE") >= 100
    assert isinstance(tls_for(Settings(FRAUDFLOW_DB_SSLMODE="verify-full", _env_file=None)), ssl.SSLContext)
    missing = Settings(
        FRAUDFLOW_DB_SSLMODE="verify-full", FRAUDFLOW_DB_SSLROOTCERT=str(tmp_path / "none"), _env_file=None
    )
    with pytest.raises(SettingsError, match="FRAUDFLOW_DB_SSLROOTCERT"):
        tls_for(missing)
