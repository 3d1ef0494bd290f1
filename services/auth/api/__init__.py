"""Auth's HTTP routes, one module per sub-domain (the same names as `service/`). Each
endpoint checks who is calling (dependencies), parses, calls the service layer and
answers; the unit of work commits before the answer goes out. None touches the
repository."""

from __future__ import annotations

from services.auth.api import accounts, ai_config, catalogue, sessions, sites

ROUTERS = (
    *sessions.ROUTERS,
    *accounts.ROUTERS,
    *sites.ROUTERS,
    *catalogue.ROUTERS,
    *ai_config.ROUTERS,
)
