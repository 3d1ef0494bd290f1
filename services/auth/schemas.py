"""Request and response bodies. `XCreate`/`XUpdate` come in, `XPublic` goes out; table
models never cross the HTTP boundary. Bodies are `WriteModel`s of their resource: a GET
answer put back is accepted (its read-only fields ignored), a name that is no field is a
400, and null only where the resource shows null."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, EmailStr, Field, IPvAnyAddress, field_validator
from sqlalchemy import ColumnElement, Table

from libs.common.fields import ShortText
from libs.common.ids import MAX_BIGINT, Id
from libs.common.problems import ValidationFailed
from libs.common.repository import (
    Choice,
    Equals,
    Filter,
    FilterSet,
    ListQuery,
    NoFilters,
    Orderings,
    Search,
    table_of,
)
from libs.common.schemas import WriteModel, partial_of
from libs.common.security import ROLES
from services.auth.models import Account, Industry, IndustrySector, Plan, User
from services.auth.passwords import MIN_PASSWORD_LENGTH

# The largest value of an `integer` column (plan limits, seed keyword volumes).
MAX_INT = 2**31 - 1

AssignableRole = Literal["admin", "editor", "viewer"]
# A user's role as an update may name it: an owner's own (put back unchanged) included.
MemberRole = Literal["owner", "admin", "editor", "viewer"]
AccountStatus = Literal["active", "trial", "suspended", "cancelled"]
Intent = Literal["informational", "navigational", "commercial", "transactional"]
PromptType = Literal[
    "clustering",
    "ideas",
    "content_generation",
    "image_prompt_extraction",
    "image_prompt_template",
    "negative_prompt",
]
Provider = Literal["openai", "runware", "image_generation"]

Password = Field(min_length=MIN_PASSWORD_LENGTH, max_length=256)


class Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- plans, subscriptions, accounts -------------------------------------------------------


class PlanPublic(Public):
    id: int
    name: str
    slug: str
    price: Decimal
    billing_cycle: str
    included_credits: int
    max_users: int
    max_sites: int
    max_sectors_per_site: int
    max_keywords: int
    max_author_profiles: int
    features: list[str]
    is_active: bool


class PlanCreate(WriteModel):
    resource = PlanPublic
    name: str = Field(min_length=1, max_length=100)
    slug: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9-]+$")
    price: Decimal = Field(ge=0, max_digits=10, decimal_places=2)
    billing_cycle: Literal["monthly", "annual"] = "monthly"
    included_credits: int = Field(ge=0, le=MAX_INT)
    max_users: int = Field(ge=1, le=MAX_INT)
    max_sites: int = Field(ge=1, le=MAX_INT)
    max_sectors_per_site: int = Field(default=5, ge=1, le=MAX_INT)
    max_keywords: int = Field(ge=0, le=MAX_INT)
    max_author_profiles: int = Field(default=1, ge=0, le=MAX_INT)
    features: list[str] = Field(default_factory=list)
    is_active: bool = True


@partial_of(PlanCreate, fixed={"slug"})
class PlanUpdate(WriteModel):
    pass


class SubscriptionPublic(Public):
    id: int
    account_id: int
    plan_id: int
    plan_slug: str | None = None
    status: str
    current_period_start: datetime
    current_period_end: datetime
    created_at: datetime


class SubscriptionCreate(WriteModel):
    resource = SubscriptionPublic
    account_id: Id
    plan_id: Id
    status: Literal["active", "trialing", "past_due", "cancelled"] = "active"


class SubscriptionUpdate(WriteModel):
    resource = SubscriptionPublic
    plan_id: Id | None = None
    status: Literal["active", "trialing", "past_due", "cancelled"] | None = None
    current_period_end: datetime | None = None


class AccountPublic(Public):
    id: int
    name: str
    slug: str
    status: str
    owner_user_id: int | None
    plan_id: int
    plan: PlanPublic | None = None
    billing_email: str | None
    billing_address: str | None
    billing_city: str | None
    billing_postal_code: str | None
    billing_country: str | None
    tax_id: str | None
    created_at: datetime


class AccountCreate(WriteModel):
    """Platform staff opening an account for someone: the same path as registration."""

    resource = AccountPublic
    name: ShortText
    owner_email: EmailStr
    owner_password: str = Password
    plan_slug: str = "free"


class AccountSettingsUpdate(WriteModel):
    resource = AccountPublic
    name: ShortText | None = None
    billing_email: EmailStr | None = None
    billing_address: str | None = Field(default=None, max_length=500)
    billing_city: str | None = Field(default=None, max_length=100)
    billing_postal_code: str | None = Field(default=None, max_length=20)
    billing_country: str | None = Field(default=None, min_length=2, max_length=2)
    tax_id: str | None = Field(default=None, max_length=100)


class AccountUpdate(AccountSettingsUpdate):
    # Platform staff only.
    status: AccountStatus | None = None
    plan_id: Id | None = None


# --- users and sessions ------------------------------------------------------------------


class UserPublic(Public):
    id: int
    account_id: int
    email: str
    username: str
    first_name: str
    last_name: str
    role: str
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class SiteBrief(Public):
    id: int
    name: str
    slug: str
    url: str | None
    is_active: bool


class UserWithAccount(UserPublic):
    account: AccountPublic


class MeUser(UserWithAccount):
    accessible_sites: list[SiteBrief]


def account_public(account: Account, plan: Plan) -> AccountPublic:
    return AccountPublic.model_validate(account).model_copy(
        update={"plan": PlanPublic.model_validate(plan)}
    )


def user_with_account(user: User, account: Account, plan: Plan) -> UserWithAccount:
    return UserWithAccount(
        **UserPublic.model_validate(user).model_dump(), account=account_public(account, plan)
    )


class RegisterRequest(WriteModel):
    email: EmailStr
    password: str = Password
    password_confirm: str
    username: str | None = Field(default=None, min_length=1, max_length=150)
    first_name: str = Field(default="", max_length=150)
    last_name: str = Field(default="", max_length=150)
    account_name: ShortText | None = None


class LoginRequest(BaseModel):
    # Not EmailStr: sign-in must not reveal format rules, and seeded addresses such as
    # `demo@igny8.local` use special-use domains that registration would refuse.
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(BaseModel):
    refresh: str = Field(min_length=1, max_length=512)


class LogoutRequest(BaseModel):
    refresh: str | None = Field(default=None, max_length=512)


class ChangePasswordRequest(WriteModel):
    old_password: str = Field(min_length=1, max_length=256)
    new_password: str = Password
    new_password_confirm: str


class TokenPair(BaseModel):
    access: str
    refresh: str
    access_expires_at: datetime
    refresh_expires_at: datetime


class LoginResult(TokenPair):
    user: UserWithAccount


class UserCreate(WriteModel):
    resource = UserPublic
    email: EmailStr
    password: str = Password
    username: str | None = Field(default=None, min_length=1, max_length=150)
    first_name: str = Field(default="", max_length=150)
    last_name: str = Field(default="", max_length=150)
    role: AssignableRole = "viewer"


class UserInvite(WriteModel):
    resource = UserPublic
    email: EmailStr
    role: AssignableRole = "viewer"
    first_name: str = Field(default="", max_length=150)
    last_name: str = Field(default="", max_length=150)


class UserInvited(BaseModel):
    user: UserPublic
    # Shown once: the invited user signs in with it and changes it.
    temporary_password: str


class UserUpdate(WriteModel):
    resource = UserPublic
    username: str | None = Field(default=None, min_length=1, max_length=150)
    first_name: str | None = Field(default=None, max_length=150)
    last_name: str | None = Field(default=None, max_length=150)
    role: MemberRole | None = None
    is_active: bool | None = None


class TeamMemberCreate(WriteModel):
    resource = UserPublic
    email: EmailStr
    password: str | None = Field(default=None, min_length=MIN_PASSWORD_LENGTH, max_length=256)
    first_name: str = Field(default="", max_length=150)
    last_name: str = Field(default="", max_length=150)
    role: AssignableRole = "viewer"


class ExchangeRequest(BaseModel):
    authorization: str = Field(min_length=1, max_length=4096)
    # The address of the gateway's client: failed Basic credentials are counted against it
    # (without it, against the caller of the exchange, i.e. the gateway itself).
    client_address: IPvAnyAddress | None = None


class ExchangeResult(BaseModel):
    access: str
    expires_at: int


# --- sites, sectors, access, groups ---------------------------------------------------------


class SitePublic(Public):
    id: int
    account_id: int
    name: str
    slug: str
    url: str | None
    description: str
    industry_id: int | None
    industry_slug: str | None = None
    is_active: bool
    has_api_key: bool = False
    api_key_prefix: str | None
    created_at: datetime
    updated_at: datetime | None


class SiteCreate(WriteModel):
    resource = SitePublic
    name: ShortText
    url: str | None = Field(default=None, max_length=500, pattern=r"^https?://\S+$")
    description: str = Field(default="", max_length=5000)
    industry_id: Id | None = None
    is_active: bool = True


@partial_of(SiteCreate)
class SiteUpdate(WriteModel):
    pass


class SelectSectorsRequest(WriteModel):
    industry_slug: str = Field(min_length=1, max_length=150)
    sector_slugs: list[str] = Field(min_length=1)


class SiteApiKey(BaseModel):
    api_key: str


class SectorPublic(Public):
    id: int
    account_id: int
    site_id: int
    name: str
    slug: str
    industry_sector_id: int | None
    description: str
    is_active: bool
    created_at: datetime


class SectorCreate(WriteModel):
    resource = SectorPublic
    site_id: Id
    name: ShortText
    industry_sector_id: Id | None = None
    description: str = Field(default="", max_length=5000)
    is_active: bool = True


@partial_of(SectorCreate, fixed={"site_id", "industry_sector_id"})
class SectorUpdate(WriteModel):
    pass


class SiteAccessPublic(Public):
    id: int
    account_id: int
    user_id: int
    site_id: int
    created_at: datetime


class SiteAccessCreate(WriteModel):
    resource = SiteAccessPublic
    user_id: Id
    site_id: Id


class GroupPublic(Public):
    id: int
    account_id: int
    name: str
    description: str
    user_ids: list[int] = Field(default_factory=list)
    created_at: datetime


class GroupCreate(WriteModel):
    resource = GroupPublic
    name: str = Field(min_length=1, max_length=150)
    description: str = Field(default="", max_length=5000)
    user_ids: list[Id] = Field(default_factory=list)


@partial_of(GroupCreate)
class GroupUpdate(WriteModel):
    pass


# --- catalogue ----------------------------------------------------------------------------


class IndustrySectorPublic(Public):
    id: int
    industry_id: int
    name: str
    slug: str
    description: str
    is_active: bool


class IndustryPublic(Public):
    id: int
    name: str
    slug: str
    description: str
    is_active: bool
    sectors: list[IndustrySectorPublic] = Field(default_factory=list)


class SeedKeywordPublic(BaseModel):
    id: int
    keyword: str
    industry_id: int
    industry_slug: str
    industry_name: str
    sector_id: int
    sector_slug: str
    sector_name: str
    volume: int
    difficulty: int
    intent: str
    country: str
    is_active: bool


class SeedKeywordRow(BaseModel):
    """One CSV row of the seed keyword library (industry and sector by slug)."""

    model_config = ConfigDict(str_strip_whitespace=True)

    keyword: ShortText
    industry: str = Field(min_length=1, max_length=150)
    sector: str = Field(min_length=1, max_length=150)
    volume: int = Field(default=0, ge=0, le=MAX_INT)  # an integer column
    difficulty: int = Field(default=0, ge=0, le=100)
    intent: Intent = "informational"
    country: str = Field(default="US", min_length=2, max_length=2)
    is_active: bool = True

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """PostgreSQL text cannot hold U+0000 (DRF's CharField message)."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("Null characters are not allowed.")
        return value

    @field_validator("country")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("intent", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) and value else "informational"


class ImportReport(BaseModel):
    created: int
    updated: int
    unchanged: int
    errors: dict[str, list[str]]


# --- account AI configuration --------------------------------------------------------------


class PromptPublic(BaseModel):
    id: int | None
    prompt_type: str
    prompt_value: str
    default_prompt: str
    is_customized: bool
    is_active: bool
    updated_at: datetime | None


class PromptCreate(WriteModel):
    resource = PromptPublic
    prompt_type: PromptType
    prompt_value: str = Field(min_length=1, max_length=50_000)
    is_active: bool = True


@partial_of(PromptCreate, fixed={"prompt_type"})
class PromptUpdate(WriteModel):
    pass


class PromptSave(WriteModel):
    resource = PromptPublic
    prompt_type: PromptType
    prompt_value: str = Field(min_length=1, max_length=50_000)


class PromptReset(WriteModel):
    prompt_type: PromptType


class IntegrationPublic(BaseModel):
    provider: str
    is_active: bool
    config: dict[str, Any]
    api_key: str | None  # masked
    has_api_key: bool
    updated_at: datetime | None


class IntegrationUpdate(WriteModel):
    resource = IntegrationPublic
    api_key: str | None = Field(default=None, min_length=1, max_length=512)
    base_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://\S+$")
    model: str | None = Field(default=None, min_length=1, max_length=200)
    is_active: bool | None = None
    config: dict[str, Any] | None = None


class IntegrationTest(BaseModel):
    """Optional overrides to test a key before saving it (`provider` as the reference sends)."""

    model_config = ConfigDict(extra="ignore")

    provider: str | None = None
    api_key: str | None = Field(default=None, min_length=1, max_length=512)
    base_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://\S+$")


class IntegrationTestResult(BaseModel):
    ok: bool
    provider: str
    base_url: str
    models: list[str]


class ImageGenerateRequest(WriteModel):
    prompt: str = Field(min_length=1, max_length=4000)
    # On `image_generation`: the image provider to call (else the one it is set to use).
    provider: str | None = Field(default=None, max_length=50)
    size: str = Field(default="1024x1024", pattern=r"^\d{2,4}x\d{2,4}$")
    model: str | None = Field(default=None, max_length=200)


class ImageGenerateResult(BaseModel):
    provider: str
    model: str
    url: str | None
    b64_json: str | None
    media_type: str | None = None


# --- what lists accept: filters, ordering and paging declared once (libs/common/repository) --


def as_id(value: str) -> int | None:
    """`value` as a row id when it is one (digits within bigint), else None (a slug)."""
    return int(value) if value.isdigit() and 0 < int(value) <= MAX_BIGINT else None


class IdOrSlug(Filter):
    """A row of a joined catalogue table named by its id or its slug."""

    def __init__(self, table: Table, description: str) -> None:
        super().__init__(description=description)
        self.table = table

    def condition(self, t: Any, value: Any) -> ColumnElement[bool]:
        row_id = as_id(value)
        if row_id is not None:
            return self.table.c.id == row_id
        return self.table.c.slug == value


class CountryCode(Filter):
    """A two-letter country code, any case."""

    def clean(self, value: Any) -> Any:
        value = super().clean(value)
        if value is not None and (len(value) != 2 or not value.isalpha()):
            raise ValidationFailed.field(self.name, "Enter a two-letter country code.")
        return value.upper() if value else None


class UserFilters(FilterSet):
    role = Choice(tuple(r for r in ROLES if r != "system_bot"))
    is_active = Equals(bool)


class ActiveFilters(FilterSet):
    is_active = Equals(bool)


class SectorFilters(FilterSet):
    site_id = Equals(Id)
    is_active = Equals(bool)


class SiteAccessFilters(FilterSet):
    user_id = Equals(Id)
    site_id = Equals(Id)


class SeedKeywordFilters(FilterSet):
    industry = IdOrSlug(table_of(Industry), "Industry id or slug.")
    sector = IdOrSlug(table_of(IndustrySector), "Industry sector id or slug.")
    # The names each row shows its industry and sector by (DRF's `industry_id` params).
    industry_id = Equals(Id, description="Industry id.")
    sector_id = Equals(Id, description="Industry sector id.")
    intent = Choice(get_args(Intent))
    country = CountryCode()
    search = Search("keyword")


USER_ORDERING = Orderings("id", "email", "username", "created_at", "last_login_at", default="id")
SECTOR_ORDERING = Orderings("id", "name", "site_id", "created_at", default="site_id,id")

UserQuery = ListQuery.of(UserFilters, USER_ORDERING)
TeamQuery = ListQuery.of(NoFilters, USER_ORDERING)
AccountQuery = ListQuery.of(NoFilters, Orderings("id", "name", "created_at", default="id"))
SubscriptionQuery = ListQuery.of(
    NoFilters, Orderings("id", "created_at", "current_period_end", default="-id")
)
PlanQuery = ListQuery.of(NoFilters, Orderings("price", "name", "id", default="price"))
SiteQuery = ListQuery.of(ActiveFilters, Orderings("id", "name", "created_at", default="id"))
SectorQuery = ListQuery.of(SectorFilters, SECTOR_ORDERING)
SiteSectorQuery = ListQuery.of(NoFilters, SECTOR_ORDERING)
SiteAccessQuery = ListQuery.of(SiteAccessFilters, Orderings("id", "created_at", default="id"))
GroupQuery = ListQuery.of(NoFilters, Orderings("id", "name", "created_at", default="id"))
IndustryQuery = ListQuery.of(NoFilters, Orderings("name", "id", default="name"))
SeedKeywordQuery = ListQuery.of(
    SeedKeywordFilters, Orderings("keyword", "volume", "difficulty", default="keyword")
)
PromptQuery = ListQuery.of(NoFilters, Orderings("prompt_type", "id", default="prompt_type"))
