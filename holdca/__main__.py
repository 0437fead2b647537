"""``python -m holdca``: the command line."""

import sys

from holdca.cli import main

sys.exit(main())
