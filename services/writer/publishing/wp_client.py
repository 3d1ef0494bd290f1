"""The WordPress REST client: every call to a tenant's WordPress goes through here.

What it guarantees, whatever the site answers:
- Calls go through the outbound guard (`libs.common.outbound`): no private or metadata
  targets unless the development setting allows them, the connection pinned to the checked
  address, answers capped in size, redirects never followed (a 3xx is an error naming the
  fix), and the Application Password is only sent to the URL it was saved with.
- Every failure is a `WordPressError` with a `kind`, a message that names the fix, whether
  retrying can help (`retryable`) and whether a write may have been applied anyway
  (`ambiguous`: the answer was lost, timed out, was a 5xx or an HTML page). The publisher
  never resends an ambiguous write blindly; it looks for what the write would have made.
- An HTML page where JSON was expected (a firewall, a security plugin, a maintenance page)
  is an error saying so, never parsed.

Updates use POST on the item route: WordPress treats POST, PUT and PATCH on `/posts/<id>`
alike (`WP_REST_Server::EDITABLE`), and hosting firewalls that refuse PATCH are common.

`on_call` receives a `CallRecord` per HTTP call (method, route, status, our and
WordPress's own time from `X-WP-Elapsed` when the site sends it): the bench counts calls and
splits time with it; the service can feed metrics.
"""

from __future__ import annotations

import asyncio
import base64
import html
import re
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

import aiohttp

from libs.common.outbound import (
    BoundSecret,
    HostResolver,
    NotJSON,
    OutboundPolicy,
    OutboundRefused,
    ResponseTooLarge,
    SessionOwner,
    Unresolvable,
    parse_json,
    read_capped,
)

USER_AGENT = "IGNY8-Publisher/1.0"
ANY_STATUS = "publish,future,draft,pending,private"
SEO_FIELDS = ("_yoast_wpseo_title", "_yoast_wpseo_metadesc", "_yoast_wpseo_focuskw")

ErrorKind = Literal[
    "refused", "unreachable", "timeout", "lost", "redirect", "server", "rate_limited",
    "too_large", "auth", "forbidden", "not_found", "invalid", "html", "bad_answer",
]


@dataclass(frozen=True)
class WordPressSite:
    """One WordPress site as the writer service saved it (an integration).

    `key` is how the publication store names the site (the integration id). `app_password`
    is bound to `url` (`BoundSecret.bind(password, url)`, stored encrypted with it).
    `rest_style` is `"pretty"` (`/wp-json/...`) or `"query"` (`/?rest_route=...`, for sites
    without pretty permalinks; the connection test says which works). `seo_fields` are the
    Yoast fields the site accepts, when known (the connection test finds them); `None`
    makes the client ask the site once.
    """

    key: str
    url: str
    username: str
    app_password: BoundSecret
    rest_style: Literal["pretty", "query"] = "pretty"
    seo_fields: frozenset[str] | None = None

    @property
    def base(self) -> str:
        return self.url.strip().rstrip("/")


