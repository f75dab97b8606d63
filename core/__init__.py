"""The ground floor: settings, clock, errors, masking, private files, progress, output formats,
signed link tokens and migration files. It imports nothing of careloop's own."""

import os

# Nothing may try the internet: every process imports this package before prefect or GX (a
# worker running a flow, the service, the CLI), so telemetry is off before either is imported.
for _name, _value in {
    "GX_ANALYTICS_ENABLED": "False",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_name, _value)
