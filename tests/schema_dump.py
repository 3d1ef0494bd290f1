"""Dump the schema every service's migrations build, to compare two versions of the tree.

Run from the root of a tree (a checkout, or `git archive REV | tar -x -C DIR`): it starts
a throwaway embedded PostgreSQL, provisions and migrates each service's database as
`igny8 up` would, and writes `pg_dump --schema-only` of each to OUT_DIR/<service>.sql.
A migration rewritten without changing the schema leaves the two dumps identical:

    git archive main | tar -x -C /tmp/before
    (cd /tmp/before && .../.venv/bin/python tests/schema_dump.py /tmp/dump-before)
    .venv/bin/python tests/schema_dump.py /tmp/dump-after
    diff -r /tmp/dump-before /tmp/dump-after      # no output: the same schema
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))  # the tree in this folder, not the installed one

import libs.common.migrations as kernel  # noqa: E402
from igny8.services import present_services  # noqa: E402
from libs.common.embedded import EmbeddedPostgres  # noqa: E402
from libs.common.provision import provision_service_database  # noqa: E402


def main(out: Path) -> None:
    assert Path(kernel.__file__).is_relative_to(Path.cwd()), kernel.__file__
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="schema-dump-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg")
        server.start()
        try:
            for spec in present_services():
                if not spec.has_migrations():
                    continue
                db = provision_service_database(
                    server.url, spec.name, spec.migrations_dir(), app_password="dump",
                    database=f"dump_{spec.name}")
                dump = subprocess.run(
                    [str(server.bin / "pg_dump"), "--schema-only", db.owner_url],
                    check=True, capture_output=True, text=True).stdout
                # pg_dump 17.6 and later bracket the dump with a random \restrict key.
                lines = [line for line in dump.splitlines()
                         if not line.startswith(("\\restrict", "\\unrestrict"))]
                (out / f"{spec.name}.sql").write_text("\n".join(lines) + "\n")
                print(f"{spec.name}: {len(lines)} lines")
        finally:
            server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
