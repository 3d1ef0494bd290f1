"""The outbound guard: which addresses are refused, names that resolve to them, the pinned
connection, size caps, HTML-for-JSON, and secrets bound to their URL. Every test runs under
the loopback-only socket guard: even with the outbound guard broken, nothing leaves."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from libs.common.outbound import (
    BoundSecret,
    NotJSON,
    OutboundPolicy,
    OutboundRefused,
    ResponseTooLarge,
    SessionOwner,
    check_address,
    check_target_url,
    guarded_socket_factory,
    normalized_target,
    outbound_session,
    parse_json,
    read_capped,
    refusal_reason,
)
from libs.common.problems import ValidationFailed
from libs.common.testing.network import NetworkGuard, NetworkGuardError, StubResolver

pytestmark = pytest.mark.usefixtures("loopback_only")

STRICT = OutboundPolicy()
DEVELOPMENT = OutboundPolicy(allow_private=True)

REFUSED = [
    "127.0.0.1", "127.255.255.254", "10.0.0.1", "10.255.255.255", "172.16.0.1",
    "172.31.255.255", "192.168.1.1", "169.254.0.1", "169.254.169.254", "100.64.0.1",
    "100.100.100.200", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250",
    "255.255.255.255", "240.0.0.1", "192.0.2.10", "198.18.0.1",
    "::1", "::", "fc00::1", "fd12:3456::1", "fd00:ec2::254", "fe80::1", "fe80::1%1",
    "fec0::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    "::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1",
    "2002:a9fe:a9fe::1", "2001:0:4136:e378:8000:63bf:80ff:fffe", "2001:db8::1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "64:ff9b::808:808",
          "2002:808:808::1", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(OutboundRefused):
        check_address(address, STRICT)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert check_address(address, STRICT) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "192.168.0.10", "::1", "fd12::1", "::ffff:127.0.0.1"]
)
def test_the_development_setting_allows_private_targets(address: str) -> None:
    check_address(address, DEVELOPMENT)


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "0.0.0.0", "::",
     "224.0.0.1", "ff02::1", "64:ff9b::a9fe:a9fe"],
)
def test_metadata_and_unspecified_stay_refused_in_development(address: str) -> None:
    with pytest.raises(OutboundRefused):
        check_address(address, DEVELOPMENT)


def test_reasons_name_the_kind_of_address() -> None:
    assert refusal_reason(ipaddress.ip_address("169.254.169.254")) == "a cloud metadata address"
    assert refusal_reason(ipaddress.ip_address("::ffff:10.0.0.1")) == (
        "an IPv6 form of a private address"
    )
    assert refusal_reason(ipaddress.ip_address("fe80::1")) == "a link-local address"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/", "http://127.0.0.1:8101/api/v1/", "https://10.0.0.5/wp",
        "http://169.254.169.254/latest/meta-data/", "http://[::1]:8000/", "http://[fd00:ec2::254]/",
        "http://[::ffff:127.0.0.1]/", "http://[fe80::1%25eth0]/", "http://0x7f000001/",
        "http://2130706433/", "http://127.1/", "http://0177.0.0.1/", "http://0.0.0.0:8000/",
        "http://internal.example/", "http://metadata.example/computeMetadata/v1/",
        "http://mixed.example/", "http://v6.example/",
    ],
)
async def test_urls_naming_or_resolving_to_refused_addresses_are_a_400(url: str) -> None:
    resolver = StubResolver({
        "internal.example": ["10.0.0.7"],
        "metadata.example": ["169.254.169.254"],
        "mixed.example": ["93.184.216.34", "127.0.0.1"],
        "v6.example": ["fd00::1"],
    })
    with pytest.raises(ValidationFailed) as caught:
        await check_target_url(url, field="site_url", policy=STRICT, resolver=resolver)
    assert caught.value.status == 400
    assert caught.value.errors is not None
    (message,) = caught.value.errors["site_url"]
    assert message.startswith("This URL is not allowed")
    for secretish in ("10.0.0.7", "169.254", "127.0.0.1", "fd00"):
        if secretish not in url:  # what a name resolved to is never echoed
            assert secretish not in message


@pytest.mark.parametrize(
    ("url", "fragment"),
    [("ftp://example.com/", "valid"), ("example.com", "valid"), ("http:///path", "valid"),
     ("https://user:pw@example.com/", "Credentials"), ("http://example.com:99999/", "valid"),
     ("http://unknown.example/", "does not resolve")],
)
async def test_malformed_urls_are_a_400_naming_the_field(url: str, fragment: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await check_target_url(url, field="base_url", policy=STRICT, resolver=StubResolver({}))
    assert caught.value.errors is not None
    assert fragment in caught.value.errors["base_url"][0]


async def test_a_public_name_passes_the_check() -> None:
    resolver = StubResolver({"blog.example": ["93.184.216.34", "2606:2800:220:1::1"]})
    url = await check_target_url(
        " https://Blog.example/ ", field="site_url", policy=STRICT, resolver=resolver
    )
    assert url == "https://Blog.example/"
    assert resolver.calls == ["blog.example"]  # urlsplit lowercases the host


@pytest.fixture
async def loopback_server() -> AsyncIterator[tuple[int, list[str]]]:
    """A loopback HTTP server that records every request it receives."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path)
        if request.path == "/big":
            return web.Response(body=b"x" * 5000)
        if request.path == "/firewall":
            return web.Response(text="<html><body>Access denied</body></html>",
                                content_type="text/html")
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield port, seen
    await runner.cleanup()