class WordPressError(Exception):
    """A call that did not succeed. `message` is safe to show the tenant and names the fix."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        data: Any = None,
        retryable: bool = False,
        ambiguous: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.code = code
        self.data = data
        self.retryable = retryable
        self.ambiguous = ambiguous
        self.retry_after = retry_after


@dataclass(frozen=True)
class CallRecord:
    method: str
    route: str
    status: int | None
    seconds: float
    wp_seconds: float | None
    error: str | None = None


@dataclass
class WPResponse:
    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def total(self) -> int | None:
        value = self.headers.get("X-WP-Total")
        return int(value) if value and value.isdigit() else None

    @property
    def total_pages(self) -> int | None:
        value = self.headers.get("X-WP-TotalPages")
        return int(value) if value and value.isdigit() else None


@dataclass(frozen=True)
class RemoteTerm:
    id: int
    name: str
    slug: str
    parent: int = 0
    description: str = ""
    count: int = 0


@dataclass(frozen=True)
class RemotePost:
    """A post as WordPress has it (`context=edit`): what an import or an adoption needs."""

    id: int
    status: str
    slug: str
    link: str
    title: str
    content: str
    excerpt: str
    categories: tuple[int, ...] = ()
    tags: tuple[int, ...] = ()
    featured_media: int = 0
    date_gmt: str | None = None
    modified_gmt: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> RemotePost:
        def raw(name: str) -> str:
            value = body.get(name)
            if isinstance(value, dict):
                return str(value.get("raw", value.get("rendered", "")))
            return str(value or "")

        meta = body.get("meta")
        return cls(
            id=int(body["id"]), status=str(body.get("status", "")),
            slug=str(body.get("slug") or ""), link=str(body.get("link") or ""),
            title=raw("title"), content=raw("content"), excerpt=raw("excerpt"),
            categories=tuple(int(c) for c in body.get("categories") or ()),
            tags=tuple(int(t) for t in body.get("tags") or ()),
            featured_media=int(body.get("featured_media") or 0),
            date_gmt=body.get("date_gmt"), modified_gmt=body.get("modified_gmt"),
            meta=meta if isinstance(meta, dict) else {},
        )


def slugify(text: str, max_length: int = 180) -> str:
    """A slug close to WordPress's `sanitize_title`: accents dropped, lowercase, runs of
    anything but letters and digits made one hyphen. Non-Latin letters are kept (WordPress
    percent-encodes them); what WordPress finally chose is always read back."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    slug = re.sub(r"[^\w]+|_+", "-", plain).strip("-")
    return slug[:max_length].rstrip("-")


def _wp_error(body: Any) -> tuple[str | None, str | None, Any]:
    if isinstance(body, dict):
        return body.get("code"), body.get("message"), body.get("data")
    return None, None, None


def _unescape(text: str) -> str:
    return html.unescape(text).strip()


