"""The one place that says where a public path goes and how it is treated.

- `SERVICE_PREFIXES`: `/api/v1/<module>/` prefix → owning service (longest prefix wins).
- `GATEWAY_ROUTES`: what the gateway answers itself.
- `PUBLIC_ROUTES`: what needs no credentials (the reference's AllowAny endpoints).
- `APIKEY_PREFIXES`: where the WordPress plugin's `ApiKey` credential is accepted.
- `RATE_RULES`: which rate-limit scope a request is charged to (first matching rule wins,
  documented in docs/rate-limits.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

GATEWAY = "gateway"

SERVICE_PREFIXES: dict[str, tuple[str, ...]] = {
    "auth": (
        "/api/v1/auth/",
        "/api/v1/account/settings/",
        "/api/v1/account/team/",
        "/api/v1/system/prompts/",
        "/api/v1/system/settings/integrations/",
        "/api/v1/system/integrations/",
    ),
    "billing": ("/api/v1/billing/", "/api/v1/account/usage/", "/api/v1/admin/"),
    "planner": ("/api/v1/planner/",),
    "writer": (
        "/api/v1/writer/",
        "/api/v1/integration/",
        "/api/v1/linker/",
        "/api/v1/optimizer/",
        "/api/v1/publisher/",
        "/api/v1/system/author-profiles/",
        # The WordPress plugin's webhooks, where the reference's map writes them (also
        # served under /api/v1/integration/webhooks/).
        "/api/v1/webhooks/wordpress/",
    ),
    "automation": ("/api/v1/automation/",),
}

# Paths the gateway serves itself: exact paths, then prefixes.
GATEWAY_PATHS = frozenset({
    "/api/v1/",
    "/api/v1/system/ping/",
    "/api/v1/system/status/",
    "/api/schema/",
    "/api/docs/",
    "/api/redoc/",
    "/metrics",
    "/healthz",
    "/readyz",
})
GATEWAY_PREFIXES = (
    "/api/v1/system/settings/task_progress/",
    "/api/v1/system/request-metrics/",
    "/api/docs/",
    "/api/redoc/",
)

# (method, path) pairs, and (method, prefix) pairs for collections with detail routes.
PUBLIC_ROUTES = frozenset({
    ("POST", "/api/v1/auth/register/"),
    ("POST", "/api/v1/auth/login/"),
    ("POST", "/api/v1/auth/refresh/"),
    ("GET", "/api/v1/auth/jwks/"),
    ("GET", "/api/v1/system/status/"),
    ("GET", "/api/v1/system/ping/"),
    ("GET", "/api/v1/"),
})
PUBLIC_PREFIXES = (
    ("GET", "/api/v1/auth/plans/"),
    ("GET", "/api/v1/auth/industries/"),
    ("GET", "/api/schema/"),
    ("GET", "/api/docs/"),
    ("GET", "/api/redoc/"),
)
# Answers that carry credentials (access and refresh tokens): never stored in the
# idempotency bucket, whatever the request says; an Idempotency-Key on them is ignored
# (the request runs again, as without the header).
UNSTORED_ANSWERS = frozenset({
    "/api/v1/auth/login/",
    "/api/v1/auth/refresh/",
    "/api/v1/auth/register/",
})
PUBLIC_GATEWAY_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})

APIKEY_PREFIXES = ("/api/v1/integration/", "/api/v1/writer/", "/api/v1/auth/sites/",
                   "/api/v1/webhooks/wordpress/")

# Requests per minute, exactly as the reference's scope table.
RATE_LIMITS: dict[str, int] = {
    "ai_function": 10,
    "image_gen": 15,
    "content_write": 30,
    "content_read": 100,
    "auth": 20,
    "auth_strict": 5,
    "planner": 60,
    "planner_ai": 10,
    "writer": 60,
    "writer_ai": 10,
    "system": 100,
    "system_admin": 30,
    "billing": 30,
    "billing_admin": 10,
    "default": 100,
    # Failed authentication per client address (credentials that needed checking).
    "auth_failure": 20,
}
AUTH_FAILURE_SCOPE = "auth_failure"
RATE_PERIOD_SECONDS = 60.0

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Path segments that mark sensitive credential operations (auth_strict).
_STRICT_MARKERS = ("password", "api-key", "api_key", "apikey", "api-keys", "api_keys")
_AUTH_ACTIONS = frozenset({"login", "register", "refresh", "logout", "password-reset",
                           "password_reset", "reset-password", "reset_password",
                           "forgot-password", "forgot_password"})


@dataclass(frozen=True, slots=True)
class RateRule:
    """`scope` for requests whose path starts with `prefix` and, when given, whose method
    is in `methods` and one of whose segments is in `actions`. `scope=None`: not limited."""

    prefix: str
    scope: str | None
    methods: frozenset[str] | None = None
    actions: frozenset[str] | None = None

    def matches(self, method: str, path: str, segments: list[str]) -> bool:
        if not path.startswith(self.prefix):
            return False
        if self.methods is not None and method not in self.methods:
            return False
        return self.actions is None or any(seg in self.actions for seg in segments)


def modules() -> list[str]:
    """The API's module namespaces (`/api/v1/<module>/`), from the route table."""
    return sorted({"/".join(p.split("/")[:4]) + "/" for prefixes in SERVICE_PREFIXES.values()
                   for p in prefixes})


