"""Writer's HTTP routes, one module per sub-domain. Each endpoint checks who is calling
(typed dependencies, `deps.py`), parses, calls the service layer and answers; the unit
of work commits before the answer goes out. None touches the repository."""

from __future__ import annotations

from services.writer.api import articles, images, library, linker, optimizer, publishing

ROUTERS = (articles.router, images.router, library.taxonomies, library.profiles,
           optimizer.router, linker.router, *publishing.ROUTERS)
