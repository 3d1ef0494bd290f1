"""Request ids come from blocks of os.urandom: never repeated, in threads or after fork."""

from __future__ import annotations

import os
import threading
import uuid

from libs.common.middleware import new_request_id, random_bytes, request_id_from


def test_ids_are_version_4_uuids_and_never_repeat_across_blocks() -> None:
    ids = [new_request_id() for _ in range(2000)]  # several 4 KiB blocks
    assert len(set(ids)) == len(ids)
    assert {uuid.UUID(i).version for i in ids} == {4}


def test_threads_draw_different_bytes() -> None:
    drawn: list[bytes] = []
    threads = [threading.Thread(target=lambda: drawn.extend(random_bytes(16) for _ in range(500)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(drawn)) == len(drawn) == 2000


def test_a_forked_child_does_not_repeat_its_parent() -> None:
    random_bytes(16)  # the parent has a block in use
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next bytes and leave at once
        os.write(write, random_bytes(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.waitpid(pid, 0)
    assert child != random_bytes(16)


def test_a_sane_caller_id_is_kept_and_anything_else_replaced() -> None:
    assert request_id_from("abc-123:x.y_z") == "abc-123:x.y_z"
    for bad in (None, "", "has space", "x" * 129, "semi;colon"):
        assert uuid.UUID(request_id_from(bad)).version == 4
