"""The account's AI configuration: its prompts (one per type, falling back to the
built-in) and its provider integrations (API keys stored encrypted, shown masked). Other
services' AI jobs read both through the `ai_settings` command."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from libs.common.ai import AIConfigurationError, AIError, AIProviderError
from libs.common.ai.openai import OpenAIProvider
from libs.common.ai.runware import RunwareProvider
from libs.common.crypto import InvalidToken as UndecryptableSecret
from libs.common.crypto import SecretBox, mask_secret
from libs.common.events import utcnow
from libs.common.outbound import OutboundPolicy, check_target_url
from libs.common.problems import NotFound, ValidationFailed
from libs.common.repository import ListQuery, Page
from libs.common.security import Principal
from libs.common.uow import UnitOfWork
from services.auth import repository as repo
from services.auth import schemas as s
from services.auth.models import IntegrationSetting, Prompt
from services.auth.repository import ai_config as ai_config_repo
from services.auth.repository import visibility_of
from services.auth.repository.ai_config import PromptRepository
from services.auth.service.common import check_role

log = logging.getLogger(__name__)

# The SecretBox purpose the integration API keys are encrypted under.
INTEGRATION_KEYS_PURPOSE = "auth-integration-keys"


def integration_keys(secret_key: str) -> SecretBox:
    """The box the account's provider API keys are sealed in, from the platform secret."""
    return SecretBox(secret_key, INTEGRATION_KEYS_PURPOSE)


# --- prompts ---------------------------------------------------------------------------------

DEFAULT_PROMPTS: dict[str, str] = {
    "clustering": (
        "Group the following keywords into topic clusters. Each cluster gathers keywords "
        'that one article could rank for. Answer JSON: {"clusters": [{"name": ..., '
        '"description": ..., "keywords": [...]}]}.\n\nKeywords:\n[IGNY8_KEYWORDS]'
    ),
    "ideas": (
        "Propose content ideas for the cluster [IGNY8_CLUSTER] (keywords: [IGNY8_KEYWORDS]). "
        "For each idea give a title, a content type, a structure and an H2/H3 outline. "
        'Answer JSON: {"ideas": [...]}.'
    ),
    "content_generation": (
        "Write a complete, original article in HTML for: [IGNY8_IDEA]. Cover the outline "
        "[IGNY8_OUTLINE], use the keywords [IGNY8_KEYWORDS] naturally, and add a meta title "
        "and meta description. Answer JSON with title, content, meta_title, "
        "meta_description."
    ),
    "image_prompt_extraction": (
        "Read the article [IGNY8_CONTENT] and write one featured image prompt and "
        "[IGNY8_IMAGE_COUNT] in-article image prompts that illustrate its sections. "
        'Answer JSON: {"featured_prompt": ..., "in_article_prompts": [...]}.'
    ),
    "image_prompt_template": (
        "Create a high-quality [IGNY8_IMAGE_TYPE] image for a blog post titled "
        '"[IGNY8_POST_TITLE]": [IGNY8_IMAGE_PROMPT]'
    ),
    "negative_prompt": "text, watermark, logo, blurry, distorted, low quality, deformed hands",
}


def prompt_public(prompt_type: str, row: Prompt | None) -> s.PromptPublic:
    default = DEFAULT_PROMPTS[prompt_type]
    return s.PromptPublic(
        id=row.id if row else None,
        prompt_type=prompt_type,
        prompt_value=row.prompt_value if row else default,
        default_prompt=default,
        is_customized=row is not None,
        is_active=row.is_active if row else True,
        updated_at=row.updated_at if row else None,
    )


async def list_prompts(
    uow: UnitOfWork, actor: Principal, query: ListQuery[Any]
) -> Page[s.PromptPublic]:
    """The account's saved prompts (types without one use the built-in, see `by_type`)."""
    check_role(actor, "viewer")
    page = await PromptRepository(uow.session, visibility_of(actor)).page(query)
    return Page(page.count, [prompt_public(p.prompt_type, p) for p in page.rows])


async def get_prompt(uow: UnitOfWork, actor: Principal, prompt_id: int) -> Prompt:
    check_role(actor, "viewer")
    row = await PromptRepository(uow.session, visibility_of(actor)).get(prompt_id)
    if row is None:
        raise NotFound("Prompt not found.")
    return row


