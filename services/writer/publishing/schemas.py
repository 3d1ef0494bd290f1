"""What the integration, publisher and webhook endpoints read and answer.

Credentials go in (`credentials: {username, app_password}`) and never come out: an
integration shows `has_credentials` and the username's first letters only. The webhook
secret the WordPress plugin signs with is shown to editors and the site's key (the plugin
is configured with it), like a payment provider's signing secret in its dashboard."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from libs.common.fields import ShortText, json_numbers_fit
from libs.common.ids import Id
from libs.common.repository import Choice, Equals, FilterSet, ListQuery, Orderings
from libs.common.schemas import ActionBody, WriteModel
from services.writer.publishing.models import PublicationState, SyncStatus, post_id_text

# A WordPress post id as the API answers it: the string the original's `external_id` (a
# CharField) was, as content's and taxonomies' are; publications store the integer
# WordPress gives (ADR 0038).
ExternalId = Annotated[str, BeforeValidator(post_id_text)]


class WordPressConfig(BaseModel):
    """`site_url` is required; other keys are kept as given (`rest_style`, `seo_fields` and
    the structure are written by the connection test and `update-structure`)."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    site_url: str = Field(min_length=1, max_length=2048)

    _numbers_fit = model_validator(mode="before")(json_numbers_fit)


class Credentials(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    username: ShortText
    app_password: ShortText


class IntegrationOut(BaseModel):
    id: int
    account_id: int
    site_id: int
    platform: str
    config: dict[str, Any]
    has_credentials: bool
    username_hint: str | None
    webhook_secret: str
    is_active: bool
    sync_enabled: bool
    sync_status: SyncStatus
    last_sync_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class IntegrationWrite(WriteModel):
    """A changed `config.site_url` needs the credentials again (a saved Application
    Password is only ever sent to the URL it was saved with)."""

    resource = IntegrationOut

    config: WordPressConfig | None = None
    credentials: Credentials | None = None
    is_active: bool | None = None
    sync_enabled: bool | None = None


class IntegrationCreate(IntegrationWrite):
    site_id: Id
    platform: Literal["wordpress"] = "wordpress"
    config: WordPressConfig


class IntegrationFilters(FilterSet):
    site_id = Equals(Id)
    platform = Choice(("wordpress",))
    is_active = Equals(bool)


INTEGRATION_ORDERING = Orderings("created_at", "updated_at", "id", default="-created_at")
IntegrationQuery = ListQuery.of(IntegrationFilters, INTEGRATION_ORDERING)


class ConnectionTest(BaseModel):
    """The collection-level `test-connection/`: nothing is saved. Takes the create body's
    shape (`config.site_url`, `credentials`) or the flat one (`site_url`, `username`,
    `app_password`)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    config: WordPressConfig
    credentials: Credentials

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        if isinstance(data, dict) and "config" not in data and "site_url" in data:
            return {"config": {"site_url": data.get("site_url")},
                    "credentials": {"username": data.get("username"),
                                    "app_password": data.get("app_password")}}
        return data


class SyncRequest(BaseModel):
    import_posts: bool = True
    statuses: Literal["publish", "publish,draft", "any"] = "publish"


class PublishRequest(ActionBody):
    """`date_gmt` a datetime string: a number (unix seconds to pydantic) is DRF's 400."""

    model_config = ConfigDict(str_strip_whitespace=True)

    status: Literal["draft", "publish", "future"] = "publish"
    date_gmt: datetime | None = None
    integration_id: Id | None = None


class UnpublishRequest(BaseModel):
    trash: bool = False
    integration_id: Id | None = None


class PublicationOut(BaseModel):
    id: int
    account_id: int
    site_id: int
    integration_id: int
    content_id: int
    attempt: int
    status: PublicationState
    external_id: ExternalId | None
    url: str | None
    slug: str | None
    revision: int | None
    error: str | None
    task_id: str | None
    created_at: datetime
    updated_at: datetime


class PublicationFilters(FilterSet):
    site_id = Equals(Id)
    content_id = Equals(Id)
    integration_id = Equals(Id)
    status = Choice(PublicationState)


PUBLICATION_ORDERING = Orderings("created_at", "updated_at", "id", "status",
                                 default="-updated_at")
PublicationQuery = ListQuery.of(PublicationFilters, PUBLICATION_ORDERING)


class StatusWebhook(BaseModel):
    """What the plugin says when a post changes status on the site. The post is named by
    the platform's content id (the plugin reads it from the post's marker) or by its id on
    the site."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    content_id: Id | None = None
    post_id: Id | None = None
    status: str = Field(min_length=1, max_length=32)
    url: str | None = Field(default=None, max_length=2048)

    @model_validator(mode="after")
    def _named(self) -> StatusWebhook:
        if self.content_id is None and self.post_id is None:
            raise ValueError("Name the post: content_id or post_id.")
        return self


class MetadataWebhook(BaseModel):
    """Fields an editor changed on the site; only those sent are applied."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    content_id: Id | None = None
    post_id: Id | None = None
    title: ShortText | None = None
    slug: str | None = Field(default=None, max_length=255)
    url: str | None = Field(default=None, max_length=2048)
    meta_title: str | None = Field(default=None, max_length=255)
    meta_description: str | None = Field(default=None, max_length=500)
    categories: list[str] | None = Field(default=None, max_length=100)
    tags: list[str] | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _named(self) -> MetadataWebhook:
        if self.content_id is None and self.post_id is None:
            raise ValueError("Name the post: content_id or post_id.")
        return self


class TaskQueuedOut(BaseModel):
    task_id: str
