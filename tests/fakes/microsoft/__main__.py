"""``python -m tests.fakes.microsoft``: run the fake until Ctrl-C."""

import sys

from tests.fakes.microsoft.cli import main

sys.exit(main())