async def _lock_prompt_type(uow: UnitOfWork, account_id: int, prompt_type: str) -> None:
    """Writers of one account's prompt type take turns (one row per type: concurrent
    first saves would otherwise collide on the unique key). Deleting and resetting take
    the same turn: a save that had read the row a delete was removing updated nothing
    (SQLAlchemy's StaleDataError, a 500 found by schemathesis); now it reads after the
    delete, finds no row and inserts one."""
    await repo.lock(uow.session, f"auth-prompt:{account_id}:{prompt_type}")


async def create_prompt(uow: UnitOfWork, actor: Principal, data: s.PromptCreate) -> Prompt:
    check_role(actor, "editor")
    await _lock_prompt_type(uow, actor.account_id, data.prompt_type)
    if await ai_config_repo.prompt_by_type(uow.session, actor.account_id, data.prompt_type):
        raise ValidationFailed(
            errors={"prompt_type": ["A prompt of this type already exists; update it or use save."]}
        )
    row = Prompt(account_id=actor.account_id, **data.model_dump())
    await repo.add(uow.session, row)
    return row


async def update_prompt(
    uow: UnitOfWork, actor: Principal, prompt_id: int, data: s.PromptUpdate
) -> Prompt:
    check_role(actor, "editor")
    row = await get_prompt(uow, actor, prompt_id)
    for key, value in data.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(row, key, value)
    row.updated_at = utcnow()
    await repo.add(uow.session, row)
    return row


async def delete_prompt(uow: UnitOfWork, actor: Principal, prompt_id: int) -> None:
    check_role(actor, "editor")
    row = await get_prompt(uow, actor, prompt_id)
    await _lock_prompt_type(uow, actor.account_id, row.prompt_type)
    await repo.remove(uow.session, row)


async def prompt_by_type(uow: UnitOfWork, actor: Principal, prompt_type: str) -> s.PromptPublic:
    check_role(actor, "viewer")
    if prompt_type not in DEFAULT_PROMPTS:
        raise NotFound(f"Unknown prompt type {prompt_type!r}.")
    return prompt_public(
        prompt_type, await ai_config_repo.prompt_by_type(uow.session, actor.account_id, prompt_type)
    )


async def save_prompt(uow: UnitOfWork, actor: Principal, data: s.PromptSave) -> s.PromptPublic:
    check_role(actor, "editor")
    await _lock_prompt_type(uow, actor.account_id, data.prompt_type)
    row = await ai_config_repo.prompt_by_type(uow.session, actor.account_id, data.prompt_type)
    if row is None:
        row = Prompt(
            account_id=actor.account_id,
            prompt_type=data.prompt_type,
            prompt_value=data.prompt_value,
        )
    row.prompt_value, row.updated_at = data.prompt_value, utcnow()
    await repo.add(uow.session, row)
    return prompt_public(data.prompt_type, row)


async def reset_prompt(uow: UnitOfWork, actor: Principal, data: s.PromptReset) -> s.PromptPublic:
    check_role(actor, "editor")
    await _lock_prompt_type(uow, actor.account_id, data.prompt_type)
    row = await ai_config_repo.prompt_by_type(uow.session, actor.account_id, data.prompt_type)
    if row is not None:
        await repo.remove(uow.session, row)
    return prompt_public(data.prompt_type, None)


# --- integration settings ----------------------------------------------------------------------

DEFAULT_INTEGRATIONS: dict[str, dict[str, Any]] = {
    "openai": {
        "base_url": "https://api.openai.com/v1",
        "model": "gpt-4o-mini",
        "image_model": "dall-e-3",
    },
    "runware": {"base_url": "https://api.runware.ai/v1", "model": "runware:100@1"},
    "image_generation": {
        "provider": "local",
        "model": "local-render-1",
        "image_type": "realistic",
        "max_in_article_images": 2,
        "image_format": "webp",
        "desktop_enabled": True,
        "mobile_enabled": True,
    },
}
KEYLESS_PROVIDERS = ("image_generation",)
_HTTP_URL = re.compile(r"^https?://\S+$")


def _provider(provider: str) -> str:
    if provider not in DEFAULT_INTEGRATIONS:
        raise NotFound(f"Unknown integration {provider!r}.")
    return provider


