"""The account's AI configuration under `/api/v1/system/`: prompts and provider
integrations (with their `test` and `generate` actions)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from libs.common.ids import Id
from libs.common.pagination import message_response, page_response
from libs.common.tenancy import UoW
from services.auth import schemas as s
from services.auth.api.common import NO_CONTENT
from services.auth.deps import Admin, Editor, IntegrationKeys, Outbound, Settings, Viewer
from services.auth.service import ai_config as service

system = APIRouter(prefix="/api/v1/system", tags=["system"])
ROUTERS = (system,)


# --- prompts ---------------------------------------------------------------------------------


@system.get("/prompts/")
async def list_prompts(request: Request, actor: Viewer, uow: UoW, query: s.PromptQuery) -> Response:
    page = await service.list_prompts(uow, actor, query)
    return page_response(request, query.page, page.count, page.rows)


@system.post("/prompts/", status_code=201)
async def create_prompt(data: s.PromptCreate, actor: Editor, uow: UoW) -> s.PromptPublic:
    row = await service.create_prompt(uow, actor, data)
    return service.prompt_public(row.prompt_type, row)


@system.get("/prompts/by_type/{prompt_type}/")
async def prompt_by_type(prompt_type: str, actor: Viewer, uow: UoW) -> s.PromptPublic:
    return await service.prompt_by_type(uow, actor, prompt_type)


@system.post("/prompts/save/")
async def save_prompt(data: s.PromptSave, actor: Editor, uow: UoW) -> Response:
    result = await service.save_prompt(uow, actor, data)
    return message_response(result, "Prompt saved")


@system.post("/prompts/reset/")
async def reset_prompt(data: s.PromptReset, actor: Editor, uow: UoW) -> Response:
    result = await service.reset_prompt(uow, actor, data)
    return message_response(result, "Prompt reset to default")


@system.get("/prompts/{prompt_id:int}/")
async def get_prompt(prompt_id: Id, actor: Viewer, uow: UoW) -> s.PromptPublic:
    row = await service.get_prompt(uow, actor, prompt_id)
    return service.prompt_public(row.prompt_type, row)


@system.put("/prompts/{prompt_id:int}/")
@system.patch("/prompts/{prompt_id:int}/")
async def update_prompt(
    prompt_id: Id, data: s.PromptUpdate, actor: Editor, uow: UoW
) -> s.PromptPublic:
    row = await service.update_prompt(uow, actor, prompt_id, data)
    return service.prompt_public(row.prompt_type, row)


@system.delete("/prompts/{prompt_id:int}/", status_code=NO_CONTENT)
async def delete_prompt(prompt_id: Id, actor: Editor, uow: UoW) -> Response:
    await service.delete_prompt(uow, actor, prompt_id)
    return Response(status_code=NO_CONTENT)


# --- integration settings ----------------------------------------------------------------------


@system.get("/settings/integrations/{provider}/")
async def get_integration(
    provider: str, actor: Admin, uow: UoW, keys: IntegrationKeys
) -> s.IntegrationPublic:
    return await service.get_integration(uow, actor, keys, provider)


@system.put("/settings/integrations/{provider}/")
async def put_integration(
    provider: str,
    data: s.IntegrationUpdate,
    actor: Admin,
    uow: UoW,
    keys: IntegrationKeys,
    outbound: Outbound,
) -> s.IntegrationPublic:
    return await service.save_integration(uow, actor, keys, provider, data, outbound)


@system.post("/settings/integrations/{provider}/save/")
async def save_integration(
    provider: str,
    data: s.IntegrationUpdate,
    actor: Admin,
    uow: UoW,
    keys: IntegrationKeys,
    outbound: Outbound,
) -> Response:
    result = await service.save_integration(uow, actor, keys, provider, data, outbound)
    return message_response(result, "Integration settings saved")


@system.post("/settings/integrations/{provider}/test/")
async def check_integration(
    provider: str,
    actor: Admin,
    uow: UoW,
    keys: IntegrationKeys,
    settings: Settings,
    outbound: Outbound,
    data: s.IntegrationTest | None = None,
) -> Response:
    result = await service.test_integration(
        uow,
        actor,
        keys,
        provider,
        data,
        policy=outbound,
        timeout=settings.provider_timeout_seconds,
    )
    return message_response(result, f"Connection to {provider} succeeded")


@system.post("/settings/integrations/{provider}/generate/")
async def generate_test_image(
    provider: str,
    data: s.ImageGenerateRequest,
    actor: Admin,
    uow: UoW,
    keys: IntegrationKeys,
    settings: Settings,
    outbound: Outbound,
) -> s.ImageGenerateResult:
    return await service.generate_test_image(
        uow,
        actor,
        keys,
        provider,
        data,
        policy=outbound,
        timeout=settings.provider_timeout_seconds * 6,
    )


@system.get("/integrations/image_generation/")
async def image_generation_settings(
    actor: Viewer, uow: UoW, keys: IntegrationKeys
) -> dict[str, Any]:
    return await service.image_generation_settings(uow, actor, keys)
