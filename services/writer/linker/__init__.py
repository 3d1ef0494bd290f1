"""Writer's internal linker: the engine (`engine.py`, pure), the HTML it reads and edits
(`html.py`), the rules checked on its output (`rules.py`), and the requests behind
`/api/v1/linker/` (`service.py`)."""

from services.writer.linker.engine import Link, LinkerConfig, SiteIndex, Target

__all__ = ["Link", "LinkerConfig", "SiteIndex", "Target"]
