"""Auth's HTTP routes, one module per sub-domain (the same names as `service/`). Each
endpoint checks who is calling (dependencies), parses, calls the service layer, commits
through the unit of work and only then answers; none touches the repository."""

from __future__ import annotations

from services.auth.api import accounts, ai_config, catalogue, sessions, sites

ROUTERS = (
    *sessions.ROUTERS,
    *accounts.ROUTERS,
    *sites.ROUTERS,
    *catalogue.ROUTERS,
    *ai_config.ROUTERS,
)
