"""The KPI targets and alert thresholds (``campaigns/kpi_targets.yaml``), validated on load."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import UserError
from core.yaml_files import YamlFileError, read_yaml
from insights.kpis import KPI_BY_NAME, SCOPES

TARGETS_PATH = Path(__file__).resolve().parent.parent / "campaigns" / "kpi_targets.yaml"


class TargetsError(UserError, ValueError):
    """A targets file that cannot be used, named with the field at fault."""


class KpiTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    target: float = Field(ge=0)


class Targets(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    flag_threshold: float = Field(0.05, gt=0, lt=1)
    alpha: float = Field(0.05, gt=0, lt=1)
    min_units: int = Field(30, ge=2)
    kpis: dict[str, KpiTarget] = {}
    overrides: dict[str, dict[str, dict[str, float]]] = {}

    @field_validator("kpis")
    @classmethod
    def _known_kpis(cls, value: dict[str, KpiTarget]) -> dict[str, KpiTarget]:
        _check_names(value)
        return value

    @field_validator("overrides")
    @classmethod
    def _known_scopes(
        cls, value: dict[str, dict[str, dict[str, float]]]
    ) -> dict[str, dict[str, dict[str, float]]]:
        for scope, keys in value.items():
            if scope not in SCOPES or scope == "overall":
                raise ValueError(f"unknown scope {scope!r} (one of {', '.join(SCOPES[1:])})")
            for by_kpi in keys.values():
                _check_names(by_kpi)
        return value

    def target(self, kpi: str, scope: str, key: str | None) -> float | None:
        override = self.overrides.get(scope, {}).get(key or "", {}).get(kpi)
        if override is not None:
            return override
        found = self.kpis.get(kpi)
        return found.target if found else None


def _check_names(by_kpi: Mapping[str, object]) -> None:
    unknown = sorted(set(by_kpi) - set(KPI_BY_NAME))
    if unknown:
        raise ValueError(f"unknown KPI {', '.join(unknown)} (known: {', '.join(KPI_BY_NAME)})")


def load_targets(path: Path = TARGETS_PATH) -> Targets:
    try:
        raw = read_yaml(path) or {}
        return Targets.model_validate(raw)
    except YamlFileError as exc:
        raise TargetsError(f"{path}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise TargetsError(f"{path}: {where}: {first['msg']}") from None
