"""careloop: closed-loop customer care. This package holds the front door (CLI) and settings."""

import os

# Nothing may try the internet: switch off telemetry before prefect or GX are imported anywhere.
for _name, _value in {
    "GX_ANALYTICS_ENABLED": "False",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