class WordPressClient(SessionOwner):
    """REST calls to one site. One aiohttp session per client (made through the outbound
    guard unless one is given); use it as an async context manager or call `aclose()`."""

    def __init__(
        self,
        site: WordPressSite,
        *,
        policy: OutboundPolicy,
        session: aiohttp.ClientSession | None = None,
        resolver: HostResolver | None = None,
        timeout: float = 30.0,
        media_timeout: float = 120.0,
        on_call: Callable[[CallRecord], None] | None = None,
    ) -> None:
        super().__init__(session, policy=policy, resolver=resolver,
                         headers={"User-Agent": USER_AGENT})
        self.site = site
        self.policy = policy
        self.timeout = timeout
        self.media_timeout = media_timeout
        self.on_call = on_call
        self._seo_fields = site.seo_fields

    def url_for(self, route: str) -> str:
        if self.site.rest_style == "query":
            return f"{self.site.base}/?rest_route={route}"
        return f"{self.site.base}/wp-json{route}"

    def _authorization(self) -> str:
        password = self.site.app_password.for_url(self.site.url, field="app_password")
        token = base64.b64encode(f"{self.site.username}:{password}".encode()).decode()
        return f"Basic {token}"

    # -- the one place HTTP happens -------------------------------------------------------

    async def call(
        self,
        method: str,
        route: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
        timeout: float | None = None,
    ) -> WPResponse:
        """One REST call; its JSON answer or a `WordPressError`."""
        write = method not in ("GET", "HEAD", "OPTIONS")
        sent_headers = {"Accept": "application/json", **(headers or {})}
        if authenticated:
            sent_headers["Authorization"] = self._authorization()
        started = time.perf_counter()
        status: int | None = None
        wp_seconds: float | None = None
        error: str | None = None
        try:
            async with self._client().request(
                method, self.url_for(route), params=params, json=json, data=data,
                headers=sent_headers, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout,
                                              sock_connect=self.policy.connect_timeout),
            ) as resp:
                status = resp.status
                elapsed = resp.headers.get("X-WP-Elapsed")
                wp_seconds = float(elapsed) if elapsed else None
                body = await read_capped(resp, self.policy.max_response_bytes)
                return self._answer(resp, body, write)
        except WordPressError as exc:
            error = exc.kind
            raise
        except Unresolvable:
            error = "unreachable"
            raise WordPressError(
                "unreachable", "The site's host name does not resolve: check the address.",
                retryable=True,
            ) from None
        except OutboundRefused as exc:
            error = "refused"
            raise WordPressError(
                "refused", f"The site's address is not allowed: {exc.reason}.",
            ) from None
        except ResponseTooLarge as exc:
            error = "too_large"
            raise WordPressError("bad_answer", f"The site's answer was too large: {exc}.",
                                 status=status, ambiguous=write) from None
        except aiohttp.ClientConnectorError:
            error = "unreachable"
            raise WordPressError(
                "unreachable",
                "The site cannot be reached: check the address, that the site is up and that "
                "it accepts connections from the platform.",
                retryable=True,
            ) from None
        except TimeoutError:
            error = "timeout"
            raise WordPressError(
                "timeout", "The site did not answer in time.", retryable=True, ambiguous=write
            ) from None
        except aiohttp.ClientError:
            error = "lost"
            raise WordPressError(
                "lost", "The connection to the site broke before its answer arrived.",
                status=status, retryable=True, ambiguous=write,
            ) from None
        finally:
            if self.on_call is not None:
                self.on_call(CallRecord(method, route, status, time.perf_counter() - started,
                                        wp_seconds, error))

    def _answer(self, resp: aiohttp.ClientResponse, body: bytes, write: bool) -> WPResponse:
        status = resp.status
        headers = {k: v for k, v in resp.headers.items()}
        if 300 <= status < 400:
            raise WordPressError(
                "redirect",
                "The site redirects its REST API to another address: save the address it "
                "redirects to (https? www?) as the site URL.",
                status=status,
            )
        if status >= 500:
            raise WordPressError(
                "server", f"The site answered HTTP {status} (a server error).", status=status,
                retryable=True, ambiguous=write,
            )
        content_type = resp.headers.get("Content-Type", "")
        try:
            parsed = parse_json(content_type, body, "The site") if body else None
        except NotJSON as exc:
            if status == 413:
                parsed = None
            else:
                raise WordPressError("html", str(exc), status=status, retryable=True,
                                     ambiguous=write) from None
        if status < 300:
            return WPResponse(status, headers, parsed)
        code, message, data = _wp_error(parsed)
        detail = f" ({code}: {_unescape(message)})" if code and message else ""
        if status == 413:
            raise WordPressError(
                "too_large",
                "The site refused the upload as too large (HTTP 413): raise PHP's "
                "upload_max_filesize and post_max_size, and the web server's body limit "
                "(e.g. nginx client_max_body_size).",
                status=status,
            )
        if status == 429:
            retry_after = resp.headers.get("Retry-After", "")
            raise WordPressError(
                "rate_limited", "The site is rate-limiting the platform's requests.",
                status=status, retryable=True,
                retry_after=float(retry_after) if retry_after.isdigit() else None,
            )
        if status == 401:
            raise WordPressError(
                "auth",
                "WordPress did not accept the username and Application Password: create a new "
                "Application Password (Users → Profile) and save it; if it is right, the web "
                "server is dropping the Authorization header (Apache: CGIPassAuth On).",
                status=status, code=code, data=data,
            )
        if status == 403:
            raise WordPressError(
                "forbidden",
                f"WordPress refused the action for this user{detail}: give the user the "
                "Author role or higher.",
                status=status, code=code, data=data,
            )
        if status == 404:
            raise WordPressError("not_found", f"WordPress has no such item{detail}.",
                                 status=status, code=code, data=data)
        raise WordPressError("invalid", f"WordPress refused the request{detail}.",
                             status=status, code=code, data=data)

    # -- site ------------------------------------------------------------------------------

    async def index(self) -> WPResponse:
        """The REST index (`/`): namespaces and authentication methods. No credentials."""
        return await self.call("GET", "/", authenticated=False)

    async def me(self) -> dict[str, Any]:
        """The user the credentials belong to, with `capabilities` (needs `context=edit`)."""
        resp = await self.call("GET", "/wp/v2/users/me", params={"context": "edit"})
        return dict(resp.body)

    async def post_schema(self) -> dict[str, Any]:
        resp = await self.call("OPTIONS", "/wp/v2/posts")
        return dict(resp.body.get("schema") or {}) if isinstance(resp.body, dict) else {}

    @property
    def known_seo_fields(self) -> frozenset[str] | None:
        return self._seo_fields

    async def seo_fields(self) -> frozenset[str]:
        """The Yoast SEO meta fields this site accepts over REST (asked once per client).
        WordPress ignores meta keys that are not registered, silently: without these, an SEO
        title or description sent would be dropped, so the publisher does not send them."""
        if self._seo_fields is None:
            schema = await self.post_schema()
            meta = (schema.get("properties") or {}).get("meta") or {}
            registered = meta.get("properties") or {}
            self._seo_fields = frozenset(f for f in SEO_FIELDS if f in registered)
        return self._seo_fields

    async def content_types(self) -> dict[str, Any]:
        resp = await self.call("GET", "/wp/v2/types", params={"context": "edit"})
        return dict(resp.body)

    # -- media -----------------------------------------------------------------------------

    async def find_media(self, slug: str) -> dict[str, Any] | None:
        resp = await self.call("GET", "/wp/v2/media",
                               params={"slug": slug, "context": "edit", "per_page": 10})
        found = [m for m in resp.body or () if m.get("slug") == slug]
        return min(found, key=lambda m: int(m["id"])) if found else None

    async def upload_media(
        self, data: bytes, *, filename: str, media_type: str, slug: str, title: str = "",
        alt_text: str = "", description: str = "",
    ) -> dict[str, Any]:
        params = {"slug": slug, "title": title or slug, "alt_text": alt_text,
                  "description": description}
        resp = await self.call(
            "POST", "/wp/v2/media", params=params, data=data, timeout=self.media_timeout,
            headers={"Content-Type": media_type,
                     "Content-Disposition": f'attachment; filename="{filename}"'},
        )
        return dict(resp.body)

    # -- terms -----------------------------------------------------------------------------

    async def find_terms(self, taxonomy: str, slugs: Sequence[str]) -> list[RemoteTerm]:
        if not slugs:
            return []
        resp = await self.call("GET", f"/wp/v2/{taxonomy}",
                               params={"slug": ",".join(slugs), "per_page": 100,
                                       "hide_empty": "false"})
        return [self._term(t) for t in resp.body or ()]

    async def create_term(
        self, taxonomy: str, name: str, *, slug: str | None = None, parent: int = 0,
        description: str = "",
    ) -> RemoteTerm:
        """Creates the term, or answers the existing one: WordPress's `term_exists` (400,
        with the id in `data.term_id`) counts as success, so this is safe to repeat."""
        payload: dict[str, Any] = {"name": name}
        if slug:
            payload["slug"] = slug
        if parent:
            payload["parent"] = parent
        if description:
            payload["description"] = description
        try:
            resp = await self.call("POST", f"/wp/v2/{taxonomy}", json=payload)
        except WordPressError as exc:
            if exc.code == "term_exists" and isinstance(exc.data, dict) and exc.data.get(
                "term_id"
            ):
                return RemoteTerm(id=int(exc.data["term_id"]), name=name, slug=slug or "",
                                  parent=parent)
            raise
        return self._term(resp.body)

    async def ensure_terms(
        self, taxonomy: str, names: Sequence[str], known: Sequence[RemoteTerm] = ()
    ) -> dict[str, int]:
        """The id of each name on the site: among `known` terms, else looked up by slug in
        one call, else created (`term_exists` counting as found)."""
        wanted = list(dict.fromkeys(n.strip() for n in names if n.strip()))
        by_name = {t.name.casefold(): t.id for t in known}
        by_slug = {unquote(t.slug).lower(): t.id for t in known}

        def lookup(name: str) -> int | None:
            return by_name.get(name.casefold()) or by_slug.get(slugify(name))

        missing = [n for n in wanted if lookup(n) is None]
        for term in await self.find_terms(taxonomy, [slugify(n) for n in missing]):
            by_name.setdefault(term.name.casefold(), term.id)
            by_slug.setdefault(unquote(term.slug).lower(), term.id)
        ids: dict[str, int] = {}
        for name in wanted:
            term_id = lookup(name)
            ids[name] = term_id if term_id is not None else (
                await self.create_term(taxonomy, name)).id
        return ids

    async def iter_terms(self, taxonomy: str, per_page: int = 100) -> AsyncIterator[RemoteTerm]:
        """Every term of a taxonomy (`categories`, `tags`), page by page."""
        page = 1
        while True:
            resp = await self.call("GET", f"/wp/v2/{taxonomy}",
                                   params={"per_page": per_page, "page": page,
                                           "hide_empty": "false", "orderby": "id"})
            for term in resp.body or ():
                yield self._term(term)
            if page >= (resp.total_pages or 1):
                return
            page += 1

    @staticmethod
    def _term(body: Mapping[str, Any]) -> RemoteTerm:
        return RemoteTerm(
            id=int(body["id"]), name=_unescape(str(body.get("name", ""))),
            slug=str(body.get("slug", "")), parent=int(body.get("parent") or 0),
            description=str(body.get("description") or ""), count=int(body.get("count") or 0),
        )

    # -- posts -----------------------------------------------------------------------------

    async def find_posts(
        self, *, slugs: Sequence[str] = (), search: str | None = None,
        statuses: str = ANY_STATUS, per_page: int = 20,
    ) -> list[RemotePost]:
        params: dict[str, str | int] = {"status": statuses, "context": "edit",
                                        "per_page": per_page, "orderby": "id", "order": "asc"}
        if slugs:
            params["slug"] = ",".join(slugs)
        if search:
            params["search"] = search
        resp = await self.call("GET", "/wp/v2/posts", params=params)
        return [RemotePost.from_json(p) for p in resp.body or ()]

    async def get_post(self, post_id: int) -> RemotePost:
        resp = await self.call("GET", f"/wp/v2/posts/{post_id}", params={"context": "edit"})
        return RemotePost.from_json(resp.body)

    async def create_post(self, fields: Mapping[str, Any]) -> RemotePost:
        resp = await self.call("POST", "/wp/v2/posts", json=dict(fields))
        return RemotePost.from_json(resp.body)

    async def update_post(self, post_id: int, fields: Mapping[str, Any]) -> RemotePost:
        resp = await self.call("POST", f"/wp/v2/posts/{post_id}", json=dict(fields))
        return RemotePost.from_json(resp.body)

    async def trash_post(self, post_id: int) -> None:
        await self.call("DELETE", f"/wp/v2/posts/{post_id}")

    async def iter_posts(
        self, *, statuses: str = "publish", modified_after: str | None = None,
        per_page: int = 50,
    ) -> AsyncIterator[RemotePost]:
        """Every post with these statuses, oldest first (for importing a site's posts)."""
        page = 1
        while True:
            params: dict[str, str | int] = {"status": statuses, "context": "edit",
                                            "per_page": per_page, "page": page,
                                            "orderby": "id", "order": "asc"}
            if modified_after:
                params["modified_after"] = modified_after
            resp = await self.call("GET", "/wp/v2/posts", params=params)
            for post in resp.body or ():
                yield RemotePost.from_json(post)
            if page >= (resp.total_pages or 1):
                return
            page += 1


async def backoff(attempt: int, error: WordPressError, base: float) -> None:
    """Waits before retry `attempt` (1, 2, ...): the site's Retry-After when it gave one."""
    delay = error.retry_after if error.retry_after is not None else base * (2 ** (attempt - 1))
    await asyncio.sleep(min(delay, 30.0))
