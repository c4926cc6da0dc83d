"""``python -m tests.fakes.google``: run the fake until Ctrl-C."""

import sys

from tests.fakes.google.cli import main

sys.exit(main())
