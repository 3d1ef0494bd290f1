"""Outbound safety: the one guard for every call the platform makes on a tenant's behalf
(WordPress sites, OpenAI-compatible `base_url`s, Runware, webhooks).

A tenant chooses the URL, so without a guard the platform becomes their proxy into our own
network (SSRF): cloud metadata, the database, NATS, other services' ports. The rules:

- Addresses that are loopback, private (10/8, 172.16/12, 192.168/16), shared/CGNAT
  (100.64/10), link-local, unspecified, multicast, broadcast, reserved or documentation
  ranges, IPv6 loopback/ULA/link-local/site-local, and IPv4 addresses hidden inside IPv6
  (mapped, compatible, NAT64, 6to4, Teredo) are refused, unless
  `OutboundPolicy.allow_private` (the development setting `IGNY8_OUTBOUND_ALLOW_PRIVATE`,
  which `igny8 up` and the tests turn on) says otherwise. Cloud-metadata addresses
  (169.254.169.254, fd00:ec2::254, ...) and the unspecified/multicast/reserved ranges stay
  refused even then: no development setup needs them.
- A name is resolved once; if any of its addresses is refused the name is refused, and the
  connection is made only to the addresses that were checked (`GuardedResolver`), so a DNS
  answer that changes between the check and the connect (rebinding) cannot slip through.
  The socket factory checks the address of every socket again just before it connects,
  which also covers IP literals (aiohttp does not ask the resolver about those).
- `outbound_session()` never follows redirects on its own (callers pass
  `allow_redirects=False` on writes, and `read_capped` refuses a 3xx where an answer was
  expected), keeps no cookies, ignores proxy environment variables and bounds times.
- `read_capped()` caps response sizes; `parse_json()` turns an HTML page where JSON was
  expected (a firewall, a maintenance page) into an error that says so.
- `BoundSecret` ties a saved secret to the URL it was saved with: it is only handed out for
  that URL (issue 13 M2: a saved key was sent to any `base_url`).

API-level checks use `check_target_url(url, field=...)`, which raises the kernel's
`ValidationFailed` naming the field (a 400 in the envelope). Call-time refusals raise
`OutboundRefused`, which callers turn into their own errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult

from libs.common.problems import ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024

# Cloud metadata and instance services: refused even when private targets are allowed.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean instance metadata
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS VPC DNS
        "169.254.169.123",  # AWS time sync
        "100.100.100.200",  # Alibaba Cloud metadata
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "fd00:ec2::253",  # AWS VPC DNS over IPv6
        "fd00:ec2::23",  # AWS time sync over IPv6
    )
)

# (network, what it is, allowed by the development setting)
_NAMED_RANGES: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str, bool], ...] = tuple(
    (ipaddress.ip_network(net), name, private_ok)
    for net, name, private_ok in (
        ("0.0.0.0/8", "unspecified", False),
        ("127.0.0.0/8", "loopback", True),
        ("10.0.0.0/8", "private", True),
        ("172.16.0.0/12", "private", True),
        ("192.168.0.0/16", "private", True),
        ("100.64.0.0/10", "shared (CGNAT)", True),
        ("169.254.0.0/16", "link-local", True),
        ("192.0.0.0/24", "reserved", False),
        ("192.0.2.0/24", "documentation", False),
        ("198.51.100.0/24", "documentation", False),
        ("203.0.113.0/24", "documentation", False),
        ("198.18.0.0/15", "benchmarking", False),
        ("224.0.0.0/4", "multicast", False),
        ("240.0.0.0/4", "reserved", False),
        ("::/128", "unspecified", False),
        ("::1/128", "loopback", True),
        ("fc00::/7", "private (ULA)", True),
        ("fe80::/10", "link-local", True),
        ("fec0::/10", "site-local", True),
        ("ff00::/8", "multicast", False),
        ("100::/64", "discard", False),
        ("2001:db8::/32", "documentation", False),
    )
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class OutboundRefused(Exception):
    """A target the platform must not call. `reason` is safe to show to the tenant: it names
    the kind of address, never the address a name resolved to or anything learnt from it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Unresolvable(OutboundRefused):
    """The host name has no address (or the lookup failed): not a refusal of policy."""


