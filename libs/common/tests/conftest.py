from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from libs.common.db import Database
from libs.common.provision import ServiceDatabase
from libs.common.testing.plugin import DatabaseFactory

MIGRATIONS = Path(__file__).parent / "fixture_migrations"


@pytest.fixture(scope="session")
def kernel_db_info(make_database: DatabaseFactory) -> ServiceDatabase:
    return make_database("kernel", MIGRATIONS)


@pytest.fixture(scope="session")
async def kernel_db(kernel_db_info: ServiceDatabase) -> AsyncIterator[Database]:
    db = Database(kernel_db_info.app_url)
    yield db
    await db.dispose()
