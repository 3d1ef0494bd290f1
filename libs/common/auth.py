"""Auth's commands, declared once for auth's worker and its callers, and the typed client
(NATS request-reply through `libs/common/commands.py`; all three only read, so a caller
sends them again after a timeout).

- `lookup_site`: a site and its sectors as auth knows them now (the directory asks on a
  read-model miss, so a site created a moment ago is not a false 404); `NotFound` when the
  site is not the account's.
- `seed_keywords`: seed keywords by id (at most 1,000).
- `ai_settings`: what an account's AI jobs run with: its OpenAI integration (the key in
  clear: this answer stays on the internal bus) or `local`, its saved prompts (a type
  without one is absent and the caller uses its built-in), and its image settings (with
  the Runware integration when images use it); auth owns this configuration (ADR 0021).
  `AISettingsUnusable` when the saved settings cannot be used (the key no longer
  decrypts): jobs fail, never fall back to `local`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from libs.common.commands import Command, CommandClient
from libs.common.ids import Id
from libs.common.problems import NotFound, Unprocessable

SERVICE = "auth"

# An account's statuses; in the blocked ones it is refused everywhere but in auth (which
# lets its owner in to pay or reactivate).
ACCOUNT_STATUSES = ("active", "trial", "suspended", "cancelled")
BLOCKED_ACCOUNT_STATUSES = ("suspended", "cancelled")


class AISettingsUnusable(Unprocessable):
    """The account configured an AI provider that cannot be used as saved."""

    code = "unreadable_secret"


class AuthDoc(BaseModel):
    """Auth's data as its events and commands carry it. A null where the field has a
    default reads as the default (`name: null` is an empty name)."""

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: v for k, v in data.items()
                if v is not None or k not in fields or fields[k].is_required()
                or fields[k].get_default(call_default_factory=True) is None}


class SiteDoc(AuthDoc):
    """A site as auth's `auth.site.*` events carry it."""

    id: int
    account_id: int
    name: str = ""
    slug: str = ""
    url: str | None = None
    industry_id: int | None = None
    industry_slug: str | None = None
    is_active: bool = True


class SectorDoc(AuthDoc):
    """A sector as auth's `auth.sector.*` events carry it."""

    id: int
    account_id: int
    site_id: int
    name: str = ""
    slug: str = ""
    industry_sector_id: int | None = None
    is_active: bool = True


class SeedKeywordDoc(AuthDoc):
    """A seed keyword as auth's `auth.seed_keyword.*` events carry it."""

    id: int
    keyword: str
    industry_id: int | None = None
    industry_slug: str | None = None
    sector_id: int | None = None
    sector_slug: str | None = None
    volume: int = 0
    difficulty: int = 0
    intent: str = "informational"
    country: str | None = None
    is_active: bool = True


class AccountDoc(AuthDoc):
    """An account as `auth.account.*` carries it (what other services keep of it)."""

    account_id: int
    status: str = "active"
    plan_id: int | None = None


class PlanDoc(AuthDoc):
    """A plan as `auth.plan.*` carries it (the limits other services enforce)."""

    id: int
    slug: str = ""
    max_keywords: int = 0
    max_author_profiles: int = 0
    is_active: bool = True


class SiteAccessDoc(AuthDoc):
    """`auth.site_access.granted` / `.revoked`."""

    account_id: int
    user_id: int
    site_id: int


class LookupSite(BaseModel):
    account_id: Id
    site_id: Id


class SiteAndSectors(BaseModel):
    site: SiteDoc
    sectors: list[SectorDoc] = Field(default_factory=list)


class SeedKeywordsRequest(BaseModel):
    ids: list[Id] = Field(max_length=1000)


class SeedKeywords(BaseModel):
    seed_keywords: list[SeedKeywordDoc] = Field(default_factory=list)


class AISettingsRequest(BaseModel):
    account_id: Id
    # None: every type the account saved.
    prompt_types: list[str] | None = None


class ProviderSettings(BaseModel):
    """An account's provider integration: where to call, with which key (it goes to this
    `base_url` only), and its models."""

    base_url: str
    api_key: str = Field(repr=False)
    model: str
    image_model: str | None = None


class ImageSettings(BaseModel):
    """The account's image generation settings (auth's `image_generation` integration).
    `provider` names the engine: `local`, `openai` (the `openai` settings, `image_model`)
    or `runware` (the `runware` settings)."""

    provider: str = "local"
    model: str = "local-render-1"  # what the local engine records (services/writer/imaging.py)
    image_type: str = "realistic"
    max_in_article_images: int = 2
    image_format: str = "webp"
    desktop_enabled: bool = True
    mobile_enabled: bool = True


class AISettings(BaseModel):
    provider: Literal["openai", "local"]
    openai: ProviderSettings | None = None
    prompts: dict[str, str] = Field(default_factory=dict)
    images: ImageSettings = Field(default_factory=ImageSettings)
    # Set when the image provider is `runware` and its integration is active with a key.
    runware: ProviderSettings | None = None

    @model_validator(mode="after")
    def _openai_has_settings(self) -> AISettings:
        if self.provider == "openai" and self.openai is None:
            raise ValueError("provider openai comes with its settings")
        return self

    def prompt(self, prompt_type: str, default: str) -> str:
        """The account's saved prompt of this type, or the caller's built-in."""
        value = self.prompts.get(prompt_type)
        return value if value and value.strip() else default


LOOKUP_SITE = Command(SERVICE, "lookup_site", LookupSite, SiteAndSectors, idempotent=True)
SEED_KEYWORDS = Command(SERVICE, "seed_keywords", SeedKeywordsRequest, SeedKeywords,
                        idempotent=True)
AI_SETTINGS = Command(SERVICE, "ai_settings", AISettingsRequest, AISettings, idempotent=True)


class AuthClient(CommandClient):
    async def lookup_site(self, account_id: int, site_id: int) -> SiteAndSectors | None:
        """The site and its sectors, or None when it is not this account's."""
        try:
            return await self.call(LOOKUP_SITE, LookupSite(account_id=account_id,
                                                           site_id=site_id))
        except NotFound:
            return None

    async def seed_keywords(self, ids: list[int]) -> list[SeedKeywordDoc]:
        found = await self.call(SEED_KEYWORDS, SeedKeywordsRequest(ids=ids))
        return found.seed_keywords

    async def ai_settings(self, account_id: int,
                          prompt_types: list[str] | None = None) -> AISettings:
        """Raises `ServiceUnavailable` when auth does not answer (transient) and
        `AISettingsUnusable` when the saved settings cannot be used (permanent)."""
        return await self.call(AI_SETTINGS, AISettingsRequest(account_id=account_id,
                                                              prompt_types=prompt_types))
