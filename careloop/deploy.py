"""`careloop deploy` (and `make up`): prefect.yaml's deployments on a Prefect server, with the
daily schedules in the business timezone.

prefect.yaml gives those schedules the timezone ``{{ $CARELOOP_TIMEZONE }}``. A bare
``prefect deploy --all`` without that variable deploys them with an empty timezone, which
Prefect runs as UTC: birthday greetings at 15:00 in Shanghai instead of 07:00, and nothing says
so. This sets the variable (and the project folder the worker runs in) from the settings, then
reads every schedule back from the server and refuses to call it done unless each one is in
the timezone prefect.yaml asks for.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from careloop.runtime import answers
from core.yaml_files import YamlFileError, read_yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BUSINESS = "{{ $CARELOOP_TIMEZONE }}"  # what prefect.yaml's daily schedules name


def prefect(env: dict[str, str], *args: str, ok_if: str | None = None) -> None:
    done = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    said = done.stdout + done.stderr
    if done.returncode and not (ok_if and ok_if in said):
        last = [line for line in said.splitlines() if line.strip()][-3:]
        raise SystemExit(f"prefect {' '.join(args)} failed: " + " / ".join(last))


def deploy_all(env: dict[str, str], api: str, timezone: str) -> int:
    """The work pool and every deployment, their schedules checked on the server; how many
    deployments."""
    env = {**env, "PREFECT_API_URL": api, "CARELOOP_TIMEZONE": timezone}
    env["CARELOOP_PROJECT_DIR"] = str(ROOT)
    _answering(api)
    prefect(env, "work-pool", "create", "careloop", "--type", "process", ok_if="already exists")
    prefect(env, "deploy", "--all")
    wanted = expected_timezones(timezone)
    found = deployed_timezones(api)
    wrong = {name: found[name] for name in wanted if sorted(found.get(name, [])) != wanted[name]}
    missing = sorted(set(wanted) - set(found))
    if wrong or missing:
        raise SystemExit(
            f"the server's schedules are not what prefect.yaml asks for: expected {wanted}, "
            f"found {found}" + (f", missing {missing}" if missing else "")
        )
    return len(wanted)


def expected_timezones(timezone: str) -> dict[str, list[str]]:
    """Each deployment's schedule timezones, as prefect.yaml asks for them."""
    try:
        spec = read_yaml(ROOT / "prefect.yaml")
    except YamlFileError as exc:
        raise SystemExit(f"{ROOT / 'prefect.yaml'}: {exc}") from None
    return {
        d["name"]: sorted(
            timezone if s["timezone"] == BUSINESS else s["timezone"] for s in d["schedules"]
        )
        for d in spec["deployments"]
    }


def deployed_timezones(api: str) -> dict[str, list[str]]:
    """Each deployment's schedule timezones, as the server has them (read with Prefect's own
    client, which sends the API key or auth string the server may ask for)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        deployments = client.read_deployments()
    return {
        d.name: sorted(
            s.schedule.timezone or "" for s in d.schedules if hasattr(s.schedule, "timezone")
        )
        for d in deployments
    }


def _answering(api: str) -> None:
    if not answers(f"{api}/health", timeout=10):
        raise SystemExit(f"no Prefect server answers at {api}")
