"""Root conftest of the test suite: shared fixtures and the ``support`` import alias.

See ``tests/support/__init__.py`` for how tests import the support code and use the
fixtures.
"""

from __future__ import annotations

import sys

import tests.support
import tests.support.content
import tests.support.fixtures
import tests.support.server  # noqa: F401  (aliased below)
from tests.support.fixtures import http_server, http_server_factory

# ``from support.server import ...`` must give the very same modules as
# ``tests.support.server`` (two copies would mean two distinct Resource classes).
for _name in ("", ".content", ".server", ".fixtures"):
    sys.modules.setdefault("support" + _name, sys.modules["tests.support" + _name])

__all__ = ["http_server", "http_server_factory"]
