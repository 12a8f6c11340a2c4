"""mkdocs hook: links from a docs page to a file of the repository outside ``docs/``
(``[viewer](../examples/event_viewer.py)``, written for reading the pages on a forge) become
the path in code (``viewer (`examples/event_viewer.py`)``) in the built site, so that
``mkdocs build --strict`` still fails on every broken link inside the site."""

from __future__ import annotations

import re
from typing import Any

_OUTSIDE = re.compile(r"(?<!!)\[([^\]\n]+)\]\(((?:\.\./)+)([^)\s#]+)(#[^)\s]*)?\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    depth = page.file.src_uri.count("/")

    def replace(match: re.Match[str]) -> str:
        text, ups, path = match.group(1), match.group(2), match.group(3)
        if ups.count("../") <= depth:
            return match.group(0)  # still inside docs/: mkdocs checks it
        shown = text.strip("`")
        return f"{text} (`{path}`)" if shown != path else f"`{path}`"

    return _OUTSIDE.sub(replace, markdown)