async def test_a_name_resolving_to_loopback_is_refused_before_any_connection(
    loopback_server: tuple[int, list[str]],
) -> None:
    port, seen = loopback_server
    resolver = StubResolver({"wp.example": ["127.0.0.1"]})
    async with outbound_session(STRICT, resolver=resolver) as session:
        with pytest.raises(OutboundRefused, match="resolves to a loopback address"):
            await session.get(f"http://wp.example:{port}/wp-json/")
    assert seen == []


async def test_an_ip_literal_is_refused_by_the_socket_check(
    loopback_server: tuple[int, list[str]],
) -> None:
    port, seen = loopback_server
    resolver = StubResolver({})
    async with outbound_session(STRICT, resolver=resolver) as session:
        for host in ("127.0.0.1", "[::ffff:127.0.0.1]"):
            with pytest.raises(OutboundRefused):
                await session.post(f"http://{host}:{port}/x", json={})
    assert seen == []
    assert resolver.calls == []  # aiohttp never asks the resolver about literals


async def test_the_connection_goes_to_the_checked_address_only(
    loopback_server: tuple[int, list[str]],
) -> None:
    """A rebinding DNS answers a different address the second time: the session asks once
    (the check) and connects to that answer, and the later answer is refused anyway."""
    port, seen = loopback_server
    resolver = StubResolver({"rebind.example": [["127.0.0.1"], ["169.254.169.254"]]})
    async with outbound_session(DEVELOPMENT, resolver=resolver) as session:
        async with session.get(f"http://rebind.example:{port}/one") as resp:
            assert resp.status == 200
        async with session.get(f"http://rebind.example:{port}/two") as resp:
            assert resp.status == 200
    assert seen == ["/one", "/two"]
    assert resolver.calls == ["rebind.example"]  # cached: the checked answer is reused
    fresh = StubResolver({"rebind.example": [["127.0.0.1"], ["169.254.169.254"]]})
    await check_target_url(f"http://rebind.example:{port}/", field="site_url",
                           policy=DEVELOPMENT, resolver=fresh)
    async with outbound_session(DEVELOPMENT, resolver=fresh) as session:
        with pytest.raises(OutboundRefused, match="cloud metadata"):
            await session.get(f"http://rebind.example:{port}/three")
    assert seen == ["/one", "/two"]


async def test_an_outside_api_client_calls_through_the_guard_for_as_long_as_it_needs(
    loopback_server: tuple[int, list[str]],
) -> None:
    """The clients of outside APIs (OpenAI, Runware, WordPress) share `SessionOwner`'s
    session: through the guard when given a policy, whose time limit a longer
    `timeout_seconds` raises (a completion can take minutes) and a shorter one does not
    cut; a plain session bounded by `timeout_seconds` without a policy."""
    port, seen = loopback_server
    resolver = StubResolver({"wp.example": ["127.0.0.1"]})
    async with SessionOwner(policy=STRICT, timeout_seconds=180.0, resolver=resolver,
                            headers={"User-Agent": "igny8-test"}) as owner:
        session = owner._client()
        assert session.timeout.total == 180.0
        assert session.headers["User-Agent"] == "igny8-test"
        with pytest.raises(OutboundRefused, match="resolves to a loopback address"):
            await session.get(f"http://wp.example:{port}/wp-json/")
    assert seen == []
    async with SessionOwner(policy=STRICT, timeout_seconds=5.0) as owner:
        assert owner._client().timeout.total == STRICT.total_timeout
    async with SessionOwner(policy=STRICT) as owner:
        assert owner._client().timeout.total == STRICT.total_timeout
    async with SessionOwner(timeout_seconds=7.0) as owner:
        assert owner._client().timeout.total == 7.0
    async with SessionOwner() as owner:
        assert owner._client().timeout.total == SessionOwner.UNGUARDED_TIMEOUT_SECONDS


