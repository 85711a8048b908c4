"""Old path of `ssad.evaluation.run`, kept for one release."""

from ssad.evaluation.run import *  # noqa: F403
from ssad.evaluation.run import __all__  # noqa: F401
