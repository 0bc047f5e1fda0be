"""``python -m brainscale.cli`` is the ``brainscale`` command."""
import sys

from brainscale.cli.main import main

sys.exit(main())