def test_the_socket_factory_checks_every_address() -> None:
    factory = guarded_socket_factory(STRICT)
    with pytest.raises(OutboundRefused):
        factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 80)))
    with pytest.raises(OutboundRefused):
        factory((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 80, 0, 0)))
    factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80))).close()


async def test_the_guard_under_test_broken_still_sends_nothing(
    loopback_only: NetworkGuard,
) -> None:
    """With the outbound guard switched off entirely (a plain session), a public address is
    still stopped by the test's own socket guard, before any packet."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError) as caught:
            await session.get("http://93.184.216.34/", timeout=aiohttp.ClientTimeout(total=5))
    assert isinstance(caught.value.__cause__ or caught.value, OSError)
    assert loopback_only.attempts
    loopback_only.attempts.clear()
    with pytest.raises(NetworkGuardError):
        await asyncio.get_running_loop().getaddrinfo("example.com", 80)
    loopback_only.attempts.clear()


async def test_sizes_are_capped_and_html_is_named(loopback_server: tuple[int, list[str]]) -> None:
    port, _ = loopback_server
    async with outbound_session(DEVELOPMENT) as session:
        async with session.get(f"http://127.0.0.1:{port}/big") as resp:
            with pytest.raises(ResponseTooLarge):
                await read_capped(resp, 1000)
        async with session.get(f"http://127.0.0.1:{port}/big") as resp:
            assert len(await read_capped(resp, 5000)) == 5000
        async with session.get(f"http://127.0.0.1:{port}/firewall") as resp:
            body = await read_capped(resp, 5000)
            with pytest.raises(NotJSON, match="HTML page where JSON was expected"):
                parse_json(resp.content_type, body, "The site")
    assert parse_json("application/json", b'{"a": 1}', "x") == {"a": 1}
    with pytest.raises(NotJSON, match="not JSON"):
        parse_json("application/json", b"{oops", "x")
    with pytest.raises(NotJSON, match="HTML"):
        parse_json("application/json", b"  <!DOCTYPE html><title>Blocked</title>", "x")


def test_a_saved_secret_goes_only_to_its_url() -> None:
    secret = BoundSecret.bind("sk-123", "https://api.openai.com/v1/")
    assert secret.for_url("https://API.openai.com:443/v1", field="api_key") == "sk-123"
    for other in ("http://127.0.0.1:18555/v1", "https://api.openai.com/v2",
                  "http://api.openai.com/v1", "https://api.openai.com.evil.example/v1",
                  "not a url"):
        with pytest.raises(ValidationFailed) as caught:
            secret.for_url(other, field="api_key")
        assert caught.value.errors == {
            "api_key": ["The saved secret belongs to another URL: enter it again for this one."]
        }
    assert BoundSecret.from_dict(secret.to_dict()) == secret
    assert "sk-123" not in secret.target


def test_targets_normalise() -> None:
    assert normalized_target("HTTPS://Example.COM/") == "https://example.com:443"
    assert normalized_target("http://[::1]:80/a/") == "http://[::1]:80/a"
    assert normalized_target("https://bücher.example/") == "https://xn--bcher-kva.example:443"


def test_private_targets_are_a_development_setting_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from libs.common.settings import PlatformSettings

    monkeypatch.setenv("IGNY8_OUTBOUND_ALLOW_PRIVATE", "1")
    assert OutboundPolicy.from_settings(PlatformSettings()).allow_private
    with pytest.raises(ValidationError, match="IGNY8_OUTBOUND_ALLOW_PRIVATE"):
        PlatformSettings(environment="production", secret_key="a-real-secret")
    monkeypatch.delenv("IGNY8_OUTBOUND_ALLOW_PRIVATE")
    assert not OutboundPolicy.from_settings(PlatformSettings()).allow_private
