"""The directory's tables: what other services keep of auth's sites, sectors, site access,
accounts and plans, declared into the metadata of the service that needs them (each
service has its own; Alembic then sees them with the service's own tables)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
)

# Tenant rows (row-level security on `account_id`); plans are global.
TENANT_TABLES = ("accounts", "sites", "sectors", "site_access")


def _occurred() -> Column[object]:
    """The `occurred_at` of the event that wrote the row: an older event arriving late
    changes nothing."""
    return Column("source_occurred_at", DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class DirectoryTables:
    sites: Table
    sectors: Table
    site_access: Table
    accounts: Table
    plans: Table

    @property
    def all(self) -> tuple[Table, ...]:
        return (self.plans, self.accounts, self.sites, self.sectors, self.site_access)


def directory_tables_in(metadata: MetaData) -> DirectoryTables:
    """The directory's tables in `metadata` (declared there on the first call)."""
    if "sites" in metadata.tables:
        t = metadata.tables
        return DirectoryTables(sites=t["sites"], sectors=t["sectors"],
                               site_access=t["site_access"], accounts=t["accounts"],
                               plans=t["plans"])
    return DirectoryTables(
        plans=Table(
            "plans", metadata,
            Column("id", BigInteger, primary_key=True, autoincrement=False),
            Column("slug", String(100), nullable=False),
            Column("max_keywords", Integer, nullable=False, default=0),
            Column("max_author_profiles", Integer, nullable=False, default=0,
                   server_default="0"),
            Column("is_active", Boolean, nullable=False, default=True),
            _occurred(),
        ),
        accounts=Table(
            "accounts", metadata,
            Column("account_id", BigInteger, primary_key=True, autoincrement=False),
            Column("status", String(20), nullable=False, default="active"),
            Column("plan_id", BigInteger, nullable=True),
            Column("deleted", Boolean, nullable=False, default=False),
            _occurred(),
        ),
        sites=Table(
            "sites", metadata,
            Column("id", BigInteger, primary_key=True, autoincrement=False),
            Column("account_id", BigInteger, nullable=False),
            Column("name", String(255), nullable=False, default=""),
            Column("slug", String(255), nullable=False, default=""),
            Column("url", String(500), nullable=True),
            Column("industry_id", BigInteger, nullable=True),
            Column("industry_slug", String(255), nullable=True),
            Column("is_active", Boolean, nullable=False, default=True),
            Column("deleted", Boolean, nullable=False, default=False),
            _occurred(),
            Index("ix_sites_account", "account_id"),
        ),
        sectors=Table(
            "sectors", metadata,
            Column("id", BigInteger, primary_key=True, autoincrement=False),
            Column("account_id", BigInteger, nullable=False),
            Column("site_id", BigInteger, nullable=False),
            Column("name", String(255), nullable=False, default=""),
            Column("slug", String(255), nullable=False, default=""),
            Column("industry_sector_id", BigInteger, nullable=True),
            Column("is_active", Boolean, nullable=False, default=True),
            Column("deleted", Boolean, nullable=False, default=False),
            _occurred(),
            Index("ix_sectors_site", "site_id"),
        ),
        site_access=Table(
            "site_access", metadata,
            Column("user_id", BigInteger, nullable=False),
            Column("site_id", BigInteger, nullable=False),
            Column("account_id", BigInteger, nullable=False),
            PrimaryKeyConstraint("user_id", "site_id"),
        ),
    )
