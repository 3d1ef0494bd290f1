"""TLS for NATS (issue 13, P6; ADR 0026): a server that requires TLS refuses a plaintext
client, and the kernel's client verifies the server against the deployment's CA. On the
wheel's nats-server with `libs/common/natstls.py`'s throw-away CA, as `igny8 up` runs it
with `IGNY8_NATS_TLS=1`."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.errors import Error as NatsError

from libs.common import nats as nats_kernel
from libs.common.embedded import EmbeddedNats
from libs.common.natsauth import derive_password, server_config
from libs.common.natstls import LocalTls, make_local_tls

pytestmark = pytest.mark.timeout(60)
USERS = ("planner", "gateway")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[EmbeddedNats, LocalTls, dict[str, str]]]:
    work = tmp_path_factory.mktemp("nats-tls")
    passwords = {user: derive_password("m", user) for user in USERS}
    tls = make_local_tls(work / "tls")
    server = EmbeddedNats(work / "store", config=server_config(passwords) + tls.server_block())
    server.start()
    try:
        yield server, tls, passwords
    finally:
        server.stop()


async def _ignore(_: Exception) -> None:
    return None


async def test_a_plaintext_client_is_refused(
        tls_server: tuple[EmbeddedNats, LocalTls, dict[str, str]]) -> None:
    server, _, passwords = tls_server
    # The protocol by hand: the server announces TLS, and a CONNECT in the clear is refused.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        info = json.loads((await asyncio.wait_for(reader.readline(), 5)).split(b" ", 1)[1])
        assert info["tls_required"] is True
        connect = {"user": "planner", "pass": passwords["planner"], "verbose": False,
                   "pedantic": False, "protocol": 1, "lang": "raw", "version": "0"}
        writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 10)
        assert b"PONG" not in answer
        assert answer == b"" or b"-ERR" in answer, answer
    finally:
        writer.close()
    # nats-py without the CA: its TLS upgrade cannot verify the server, nothing connects.
    with pytest.raises((NatsError, ssl.SSLError, OSError)):
        await nats.connect(server.url, user="planner", password=passwords["planner"],
                           allow_reconnect=False, connect_timeout=5,
                           max_reconnect_attempts=0, error_cb=_ignore)


async def test_the_kernel_client_connects_over_tls_with_the_ca(
        tls_server: tuple[EmbeddedNats, LocalTls, dict[str, str]]) -> None:
    server, tls, passwords = tls_server
    nc = await nats_kernel.connect(server.url, "test", user="planner",
                                   password=passwords["planner"], tls_ca=str(tls.ca_file),
                                   first_attempt_timeout=5)
    try:
        assert nc.connected_url is not None
        assert nc.connected_url.scheme == "tls"
        assert nc._server_info["tls_required"] is True  # noqa: SLF001
        await nc.publish("igny8.planner.keyword.created", b"{}")
        await nc.flush()
    finally:
        await nc.close()


async def test_a_server_signed_by_another_ca_is_not_trusted(
        tls_server: tuple[EmbeddedNats, LocalTls, dict[str, str]], tmp_path: Path) -> None:
    server, _, passwords = tls_server
    stranger = make_local_tls(tmp_path / "other")
    with pytest.raises((NatsError, ssl.SSLError, OSError)):
        await nats.connect(server.url, user="planner", password=passwords["planner"],
                           tls=nats_kernel.tls_context(str(stranger.ca_file)),
                           allow_reconnect=False, connect_timeout=5,
                           max_reconnect_attempts=0, error_cb=_ignore)


def test_the_ca_key_is_never_written(tmp_path: Path) -> None:
    tls = make_local_tls(tmp_path / "tls")
    assert sorted(p.name for p in (tmp_path / "tls").iterdir()) == [
        "ca.pem", "server-key.pem", "server.pem"]
    assert "PRIVATE KEY" not in tls.ca_file.read_text()
    assert (tmp_path / "tls").stat().st_mode & 0o077 == 0
    assert tls.key_file.stat().st_mode & 0o077 == 0
