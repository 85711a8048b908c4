"""Old path of `ssad.core.atomic`, kept for one release."""

from ssad.core.atomic import *  # noqa: F403
from ssad.core.atomic import __all__  # noqa: F401