def integration_public(
    keys: SecretBox, provider: str, row: IntegrationSetting | None
) -> s.IntegrationPublic:
    key = None
    if row is not None and row.api_key_encrypted:
        try:
            key = keys.decrypt(row.api_key_encrypted)
        except UndecryptableSecret:
            key = "unreadable"
    return s.IntegrationPublic(
        provider=provider,
        is_active=row.is_active if row else False,
        config={**DEFAULT_INTEGRATIONS[provider], **(row.config if row else {})},
        api_key=mask_secret(key),
        has_api_key=key is not None,
        updated_at=row.updated_at if row else None,
    )


async def get_integration(
    uow: UnitOfWork, actor: Principal, keys: SecretBox, provider: str, *, minimum: str = "admin"
) -> s.IntegrationPublic:
    check_role(actor, minimum)
    provider = _provider(provider)
    return integration_public(
        keys, provider, await ai_config_repo.integration(uow.session, actor.account_id, provider)
    )


KEY_STAYS_WITH_ITS_URL = (
    "A saved API key is only ever sent to the base_url it was saved with: send the API key "
    "again together with the new base_url."
)
PROVIDER_UNREACHABLE = (
    "Could not reach the provider, or it did not answer as an OpenAI-compatible API."
)


class ProviderCallFailed(ValidationFailed):
    """Calling the account's provider failed. The text stays generic on purpose: details
    such as connection errors would tell a caller which hosts and ports answer."""

    title = "Provider call failed"


def _base_url(provider: str, config: dict[str, Any]) -> str:
    return str({**DEFAULT_INTEGRATIONS[provider], **config}.get("base_url", "")).rstrip("/")


async def save_integration(
    uow: UnitOfWork,
    actor: Principal,
    keys: SecretBox,
    provider: str,
    data: s.IntegrationUpdate,
    policy: OutboundPolicy,
) -> s.IntegrationPublic:
    """Merge the given settings into the saved ones. Fields not sent keep their saved
    value (`is_active` too); a saved key never follows a changed base_url on its own; a
    new base_url must pass the outbound guard (no loopback, private or metadata targets
    unless development allows private ones)."""
    check_role(actor, "admin")
    provider = _provider(provider)
    await repo.lock(uow.session, f"auth-integration:{actor.account_id}:{provider}")
    row = await ai_config_repo.integration(uow.session, actor.account_id, provider)
    if row is None:
        row = IntegrationSetting(account_id=actor.account_id, provider=provider)
    if data.api_key is not None and data.api_key == integration_public(keys, provider, row).api_key:
        # The masked key a GET shows, put back: the saved key stays.
        data = data.model_copy(update={"api_key": None})
    if provider in KEYLESS_PROVIDERS and data.api_key:
        raise ValidationFailed(errors={"api_key": [f"{provider} takes no API key."]})
    config = dict(row.config or {})
    config.update(data.config or {})
    for key in ("base_url", "model"):
        if getattr(data, key) is not None:
            config[key] = getattr(data, key)
    if provider == "image_generation" and config.get("provider") not in (
        None,
        "local",
        *[p for p in DEFAULT_INTEGRATIONS if p not in KEYLESS_PROVIDERS],
    ):
        raise ValidationFailed(errors={"config.provider": ["Unknown image provider."]})
    if provider not in KEYLESS_PROVIDERS:
        url = config.get("base_url")
        if url is not None and not (isinstance(url, str) and _HTTP_URL.match(url)):
            raise ValidationFailed(errors={"base_url": ["Enter an http(s) URL."]})
        moved = _base_url(provider, config) != _base_url(provider, row.config or {})
        if moved and data.api_key is None and row.api_key_encrypted:
            raise ValidationFailed(errors={"api_key": [KEY_STAYS_WITH_ITS_URL]})
        if moved:
            await check_target_url(_base_url(provider, config), field="base_url", policy=policy)
    row.config = config
    if data.api_key is not None:
        row.api_key_encrypted = keys.encrypt(data.api_key)
    if data.is_active is not None:
        row.is_active = data.is_active
    row.updated_at = utcnow()
    await repo.add(uow.session, row)
    return integration_public(keys, provider, row)


@dataclass(frozen=True)
class _Target:
    """Where a provider call goes and with which key."""

    provider: str
    base_url: str
    api_key: str
    config: dict[str, Any]


