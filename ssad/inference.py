"""Old path of `ssad.modelio`, kept for one release."""

from ssad.modelio import *  # noqa: F403
from ssad.modelio import __all__  # noqa: F401
