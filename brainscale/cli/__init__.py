"""The ``brainscale`` command: ``demo``, ``bench``, ``train`` and ``map``."""
