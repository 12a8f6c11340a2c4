"""``TTHSD_interface``: the module name of the TTHSD documentation.

``from TTHSD_interface import TTHSDownloader`` is the same as
``from tthsd_interface import TTHSDownloader``; ``_TIlog`` is the package logger.

Names are forwarded on first use rather than star-imported: ``import *`` would resolve
the asyncio layer's names too, which ``tthsd_interface`` imports only when one is used.
"""

from typing import TYPE_CHECKING

import tthsd_interface as _package
from tthsd_interface import TTHSDownloader as TTHSDownloader
from tthsd_interface import __all__ as __all__
from tthsd_interface import __version__ as __version__
from tthsd_interface._log import _TIlog as _TIlog

if TYPE_CHECKING:
    from tthsd_interface import *  # noqa: F403


def __getattr__(name: str) -> object:
    if name in __all__:
        return getattr(_package, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted((set(globals()) - {"TYPE_CHECKING"}) | set(__all__))
