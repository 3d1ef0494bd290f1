"""Writer's domain logic, one service per aggregate: tasks, content, images, taxonomies,
author profiles, and the optimizer's requests.

A service acts for one caller in one unit of work: it checks what the caller may touch
(the kernel's directory), reads and writes through the repositories, queues billed jobs
and publishes what changed. No HTTP and no commit here: the unit of work commits. Errors
are the kernel's domain errors (mapped once to problem documents).
"""

from __future__ import annotations

from services.writer.service.common import Aggregate, Platform, WriterService
from services.writer.service.images import ImageService
from services.writer.service.library import AuthorProfileService, TaxonomyService, slugify
from services.writer.service.optimizer import OptimizerService, content_input, site_host
from services.writer.service.tasks import ContentService, TaskService, target_words

__all__ = [
    "Aggregate",
    "AuthorProfileService",
    "ContentService",
    "ImageService",
    "OptimizerService",
    "Platform",
    "TaskService",
    "TaxonomyService",
    "WriterService",
    "content_input",
    "site_host",
    "slugify",
    "target_words",
]