# Each module's own URL (`/api/v1/planner/`) lists its resources, as DRF's DefaultRouter
# root did; the gateway answers it (public, as `/api/v1/` is).
MODULE_ROOTS = frozenset(modules())
# The gateway's own paths written without their final slash (the reference's map writes
# `/api/schema`): redirected to the slashed path, as each service redirects its own.
# The gateway's AllowAny paths: public whatever the method, so that another method is its
# 405 (DRF checks an AllowAny view's permissions, none, before the method), not a 401.
PUBLIC_GATEWAY_DOCUMENTS = frozenset({"/api/v1/", "/api/v1/system/ping/",
                                      "/api/v1/system/status/", "/api/schema/", "/api/docs/",
                                      "/api/redoc/"}) | MODULE_ROOTS
SLASHLESS_GATEWAY_PATHS = frozenset(p.rstrip("/") for p in GATEWAY_PATHS | MODULE_ROOTS
                                    if p.endswith("/"))


def _actions(*names: str) -> frozenset[str]:
    return frozenset(names)


RATE_RULES: tuple[RateRule, ...] = (
    # Health checks and documents are not limited (probes call them constantly).
    RateRule("/api/v1/system/ping/", None),
    RateRule("/api/v1/system/status/", None),
    RateRule("/api/v1/auth/jwks/", None),
    RateRule("/api/schema/", None),
    RateRule("/api/docs/", None),
    RateRule("/api/redoc/", None),
    RateRule("/metrics", None),
    RateRule("/healthz", None),
    RateRule("/readyz", None),
    # Authentication.
    RateRule("/api/v1/auth/", "auth", actions=_AUTH_ACTIONS),
    # change-password, password and API-key operations: handled by the segment check below.
    RateRule("/api/v1/auth/", "default"),
    RateRule("/api/v1/account/settings/", "system"),
    RateRule("/api/v1/account/team/", "system"),
    RateRule("/api/v1/account/usage/", "billing"),
    # Planner.
    RateRule("/api/v1/planner/", "planner_ai", actions=_actions("auto_cluster",
                                                                "auto_generate_ideas")),
    RateRule("/api/v1/planner/", "planner"),
    # Writer.
    RateRule("/api/v1/writer/", "writer_ai", actions=_actions("auto_generate_content",
                                                              "generate_image_prompts")),
    RateRule("/api/v1/writer/", "image_gen", actions=_actions("generate_images")),
    RateRule("/api/v1/writer/content/", "content_read", methods=READ_METHODS),
    RateRule("/api/v1/writer/content/", "content_write", methods=WRITE_METHODS),
    RateRule("/api/v1/writer/", "writer"),
    RateRule("/api/v1/linker/", "ai_function", methods=WRITE_METHODS),
    RateRule("/api/v1/optimizer/", "ai_function", methods=WRITE_METHODS),
    RateRule("/api/v1/linker/", "writer"),
    RateRule("/api/v1/optimizer/", "writer"),
    RateRule("/api/v1/publisher/", "writer"),
    RateRule("/api/v1/integration/", "default"),
    RateRule("/api/v1/webhooks/wordpress/", "default"),
    # System.
    RateRule("/api/v1/system/settings/integrations/", "ai_function",
             methods=WRITE_METHODS, actions=_actions("test", "generate")),
    RateRule("/api/v1/system/settings/integrations/", "system_admin"),
    RateRule("/api/v1/system/integrations/", "system_admin", methods=WRITE_METHODS),
    RateRule("/api/v1/system/", "system"),
    # Billing.
    RateRule("/api/v1/admin/", "billing_admin"),
    RateRule("/api/v1/billing/", "billing_admin", actions=_actions("admin")),
    RateRule("/api/v1/billing/", "billing"),
    # Automation: starting a run sets off AI work.
    RateRule("/api/v1/automation/", "ai_function", methods=WRITE_METHODS,
             actions=_actions("run_now")),
    RateRule("/api/v1/automation/", "default"),
)