@dataclass(frozen=True)
class OutboundPolicy:
    """How far outbound calls may go. Build it from settings (`from_settings`)."""

    allow_private: bool = False
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    connect_timeout: float = 10.0
    total_timeout: float = 60.0

    @classmethod
    def from_settings(cls, settings: Any) -> OutboundPolicy:
        return cls(allow_private=bool(getattr(settings, "outbound_allow_private", False)))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo, compatible):
    connecting to it reaches that IPv4 address, so it is judged as that address."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal_reason(ip: IPAddress, *, allow_private: bool = False) -> str | None:
    """Why `ip` must not be called (a short description), or None when it may be."""
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = refusal_reason(inner, allow_private=allow_private)
            return f"an IPv6 form of {reason}" if reason else None
    for net, name, private_ok in _NAMED_RANGES:
        if ip in net:
            if allow_private and private_ok:
                return None
            return f"a {name} address"
    if not ip.is_global and not allow_private:
        return "a non-public address"
    return None


def check_address(address: str | IPAddress, policy: OutboundPolicy) -> IPAddress:
    """The parsed address, or `OutboundRefused` when the policy forbids calling it."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    reason = refusal_reason(ip, allow_private=policy.allow_private)
    if reason:
        raise OutboundRefused(f"the address is {reason}, which the platform does not call")
    return ip


class HostResolver(Protocol):
    """Turns a host name into addresses. The default asks the system; tests use a stub."""

    async def addresses(self, host: str, port: int) -> list[str]: ...


class SystemResolver:
    """The system's resolver (getaddrinfo in a thread), as aiohttp's default does."""

    async def addresses(self, host: str, port: int) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG
        )
        return [str(info[4][0]) for info in infos]


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve_checked(
    host: str, port: int, policy: OutboundPolicy, resolver: HostResolver | None = None
) -> list[IPAddress]:
    """Every address of `host`, each checked; any refused address refuses the whole name
    (a name that answers both a public and a private address is not to be trusted)."""
    literal = _literal(host)
    if literal is not None:
        return [check_address(literal, policy)]
    try:
        found = await (resolver or SystemResolver()).addresses(host, port)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable("the host name does not resolve") from exc
    if not found:
        raise Unresolvable("the host name does not resolve")
    checked: list[IPAddress] = []
    for address in found:
        try:
            ip = check_address(address, policy)
        except OutboundRefused as exc:
            kind = exc.reason.removeprefix("the address is ")
            raise OutboundRefused(f"the host name resolves to {kind}") from None
        if ip not in checked:
            checked.append(ip)
    return checked


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that answers only checked addresses: the connector connects to what
    was checked and never resolves the name a second time."""

    def __init__(self, policy: OutboundPolicy, resolver: HostResolver | None = None) -> None:
        self.policy = policy
        self.resolver = resolver or SystemResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await resolve_checked(host, port, self.policy, self.resolver)
        return [
            ResolveResult(
                hostname=host,
                host=str(ip),
                port=port,
                family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for ip in addresses
            if family in (socket.AF_UNSPEC, socket.AF_INET6 if ip.version == 6 else socket.AF_INET)
        ]

    async def close(self) -> None:
        return None


AddrInfo = tuple[Any, Any, int, str, tuple[Any, ...]]


def guarded_socket_factory(policy: OutboundPolicy) -> Callable[[AddrInfo], socket.socket]:
    """aiohttp `socket_factory`: the last check, on the very address about to be connected
    (IP literals never reach the resolver)."""

    def factory(addr_info: AddrInfo) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        check_address(str(sockaddr[0]), policy)
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


def outbound_session(
    policy: OutboundPolicy,
    *,
    resolver: HostResolver | None = None,
    headers: dict[str, str] | None = None,
    limit: int = 20,
) -> aiohttp.ClientSession:
    """An aiohttp session whose every connection passes the guard. No cookies kept, no proxy
    taken from the environment, times bounded by the policy."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy, resolver),
        socket_factory=guarded_socket_factory(policy),
        limit=limit,
        ttl_dns_cache=30,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=policy.total_timeout, sock_connect=policy.connect_timeout
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        headers=headers,
    )


class SessionOwner:
    """An async context manager around one aiohttp session (clients of outside APIs): the
    one given, or one made on first use and closed by `aclose()`.

    A made session goes through the outbound guard when a policy is given (calls made for
    a tenant), with the policy's time limit raised to `timeout_seconds` where that is
    longer (one completion or image can take minutes); without a policy (tests, tools) it
    is a plain session bounded by `timeout_seconds`, `UNGUARDED_TIMEOUT_SECONDS` unless
    given."""

    UNGUARDED_TIMEOUT_SECONDS = 120.0

    def __init__(self, session: aiohttp.ClientSession | None = None, *,
                 policy: OutboundPolicy | None = None, timeout_seconds: float | None = None,
                 resolver: HostResolver | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self._session = session
        self._owns_session = session is None
        self._policy = policy
        self._timeout_seconds = timeout_seconds
        self._resolver = resolver
        self._headers = headers

    def _new_session(self) -> aiohttp.ClientSession:
        policy, limit = self._policy, self._timeout_seconds
        if policy is None:
            return aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=limit or self.UNGUARDED_TIMEOUT_SECONDS),
                headers=self._headers)
        if limit is not None and policy.total_timeout < limit:
            policy = replace(policy, total_timeout=limit)
        return outbound_session(policy, resolver=self._resolver, headers=self._headers)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._new_session()
            self._owns_session = True
        return self._session


class ResponseTooLarge(Exception):
    """The answer was bigger than the policy allows; nothing of it is kept."""


class NotJSON(Exception):
    """An answer that should have been JSON was not (typically an HTML firewall page)."""


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or `ResponseTooLarge` as soon as it exceeds `limit` bytes."""
    declared = response.content_length
    if declared is not None and declared > limit:
        raise ResponseTooLarge(f"the answer is {declared} bytes, more than the {limit} allowed")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(f"the answer is more than the {limit} bytes allowed")
        chunks.append(chunk)
    return b"".join(chunks)


def looks_like_html(content_type: str, body: bytes) -> bool:
    head = body[:512].lstrip().lower()
    return "html" in content_type.lower() or head.startswith((b"<!doctype", b"<html", b"<head"))


def parse_json(content_type: str, body: bytes, what: str) -> Any:
    """`body` as JSON; an HTML page or anything else raises `NotJSON` saying what came."""
    if looks_like_html(content_type, body):
        raise NotJSON(
            f"{what} answered an HTML page where JSON was expected: a firewall, a security "
            "plugin or a maintenance page is in the way; allow the platform's requests through"
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise NotJSON(f"{what} answered something that is not JSON") from None


def normalized_target(url: str) -> str:
    """`scheme://host:port/path` with the default port written out, the host lowercased and
    IDNA-encoded and no trailing slash: two spellings of one target compare equal."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL with a host")
    host = parts.hostname.rstrip(".").lower()
    if _literal(host) is None:
        host = host.encode("idna").decode("ascii")
    elif ":" in host:
        host = f"[{host}]"
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"


def target_fingerprint(url: str) -> str:
    """What a secret stores about the URL it was saved with (`BoundSecret.target`)."""
    return "v1:" + hashlib.sha256(normalized_target(url).encode()).hexdigest()


@dataclass(frozen=True)
class BoundSecret:
    """A secret and the URL it was saved with. Store both inside the same encrypted blob
    (`to_dict`), so the binding cannot be edited apart from the secret; changing the URL
    then means entering the secret again."""

    value: str
    target: str

    @classmethod
    def bind(cls, value: str, url: str) -> BoundSecret:
        return cls(value=value, target=target_fingerprint(url))

    def matches(self, url: str) -> bool:
        try:
            return target_fingerprint(url) == self.target
        except ValueError:
            return False

    def for_url(self, url: str, *, field: str) -> str:
        """The secret when `url` is the one it was saved with; otherwise a 400 naming `field`
        (the secret's field: the caller must enter it again for the new URL)."""
        if not self.matches(url):
            raise ValidationFailed.field(
                field, "The saved secret belongs to another URL: enter it again for this one."
            )
        return self.value

    def to_dict(self) -> dict[str, str]:
        return {"value": self.value, "target": self.target}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> BoundSecret:
        return cls(value=data["value"], target=data["target"])


async def check_target_url(
    url: str,
    *,
    field: str,
    policy: OutboundPolicy,
    resolver: HostResolver | None = None,
    schemes: Sequence[str] = ("http", "https"),
) -> str:
    """Validates a tenant-supplied URL before it is saved or called: an http(s) URL with a
    host, no credentials in it, resolving only to addresses the policy allows. Returns the
    URL stripped of surrounding spaces; raises `ValidationFailed` naming `field`."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValidationFailed.field(field, "Enter a valid URL.") from None
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise ValidationFailed.field(field, f"Enter a valid {' or '.join(schemes)} URL.")
    if parts.username or parts.password:
        raise ValidationFailed.field(field, "Credentials do not belong in the URL.")
    default_port = 443 if parts.scheme.lower() == "https" else 80
    try:
        await resolve_checked(parts.hostname, port or default_port, policy, resolver)
    except Unresolvable:
        raise ValidationFailed.field(field, "The host name does not resolve.") from None
    except OutboundRefused as exc:
        raise ValidationFailed.field(field, f"This URL is not allowed: {exc.reason}.") from None
    return url
