"""``TTHSD_interface``: the module name of the TTHSD documentation.

``from TTHSD_interface import TTHSDownloader`` is the same as
``from tthsd_interface import TTHSDownloader``; ``_TIlog`` is the package logger.
"""

from tthsd_interface import *  # noqa: F403
from tthsd_interface import __all__, __version__  # noqa: F401
from tthsd_interface._log import _TIlog as _TIlog
