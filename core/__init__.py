"""The ground floor: settings, clock, errors, masking, private files, progress, output formats,
signed link tokens, migration files and the IVR keypad. It imports nothing of careloop's own."""

import os

# Nothing may try the internet. The command line imports this package first (careloop/__init__),
# so telemetry is off before prefect or GX read their settings; the stack's server and worker
# get the same variables from careloop.stack, and `make` exports them.
# A command without a Prefect server starts a temporary one and gives it 20 s to answer; on a
# busy shared machine it takes longer, and the command failed. A server that does not answer
# within five minutes is broken, not slow.
EPHEMERAL_STARTUP_SECONDS = 300
for _name, _value in {
    "GX_ANALYTICS_ENABLED": "False",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(EPHEMERAL_STARTUP_SECONDS),
}.items():
    os.environ.setdefault(_name, _value)