async def _target(
    uow: UnitOfWork,
    actor: Principal,
    keys: SecretBox,
    provider: str,
    policy: OutboundPolicy,
    override: s.IntegrationTest | None = None,
) -> _Target:
    """The saved base_url and key, or the ones the caller sends to try before saving. A
    saved key goes only to the saved base_url: another base_url needs its own key and must
    pass the outbound guard."""
    check_role(actor, "admin")
    provider = _provider(provider)
    if provider in KEYLESS_PROVIDERS:
        raise ValidationFailed(f"{provider} has no endpoint of its own to call.")
    row = await ai_config_repo.integration(uow.session, actor.account_id, provider)
    config = {**DEFAULT_INTEGRATIONS[provider], **(row.config if row else {})}
    saved_url = _base_url(provider, config)
    base_url = override.base_url.rstrip("/") if override and override.base_url else saved_url
    key = override.api_key if override and override.api_key else None
    if key is None and base_url != saved_url:
        raise ValidationFailed(errors={"api_key": [KEY_STAYS_WITH_ITS_URL]})
    if base_url != saved_url:
        await check_target_url(base_url, field="base_url", policy=policy)
    if key is None and row is not None and row.api_key_encrypted:
        try:
            key = keys.decrypt(row.api_key_encrypted)
        except UndecryptableSecret as exc:
            raise ValidationFailed("The saved API key cannot be read; save it again.") from exc
    if not key:
        raise ValidationFailed(errors={"api_key": ["No API key saved for this provider."]})
    return _Target(provider, base_url, key, config)


@contextlib.asynccontextmanager
async def _provider_call(
    target: _Target, policy: OutboundPolicy
) -> AsyncIterator[OpenAIProvider | RunwareProvider]:
    """The provider's client from the kernel (`libs/common/ai`), calling through the
    outbound guard (`policy`: every connection checked at connect time), its failures
    turned into generic 400s (the details go to the log only)."""
    client: OpenAIProvider | RunwareProvider
    try:
        if target.provider == "runware":
            model = str(target.config["model"])
            client = RunwareProvider(
                target.api_key, base_url=target.base_url, model=model, policy=policy
            )
        else:
            client = OpenAIProvider(target.base_url, target.api_key, policy=policy)
    except AIConfigurationError as exc:
        raise ValidationFailed(errors={"base_url": ["Enter an http(s) URL."]}) from exc
    try:
        async with client:
            yield client
    except AIProviderError as exc:
        log.info("provider call to %s failed: %s", target.base_url, exc.message)
        if exc.status in (401, 403):
            raise ProviderCallFailed("The provider rejected the API key.") from exc
        raise ProviderCallFailed(PROVIDER_UNREACHABLE) from exc
    except AIError as exc:
        log.info("provider call to %s failed: %s", target.base_url, exc.message)
        raise ProviderCallFailed(PROVIDER_UNREACHABLE) from exc


def _for_test(policy: OutboundPolicy, timeout: float) -> OutboundPolicy:
    """The guard's policy with the integration action's time limit."""
    return dataclasses.replace(policy, total_timeout=timeout, connect_timeout=min(timeout, 10))


async def _acting_provider(
    uow: UnitOfWork, actor: Principal, provider: str, named: str | None
) -> str:
    """The provider `test` and `generate` call: the one in the path, except for
    `image_generation`, which has no endpoint of its own: the image provider the body
    names (the reference's `{"provider": "runware"}`), else the one it is set to use."""
    check_role(actor, "admin")
    provider = _provider(provider)
    if provider not in KEYLESS_PROVIDERS:
        return provider
    if named is None:
        row = await ai_config_repo.integration(uow.session, actor.account_id, provider)
        named = str({**DEFAULT_INTEGRATIONS[provider], **(row.config if row else {})}
                    .get("provider") or "local")
    if named not in DEFAULT_INTEGRATIONS or named in KEYLESS_PROVIDERS:
        image_providers = [p for p in DEFAULT_INTEGRATIONS if p not in KEYLESS_PROVIDERS]
        raise ValidationFailed(errors={"provider": [
            f"Images use the local engine: there is no provider to call. Name one of "
            f"{', '.join(image_providers)}." if named == "local"
            else "Unknown image provider."]})
    return named


