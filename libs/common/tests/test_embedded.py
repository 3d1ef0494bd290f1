"""The embedded servers start even when the port picked for them is taken before they bind
(several test stacks pick ports at once), and a server that dies says why."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from libs.common.embedded import EmbeddedNats, EmbeddedPostgres, ExitedEarly


def _occupy(port: int) -> socket.socket:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    return holder


@pytest.mark.parametrize("kind", ["nats", "postgres"])
def test_a_server_whose_port_was_taken_starts_on_another(servers_dir: Path, kind: str) -> None:
    # Not under pytest's tmp_path: as root, PostgreSQL runs as its own user, and every
    # pytest that starts on the machine makes /tmp/pytest-of-root private again, between
    # our opening of the path and the second start (the plugin's servers do the same).
    home = servers_dir / f"port-taken-{kind}"
    server: EmbeddedNats | EmbeddedPostgres = (
        EmbeddedNats(home / "store") if kind == "nats" else EmbeddedPostgres(home / "pg"))
    picked = server.port
    holder = _occupy(picked)  # somebody else's server binds it between the pick and ours
    try:
        server.start()
        assert server.port != picked
        assert server.proc is not None
        assert server.proc.poll() is None
    finally:
        server.stop()
        holder.close()


def test_a_server_that_exits_early_shows_its_log(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "store", config="this is { not a nats configuration")
    with pytest.raises(ExitedEarly) as failed:
        server.start()
    assert failed.value.log_tail, "the error should carry what the server said"
    assert not failed.value.port_taken