@dataclass(frozen=True, slots=True)
class Resolved:
    """What the gateway does with one request."""

    service: str  # an upstream name or GATEWAY
    public: bool
    scope: str | None
    apikey_allowed: bool


class RouteTable:
    def __init__(self, cache_size: int = 4096) -> None:
        pairs = [(p, s) for s, prefixes in SERVICE_PREFIXES.items() for p in prefixes]
        # Longest prefix first: the first hit is the longest match.
        self._prefixes = sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)
        # Resolving walks the prefixes, the public routes and the rate rules: ~80 Python
        # calls, a fifth of the gateway's per request. A path's answer never changes, so
        # the recent ones are kept (paths with ids vary; the LRU bounds them).
        self._resolved = functools.lru_cache(maxsize=cache_size)(self._resolve)

    def service_for(self, path: str) -> str | None:
        if path in GATEWAY_PATHS or path in MODULE_ROOTS or path.startswith(GATEWAY_PREFIXES):
            return GATEWAY
        if not path.startswith("/api/v1/"):
            return None
        for prefix, service in self._prefixes:
            if path.startswith(prefix):
                return service
        return None

    def resolve(self, method: str, path: str) -> Resolved | None:
        return self._resolved(method, path)

    def _resolve(self, method: str, path: str) -> Resolved | None:
        service = self.service_for(path)
        if service is None:
            return None
        return Resolved(
            service=service,
            public=is_public(method, path),
            scope=scope_for(method, path),
            apikey_allowed=path.startswith(APIKEY_PREFIXES),
        )


def is_public(method: str, path: str) -> bool:
    if method == "HEAD":
        method = "GET"
    if (method, path) in PUBLIC_ROUTES or path in PUBLIC_GATEWAY_PATHS:
        return True
    if path in PUBLIC_GATEWAY_DOCUMENTS:
        return True
    return any(method == m and path.startswith(p) for m, p in PUBLIC_PREFIXES)


def scope_for(method: str, path: str) -> str | None:
    segments = path.strip("/").split("/")
    if path.startswith(("/api/v1/auth/", "/api/v1/account/")) and any(
        marker in seg for seg in segments for marker in _STRICT_MARKERS
    ) and not any(seg in _AUTH_ACTIONS for seg in segments):
        return "auth_strict"
    for rule in RATE_RULES:
        if rule.matches(method, path, segments):
            return rule.scope
    return "default"