async def test_integration(
    uow: UnitOfWork,
    actor: Principal,
    keys: SecretBox,
    provider: str,
    override: s.IntegrationTest | None,
    *,
    policy: OutboundPolicy,
    timeout: float,
) -> s.IntegrationTestResult:
    """Prove the saved (or supplied) URL and key: list an OpenAI-compatible provider's
    models; authenticate at Runware (which lists none: the configured model is shown)."""
    named = override.provider if override is not None else None
    provider = await _acting_provider(uow, actor, provider, named)
    target = await _target(uow, actor, keys, provider, policy, override)
    async with _provider_call(target, _for_test(policy, timeout)) as client:
        if isinstance(client, RunwareProvider):
            await client.authenticate()
            models = [str(target.config["model"])]
        else:
            models = await client.list_models()
    return s.IntegrationTestResult(
        ok=True, provider=provider, base_url=target.base_url, models=models
    )


async def generate_test_image(
    uow: UnitOfWork,
    actor: Principal,
    keys: SecretBox,
    provider: str,
    data: s.ImageGenerateRequest,
    *,
    policy: OutboundPolicy,
    timeout: float,
) -> s.ImageGenerateResult:
    """One image from the saved provider, to check its image settings."""
    provider = await _acting_provider(uow, actor, provider, data.provider)
    target = await _target(uow, actor, keys, provider, policy)
    model = data.model or str(target.config.get("image_model") or target.config.get("model"))
    async with _provider_call(target, _for_test(policy, timeout)) as client:
        image = await client.generate_image(data.prompt, size=data.size, model=model)
    return s.ImageGenerateResult(
        provider=provider,
        model=image.model,
        url=None,
        b64_json=base64.b64encode(image.data).decode(),
        media_type=image.media_type,
    )


async def image_generation_settings(
    uow: UnitOfWork, actor: Principal, keys: SecretBox
) -> dict[str, Any]:
    public = await get_integration(uow, actor, keys, "image_generation", minimum="viewer")
    return {"is_active": public.is_active, **public.config}


# --- AI settings for other services' jobs (internal command only) ------------------------------


class UnreadableIntegrationKey(Exception):
    """The account's saved API key cannot be decrypted (the platform secret changed)."""


async def _provider_settings(
    uow: UnitOfWork, keys: SecretBox, account_id: int, provider: str
) -> dict[str, str] | None:
    """An active integration with a key, the key in clear (for the internal answer only)."""
    row = await ai_config_repo.integration(uow.session, account_id, provider)
    if row is None or not row.is_active or not row.api_key_encrypted:
        return None
    try:
        api_key = keys.decrypt(row.api_key_encrypted)
    except UndecryptableSecret as exc:
        raise UnreadableIntegrationKey(
            f"The saved {provider} API key cannot be read; save it again."
        ) from exc
    config = {**DEFAULT_INTEGRATIONS[provider], **(row.config or {})}
    found = {
        "base_url": _base_url(provider, config),
        "api_key": api_key,
        "model": str(config["model"]),
    }
    if config.get("image_model"):
        found["image_model"] = str(config["image_model"])
    return found


async def ai_settings(
    uow: UnitOfWork, keys: SecretBox, account_id: int, prompt_types: Sequence[str] | None = None
) -> dict[str, Any]:
    """What the account's AI jobs run with (`libs.common.auth.AISettings`): its active
    OpenAI integration (API key in clear: for the internal command answer only, never an
    HTTP response) or `local`, its saved prompts (types without one are absent: callers
    use their built-ins), and its image settings, with the Runware integration when
    images use it."""
    openai = await _provider_settings(uow, keys, account_id, "openai")
    images_row = await ai_config_repo.integration(uow.session, account_id, "image_generation")
    images = {
        **DEFAULT_INTEGRATIONS["image_generation"],
        **(images_row.config if images_row is not None and images_row.is_active else {}),
    }
    runware = None
    if images.get("provider") == "runware":
        runware = await _provider_settings(uow, keys, account_id, "runware")
    prompts = await ai_config_repo.account_prompts(uow.session, account_id, prompt_types)
    return {
        "provider": "openai" if openai else "local",
        "openai": openai,
        "prompts": {p.prompt_type: p.prompt_value for p in prompts},
        "images": images,
        "runware": runware,
    }
