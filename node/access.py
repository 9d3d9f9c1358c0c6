"""Who may read what: signed, short-lived read credentials and the roles they give (ADR 012).

A client proves a key on each request with one header:

    Authorization: KWH-Sig key=<ed25519 public hex>, ts=<unix ms>, nonce=<32 hex>, sig=<signature hex>

The signature is the key's Ed25519 signature of `ledger.keys.signing_bytes(DOMAIN_READ, chain_id,
["read", node_id, METHOD, raw path with query, ts, nonce])`. `node_id` is the answering node's key (the
genesis block hash for a node without one), so a credential made for one node, chain, route or moment is
worthless anywhere else. The node accepts `ts` within +-MAX_SKEW_MS of its clock and remembers every
(key, nonce) for that window, so a credential is good for exactly one request.

The key gives the role: a current authority, a genesis auditor or a genesis observer (a node) reads
everything; any other key reads what its own address owns. A peer session (`Bearer` token from the
handshake in node/peers.py) also reads everything. Without a credential a client is public.

A browser cannot hold the account key, so the dashboard signs in once: the wallet signs a credential for
`POST /dashboard/session` and hands it over in a URL fragment (never sent to a server or logged); the
page posts it and gets an HttpOnly, SameSite=Strict cookie naming a random session (`ReadSessions`) of
that key, good for SESSION_TTL_MS or until it signs out.
"""
from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from aiohttp import web

from ledger.keys import DOMAIN_READ, AccountKey, address_of, signing_bytes, verify_ed25519

from .codes import ApiError, RATE_LIMITED

SCHEME = "KWH-Sig"
MAX_SKEW_MS = 60_000
NONCE_BYTES = 16
MAX_REMEMBERED = 200_000  # nonces remembered at once; more valid credentials in one window get 429
# an owner's nonces one client address may have remembered at once: one host cannot fill the memory for all
# (the full-read roles, a handful of keys that nodes sync with, are never refused for a full memory)
MAX_REMEMBERED_PER_CLIENT = 10_000
SESSION_COOKIE = "kwh_read"
SESSION_TTL_MS = 3_600_000  # a dashboard sign-in lasts an hour
MAX_SESSIONS = 10_000  # signed-in browsers at once; the oldest is signed out first
MAX_SESSIONS_PER_KEY = 8  # one key's browsers; its own oldest goes first, so one key cannot push others out

# roles (docs/adr/adr-012-read-roles.md)
PUBLIC = "public"
ACCOUNT = "account"
AUDITOR = "auditor"
AUTHORITY = "authority"
PEER = "peer"
FULL_ROLES = (AUDITOR, AUTHORITY, PEER)

# error codes (all 401: the credential, not the account, is the problem; 403 is `forbidden`)
CREDENTIAL_REQUIRED = "credential_required"
BAD_CREDENTIAL = "bad_credential"
CREDENTIAL_EXPIRED = "credential_expired"
CREDENTIAL_REPLAYED = "credential_replayed"
FORBIDDEN = "forbidden"

_FIELD = re.compile(r"\s*([a-z]+)=([0-9a-fA-F]{1,128})\s*")


@dataclass(frozen=True)
class Reader:
    """Who is asking: their role, and for a signed request the key and its account address."""
    role: str
    key: bytes | None = None

    @property
    def full(self) -> bool:
        return self.role in FULL_ROLES

    @property
    def address(self) -> bytes | None:
        return address_of(self.key) if self.key is not None else None

    def owns(self, *addresses: bytes | None) -> bool:
        """True if this reader may see data that belongs to any of `addresses`."""
        return self.full or (self.key is not None and self.address in addresses)


PUBLIC_READER = Reader(PUBLIC)


def read_message(chain_id: str, node_id: bytes, method: str, path: str, ts_ms: int, nonce: bytes) -> bytes:
    """The exact bytes a read credential signs."""
    return signing_bytes(DOMAIN_READ, chain_id, ["read", node_id, method.upper(), path, ts_ms, nonce])


def credential(key: AccountKey, chain_id: str, node_id: bytes, method: str, path: str, ts_ms: int,
               nonce: bytes | None = None) -> str:
    """The Authorization header value for one request (`path` exactly as sent, query included)."""
    nonce = nonce if nonce is not None else secrets.token_bytes(NONCE_BYTES)
    sig = key.sign(read_message(chain_id, node_id, method, path, ts_ms, nonce))
    return f"{SCHEME} key={key.public.hex()}, ts={ts_ms}, nonce={nonce.hex()}, sig={sig.hex()}"


def parse_credential(header: str) -> tuple[bytes, int, bytes, bytes]:
    """(key, ts_ms, nonce, signature) of a KWH-Sig header; ApiError(bad_credential) on any other shape."""
    fields: dict[str, str] = {}
    for part in header[len(SCHEME):].split(","):
        m = _FIELD.fullmatch(part)
        if m is None or m.group(1) in fields:
            raise ApiError(BAD_CREDENTIAL, f"{SCHEME} header must be 'key=<hex>, ts=<ms>, nonce=<hex>, sig=<hex>'",
                           401)
        fields[m.group(1)] = m.group(2)
    if set(fields) != {"key", "ts", "nonce", "sig"} or not fields["ts"].isdigit() or len(fields["ts"]) > 15:
        raise ApiError(BAD_CREDENTIAL, f"{SCHEME} header needs exactly key, ts (decimal ms), nonce and sig", 401)
    key, nonce, sig = (bytes.fromhex(fields[k]) if len(fields[k]) % 2 == 0 else b"" for k in ("key", "nonce", "sig"))
    if len(key) != 32 or len(nonce) != NONCE_BYTES or len(sig) != 64:
        raise ApiError(BAD_CREDENTIAL, f"key is 32 bytes, nonce {NONCE_BYTES} bytes, sig 64 bytes (hex)", 401)
    return key, int(fields["ts"]), nonce, sig


