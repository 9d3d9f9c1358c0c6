"""TLS with node keys: each node serves a self-signed X.509 certificate of its own Ed25519 node key, and a
dialing node pins the certificate's key against genesis (ADR 012).

No certificate authority is involved: the genesis file already lists every key a node may have. A dialer
does not verify the chain or the host name (there is none to verify); it reads the peer's certificate
after the TLS handshake and accepts the connection only if the certificate's Ed25519 key is a genesis
authority or observer, and, once the peer's key is known from the signed peer handshake, that very key.
TLS 1.3 only. The dialer proves its own key inside the encrypted channel with the signed challenge of
node/peers.py, so both sides prove a genesis key, and a relay sees only ciphertext it cannot alter.
"""
from __future__ import annotations

import datetime
import os
import ssl
import tempfile
import weakref
from typing import Any, Callable, Collection

import aiohttp

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from ledger.keys import AccountKey

CERT_DAYS = 3650


def node_certificate(key: AccountKey, now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM): a self-signed certificate of the node's Ed25519 key."""
    private = ed25519.Ed25519PrivateKey.from_private_bytes(key.seed)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"kwh-node {key.public.hex()[:16]}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .sign(private, None))
    key_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(key: AccountKey) -> ssl.SSLContext:
    """The listening side: TLS 1.3 with the node-key certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    cert_pem, key_pem = node_certificate(key)
    # ssl loads certificates from files only: a private temporary directory, removed at once
    with tempfile.TemporaryDirectory(prefix="kwh-tls-") as tmp:
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        with open(cert_path, "wb") as f:
            f.write(cert_pem)
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


def client_context() -> ssl.SSLContext:
    """The dialing side: TLS 1.3, no CA or host-name check (the key is pinned against genesis instead)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def certificate_key(der: bytes | None) -> bytes | None:
    """The raw Ed25519 public key of a DER certificate; None for anything else."""
    if not der:
        return None
    try:
        public = x509.load_der_x509_certificate(der).public_key()
    except ValueError:
        return None
    if not isinstance(public, ed25519.Ed25519PublicKey):
        return None
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


_KEYS: "weakref.WeakKeyDictionary[Any, bytes | None]" = weakref.WeakKeyDictionary()


def transport_key(transport: Any) -> bytes | None:
    """The certificate key of the TLS connection under `transport` (None for plain TCP); parsed once per
    connection."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    try:
        return _KEYS[ssl_object]
    except (KeyError, TypeError):
        pass
    key = certificate_key(ssl_object.getpeercert(binary_form=True))
    try:
        _KEYS[ssl_object] = key
    except TypeError:
        pass
    return key


class PinnedConnector(aiohttp.TCPConnector):
    """Dials https with `client_context()` and closes any TLS connection whose certificate key is not in
    `allowed()` before a single request byte is sent on it (so no session token reaches an impostor).
    Which member it must be is checked per response by the caller (node/peers.py `_pin`)."""

    def __init__(self, allowed: Callable[[], Collection[bytes]], **kwargs: Any) -> None:
        super().__init__(ssl=client_context(), **kwargs)
        self._allowed = allowed
        self._keys: "weakref.WeakKeyDictionary[Any, bytes]" = weakref.WeakKeyDictionary()  # protocol -> key

    def response_key(self, resp: aiohttp.ClientResponse) -> bytes | None:
        """The certificate key of the connection a response came on (None for plain http). Looked up by
        the connection's protocol, which stays known after aiohttp released the connection to its pool."""
        proto = getattr(resp, "_protocol", None)
        if proto is None and resp.connection is not None:
            proto = resp.connection.protocol
        return self._keys.get(proto) if proto is not None else None

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
        proto = await super()._create_connection(req, traces, timeout)
        if req.url.scheme == "https":
            key = transport_key(proto.transport)
            if key is None or key not in self._allowed():
                proto.close()
                raise aiohttp.ClientConnectionError(
                    f"TLS certificate of {req.url.host}:{req.url.port} is not a genesis node key")
            self._keys[proto] = key
        return proto
