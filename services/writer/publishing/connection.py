"""The connection test of a WordPress integration (`{id}/test_connection/` and the
collection-level `test-connection/`, which saves nothing).

Checks, in order, each with the fix when it fails: the address is allowed and the site
reachable; the REST API answers (at `/wp-json/`, or at `/?rest_route=` on a site without
pretty permalinks, which the report says so the service can save `rest_style`); the
credentials are valid (Application Passwords must be available: HTTPS, or
`WP_ENVIRONMENT_TYPE=local`); the user can `upload_files` and `publish_posts`; Yoast's SEO
fields are writable over REST (not required: without them the SEO title, description and
focus keyword are not sent). A failed required check stops the ones after it.

Messages never echo what the site answered beyond WordPress's own error codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from libs.common.outbound import HostResolver, OutboundPolicy
from libs.common.problems import ValidationFailed
from services.writer.publishing.wp_client import (
    SEO_FIELDS,
    WordPressClient,
    WordPressError,
    WordPressSite,
)

CheckName = Literal["reachable", "rest_api", "credentials", "capabilities", "seo_fields"]
REQUIRED_CAPABILITIES = ("upload_files", "publish_posts")


@dataclass(frozen=True)
class Check:
    name: CheckName
    ok: bool
    message: str
    fix: str | None = None
    required: bool = True


@dataclass
class ConnectionReport:
    checks: list[Check] = field(default_factory=list)
    rest_style: Literal["pretty", "query"] | None = None
    seo_fields: frozenset[str] = frozenset()
    site_name: str | None = None
    user_name: str | None = None

    @property
    def ok(self) -> bool:
        """Every required check ran and passed."""
        names = {c.name for c in self.checks if c.required}
        return all(c.ok for c in self.checks if c.required) and names >= {
            "reachable", "rest_api", "credentials", "capabilities"}

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rest_style": self.rest_style,
            "site_name": self.site_name,
            "user": self.user_name,
            "seo_fields": sorted(self.seo_fields),
            "checks": [{"name": c.name, "ok": c.ok, "message": c.message, "fix": c.fix,
                        "required": c.required} for c in self.checks],
        }


async def _index(client: WordPressClient) -> dict[str, Any]:
    answer = await client.index()
    body = answer.body
    if not isinstance(body, dict) or "wp/v2" not in (body.get("namespaces") or ()):
        raise WordPressError("invalid", "The REST API answered without WordPress's wp/v2 API.")
    return body


async def check_connection(
    site: WordPressSite,
    *,
    policy: OutboundPolicy,
    resolver: HostResolver | None = None,
) -> ConnectionReport:
    report = ConnectionReport()
    add = report.checks.append
    index: dict[str, Any] | None = None
    for style in ("pretty", "query"):
        candidate = replace(site, rest_style=style)
        async with WordPressClient(candidate, policy=policy, resolver=resolver) as client:
            try:
                index = await _index(client)
            except WordPressError as exc:
                if exc.kind in ("refused", "unreachable", "timeout", "lost"):
                    add(Check("reachable", False, exc.message,
                              "Check the site URL: it must be the site's public address."))
                    return report
                if exc.kind == "redirect":
                    add(Check("reachable", True, "The site answers."))
                    add(Check("rest_api", False, exc.message,
                              "Save the address the site redirects to as its URL."))
                    return report
                if style == "pretty" and exc.kind in ("not_found", "html", "invalid"):
                    continue
                add(Check("reachable", True, "The site answers."))
                add(Check("rest_api", False, exc.message,
                          "Turn the REST API on: a security plugin or a firewall is blocking "
                          "/wp-json/ for the platform's requests."))
                return report
        report.rest_style = style
        site = candidate
        break
    assert index is not None
    report.site_name = str(index.get("name") or "") or None
    add(Check("reachable", True, "The site answers."))
    add(Check("rest_api", True, "The REST API is on." if report.rest_style == "pretty" else
              "The REST API is on at /?rest_route= (pretty permalinks are off)."))
    if "application-passwords" not in (index.get("authentication") or {}):
        add(Check("credentials", False, "The site does not offer Application Passwords.",
                  "Serve the site over HTTPS (WordPress offers Application Passwords only "
                  "there), or enable them if a plugin turned them off."))
        return report
    async with WordPressClient(site, policy=policy, resolver=resolver) as client:
        try:
            me = await client.me()
        except WordPressError as exc:
            add(Check("credentials", False, exc.message,
                      "Create an Application Password for this user (Users → Profile) and "
                      "save it with the username."))
            return report
        except ValidationFailed:
            add(Check("credentials", False, "The saved password belongs to another URL.",
                      "Enter the Application Password again for this URL."))
            return report
        report.user_name = str(me.get("name") or me.get("slug") or "") or None
        add(Check("credentials", True, f"Signed in as {report.user_name}."))
        capabilities = me.get("capabilities") or {}
        missing = [c for c in REQUIRED_CAPABILITIES if not capabilities.get(c)]
        if missing:
            add(Check("capabilities", False, f"The user lacks {', '.join(missing)}.",
                      "Give the user the Author role or higher."))
            return report
        add(Check("capabilities", True, "The user can upload files and publish posts."))
        try:
            report.seo_fields = await client.seo_fields()
        except WordPressError as exc:
            add(Check("seo_fields", False, exc.message, None, required=False))
            return report
    if set(report.seo_fields) == set(SEO_FIELDS):
        add(Check("seo_fields", True, "Yoast SEO's fields are writable.", required=False))
    else:
        add(Check("seo_fields", False, "Yoast SEO's title, description and focus keyword "
                  "fields are not writable over the REST API; they will not be sent.",
                  "Install Yoast SEO and the IGNY8 WordPress plugin, which registers them.",
                  required=False))
    return report
