"""``python -m cli …`` runs the ``shanakht`` command."""

import sys

from cli.commands import main

sys.exit(main())
