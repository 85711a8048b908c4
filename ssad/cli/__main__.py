"""`python -m ssad.cli ...`, the same as the `ssad` command."""

import sys

from ssad.cli.main import main

sys.exit(main())
