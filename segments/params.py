"""Segment rule parameters: declared in the rule's YAML with a type and bounds, checked before
anything runs, so ``lookback_hours=1e9`` or ``-5`` is refused instead of silently planning
twenty months of surveys, or nobody.

```yaml
params:
  lookback_hours: {type: integer, default: 24, min: 1, max: 168, description: ...}
  milestones: {type: list[integer], default: [1, 3, 5], min: 1, max: 100}
```
Types: integer, number, boolean, string, list[integer], list[number], list[string]. ``min``
and ``max`` bound a number, or each number of a list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SCALARS = ("integer", "number", "boolean", "string")
TYPES = (*SCALARS, *(f"list[{t}]" for t in ("integer", "number", "string")))


class ParamError(ValueError):
    """A parameter value outside its declaration, in one line naming it and its bounds."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    default: Any
    min: float | None = None
    max: float | None = None
    description: str = ""

    @classmethod
    def from_yaml(cls, name: str, spec: object) -> ParamSpec:
        """Read one declaration; a malformed one raises ParamError naming what is wrong."""
        if not isinstance(spec, dict) or "default" not in spec or "type" not in spec:
            raise ParamError(f"parameter {name} needs a type and a default")
        if spec["type"] not in TYPES:
            raise ParamError(f"parameter {name}: type {spec['type']!r}; use one of {TYPES}")
        unknown = set(spec) - {"type", "default", "min", "max", "description"}
        if unknown:
            raise ParamError(f"parameter {name}: unknown key(s) {sorted(unknown)}")
        declared = cls(
            name, spec["type"], None, spec.get("min"), spec.get("max"), spec.get("description", "")
        )
        return cls(**{**declared.__dict__, "default": declared.check(spec["default"])})

    @property
    def element(self) -> str:
        return self.type.removeprefix("list[").removesuffix("]")

    def bounds(self) -> str:
        low = "" if self.min is None else f" >= {self.min:g}"
        high = "" if self.max is None else f" <= {self.max:g}"
        joint = " and" if low and high else ""
        return f"{self.type}{low}{joint}{high}"

    def check(self, value: object) -> Any:
        """The value as its declared type, or ParamError naming the parameter and its bounds."""
        if self.type.startswith("list["):
            if not isinstance(value, list) or not value:
                raise self._refuse(value, "a non-empty list")
            return [self._scalar(item) for item in value]
        return self._scalar(value)

    def _scalar(self, value: object) -> Any:
        kind = self.element
        if kind == "boolean":
            if not isinstance(value, bool):
                raise self._refuse(value, "true or false")
            return value
        if kind == "string":
            if not isinstance(value, str) or not value.strip():
                raise self._refuse(value, "a non-empty text")
            return value
        number = self._number(value, kind)
        if (self.min is not None and number < self.min) or (
            self.max is not None and number > self.max
        ):
            raise self._refuse(value, "within bounds")
        return number

    def _number(self, value: object, kind: str) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._refuse(value, f"a{'n' if kind == 'integer' else ''} {kind}")
        if not math.isfinite(value):
            raise self._refuse(value, "a finite number")
        if kind == "integer":
            if float(value) != int(value):
                raise self._refuse(value, "a whole number")
            return int(value)
        return float(value)

    def _refuse(self, value: object, wanted: str) -> ParamError:
        shown = "an empty value" if value in (None, "") else repr(value)
        return ParamError(f"parameter {self.name}={shown} is not {wanted}: {self.bounds()}")
