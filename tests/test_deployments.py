"""prefect.yaml: every deployment points at a real flow with parameters that flow accepts."""

import importlib
from pathlib import Path

import pytest
import yaml
from prefect import Flow

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_deployment_entrypoint_and_parameters(deployment):
    path, _, name = deployment["entrypoint"].partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name)
    assert isinstance(flow, Flow)
    flow.validate_parameters(deployment.get("parameters", {}))  # raises if a name or type is off
    assert deployment["work_pool"]["name"] == "careloop"
    for schedule in deployment["schedules"]:
        assert len(schedule["cron"].split()) == 5
        # daily work in the business's timezone (filled in at deploy), the rest in UTC
        daily = schedule["cron"].split()[1] != "*"
        assert schedule["timezone"] == ("{{ $CARELOOP_TIMEZONE }}" if daily else "UTC")


def test_scheduled_campaigns_exist(settings):
    from campaigns.catalog import load_campaigns

    campaigns = {
        d["parameters"]["campaign"] for d in DEPLOYMENTS if "campaign" in d.get("parameters", {})
    }
    assert campaigns == set(load_campaigns(settings))
