"""Writer's settings (environment `IGNY8_*`), and where its migrations live. Holds, job
delivery and command timeouts are the kernel's (`AIJobSettings`); files go where
`StorageSettings` says (`$IGNY8_HOME/files` by default)."""

from __future__ import annotations

from pathlib import Path

from libs.common.ai_jobs.settings import AIJobSettings
from libs.common.settings import ServiceSettings
from libs.common.storage import StorageSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class WriterSettings(ServiceSettings, StorageSettings, AIJobSettings):
    """The service's own knobs are the batch limits of its AI functions (ids per
    request; the reference's `auto_generate_content` takes 50)."""

    service_name: str = "writer"
    http_port: int = 8103
    auto_generate_content_max_tasks: int = 50  # tasks
    generate_image_prompts_max_content: int = 50  # contents
    generate_images_max_images: int = 100  # images
    optimize_max_content: int = 50  # contents
