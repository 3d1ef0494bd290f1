"""A socket guard for tests that deal with outbound calls: nothing leaves the machine.

`loopback_only` (a pytest fixture) replaces, for one test, the few Python entry points
through which a connection or a name lookup can start: `socket.socket.connect`,
`connect_ex`, `sendto` and `socket.getaddrinfo`. Connections to loopback and Unix sockets
pass; anything else raises `NetworkGuardError` before the system call, and is recorded so
the test fails at teardown even when the code under test swallowed the error. Name lookups
answer only numeric hosts (resolved locally, without a query) and `localhost`; any other
name is refused, so a test cannot send a DNS query either. The guard does not depend on
the outbound guard it helps test: when that one is broken, this one still stops the call.

`StubResolver` stands in for DNS in those tests: fixed answers per name.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_sendto = socket.socket.sendto


class NetworkGuardError(ConnectionRefusedError):
    """A test tried to reach something other than this machine's loopback."""


def _is_loopback(address: Any) -> bool:
    if isinstance(address, (str, bytes)):  # a Unix socket path
        return True
    host = str(address[0]).split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class NetworkGuard:
    """What the guard refused during one test (`attempts`); clear it after asserting a
    refusal that the test provoked on purpose."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def refuse(self, what: str) -> NetworkGuardError:
        self.attempts.append(what)
        return NetworkGuardError(f"test network guard: {what} is not loopback")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        guard = self

        def connect(sock: socket.socket, address: Any) -> None:
            if sock.family != socket.AF_UNIX and not _is_loopback(address):
                raise guard.refuse(f"connect to {address!r}")
            return _real_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            if sock.family != socket.AF_UNIX and not _is_loopback(address):
                raise guard.refuse(f"connect to {address!r}")
            return _real_connect_ex(sock, address)

        def sendto(sock: socket.socket, data: bytes, *args: Any) -> int:
            address = args[-1]
            if sock.family != socket.AF_UNIX and not _is_loopback(address):
                raise guard.refuse(f"datagram to {address!r}")
            return _real_sendto(sock, data, *args)

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else host
            if name is None or name in ("localhost", "localhost."):
                return _real_getaddrinfo(host, port, *args, **kwargs)
            family = kwargs.get("family", args[0] if args else 0)
            type_ = kwargs.get("type", args[1] if len(args) > 1 else 0)
            proto = kwargs.get("proto", args[2] if len(args) > 2 else 0)
            flags = kwargs.get("flags", args[3] if len(args) > 3 else 0)
            try:
                return _real_getaddrinfo(
                    host, port, family, type_, proto, flags | socket.AI_NUMERICHOST
                )
            except socket.gaierror:
                raise guard.refuse(f"name lookup of {name!r}") from None

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
        monkeypatch.setattr(socket.socket, "sendto", sendto)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetworkGuard]:
    """Fails the test on any connection or name lookup that would leave the machine."""
    guard = NetworkGuard()
    guard.install(monkeypatch)
    yield guard
    if guard.attempts:
        pytest.fail("the test tried to leave the machine: " + "; ".join(guard.attempts))


class StubResolver:
    """`HostResolver` with fixed answers: `{"wp.example": ["127.0.0.1"]}`. A list of lists
    gives one answer per call, the last repeating (to play DNS rebinding). Other names are
    unknown, except numeric forms, which resolve locally as getaddrinfo resolves them."""

    def __init__(self, answers: Mapping[str, Sequence[str] | Sequence[Sequence[str]]]) -> None:
        self.answers = dict(answers)
        self.calls: list[str] = []

    async def addresses(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answer = self.answers.get(host.rstrip(".").lower())
        if answer is None:  # numeric forms resolve as the system would (127.1, 0x7f000001)
            infos = _real_getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                      flags=socket.AI_NUMERICHOST)  # never a query
            return [str(info[4][0]) for info in infos]
        if answer and not isinstance(answer[0], str):
            turn = min(self.calls.count(host), len(answer)) - 1
            return list(answer[turn])
        return [str(a) for a in answer]
