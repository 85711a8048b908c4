"""Old path of `ssad.core.errors`, kept for one release."""

from ssad.core.errors import *  # noqa: F403
from ssad.core.errors import __all__  # noqa: F401
