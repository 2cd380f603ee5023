"""``python -m gateway.cli``: the ``carbonx`` command."""

import sys

from gateway.cli.main import main

sys.exit(main())
