"""careloop: closed-loop customer care. This package is the front door: the command line."""

import core  # noqa: F401  (telemetry off before prefect or GX are imported)

__version__ = "0.1.0"