class ReadGuard:
    """Checks read credentials for one node and remembers their nonces (one use each)."""

    def __init__(self, chain_id: str, node_id: bytes, role_of: Callable[[bytes], str]) -> None:
        self.chain_id = chain_id
        self.node_id = node_id
        self.role_of = role_of
        # (key, nonce) -> (forget after (ms), the client address an owner's credential came from, else "")
        self._seen: OrderedDict[tuple[bytes, bytes], tuple[int, str]] = OrderedDict()
        self._per_client: dict[str, int] = {}  # client address -> its owners' nonces remembered

    def check(self, header: str, method: str, path: str, now: int, client: str = "?") -> Reader:
        """The reader a KWH-Sig header proves; ApiError 401 with the reason otherwise (429 when `client`, the
        request's address, or everyone together sent more signed requests of owners than the node remembers)."""
        key, ts, nonce, sig = parse_credential(header)
        if abs(ts - now) > MAX_SKEW_MS:
            raise ApiError(CREDENTIAL_EXPIRED, f"credential time {ts} is more than {MAX_SKEW_MS // 1000} s from "
                                               f"the node's clock {now}: make a fresh one (check your clock)", 401)
        if not verify_ed25519(key, sig, read_message(self.chain_id, self.node_id, method, path, ts, nonce)):
            raise ApiError(BAD_CREDENTIAL, "signature does not verify for this node, chain, method and path "
                                           "(sign the path exactly as sent, query included)", 401)
        self._forget(now)
        if (key, nonce) in self._seen:
            raise ApiError(CREDENTIAL_REPLAYED, "this credential was used already: sign each request anew", 401)
        role = self.role_of(key)
        if role in FULL_ROLES:
            client = ""
        elif len(self._seen) >= MAX_REMEMBERED or self._per_client.get(client, 0) >= MAX_REMEMBERED_PER_CLIENT:
            raise ApiError(RATE_LIMITED, "too many signed requests in this window; slow down")
        else:
            self._per_client[client] = self._per_client.get(client, 0) + 1
        self._seen[(key, nonce)] = (ts + MAX_SKEW_MS, client)
        return Reader(role, key)

    def _forget(self, now: int) -> None:
        """Drop nonces whose credentials have expired (entries are near time order; stop at a live one)."""
        while self._seen:
            entry, (until, client) = next(iter(self._seen.items()))
            if until >= now:
                break
            del self._seen[entry]
            if client:
                left = self._per_client[client] - 1
                if left:
                    self._per_client[client] = left
                else:
                    del self._per_client[client]


class ReadSessions:
    """Dashboard sign-ins: random token -> key, each for SESSION_TTL_MS; bounded (oldest dropped first).
    The role is looked up on every request, so a key voted out of the authorities loses it at once."""

    def __init__(self) -> None:
        self._sessions: OrderedDict[str, tuple[bytes, int]] = OrderedDict()  # token -> (key, expires ms)
        self._by_key: dict[bytes, list[str]] = {}  # key -> its tokens, oldest first

    def open(self, key: bytes, now: int) -> tuple[str, int]:
        """A new session of `key`: its token and when it ends (unix ms). A key past MAX_SESSIONS_PER_KEY
        loses its own oldest session, so no one key fills the table and signs everyone else out."""
        self._expire(now)
        mine = self._by_key.get(key, [])
        while len(mine) >= MAX_SESSIONS_PER_KEY:
            self.close(mine[0])
        while len(self._sessions) >= MAX_SESSIONS:
            self.close(next(iter(self._sessions)))
        token = secrets.token_urlsafe(32)
        self._sessions[token] = (key, now + SESSION_TTL_MS)
        self._by_key.setdefault(key, []).append(token)
        return token, now + SESSION_TTL_MS

    def key_of(self, token: str, now: int) -> bytes | None:
        entry = self._sessions.get(token)
        if entry is None or entry[1] < now:
            return None
        return entry[0]

    def close(self, token: str) -> None:
        entry = self._sessions.pop(token, None)
        if entry is not None:
            tokens = self._by_key[entry[0]]
            tokens.remove(token)
            if not tokens:
                del self._by_key[entry[0]]

    def _expire(self, now: int) -> None:
        """Sessions are opened in time order with one TTL: drop from the oldest while expired."""
        while self._sessions:
            token, (_key, until) = next(iter(self._sessions.items()))
            if until >= now:
                break
            self.close(token)

    def __len__(self) -> int:
        return len(self._sessions)


def require_reader(request: "web.Request", what: str, *owners: bytes | None) -> Reader:
    """The request's reader, if it may see data of `owners` (none given: only the full-read roles); else
    401 without a credential, 403 with the key of another account. One check for the API and the
    dashboard's views alike."""
    reader: Reader = request.get("reader", PUBLIC_READER)
    if reader.owns(*owners):
        return reader
    if reader.key is None:
        raise ApiError(CREDENTIAL_REQUIRED, f"{what} is personal data: sign the request with the owner's key "
                                            f"(Authorization: {SCHEME} ..., see docs/adr/adr-012-read-roles.md)",
                       401)
    who = "its owner or an authority or auditor" if owners else "authorities, auditors and peers"
    raise ApiError(FORBIDDEN, f"{what} is readable by {who}, not by this key", 403)
