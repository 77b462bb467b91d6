"""The value types of config fields: counts with units (``350M``, ``1.2B``), finite, positive and bounded numbers.

Each is a pydantic annotation: a field declared `Count` accepts 1.2e9, "1.2e9" and "1.2B" alike, and refuses a
boolean, an infinity or a zero with a message that names the value.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

_SUFFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$")


def parse_quantity(value: Any) -> Any:
    """Accept counts written as 1.2e9, "1.2e9", "1.2B", "350M", "4K" (case-insensitive)."""
    if isinstance(value, str):
        match = _QUANTITY.match(value)
        if not match:
            raise ValueError(f"expected a number, optionally with a unit suffix K/M/B/T, got {value!r}")
        number, unit = match.groups()
        if unit.lower() not in _SUFFIXES:
            raise ValueError(f"unknown unit {unit!r} in {value!r}; use one of K, M, B (=G), T or none")
        return float(number) * _SUFFIXES[unit.lower()]
    return value


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {value}")
    return value


def check_scalar(field: str, value: Any) -> None:
    """Refuse a value of a free-form field (``extra.*``, optimizer-specific) that is not one finite scalar."""
    if not isinstance(value, (str, int, float, bool, type(None))):
        raise ValueError(f"{field} must be a scalar (number, string, bool), got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, got {value}")


# allow_inf_nan=False checks the parsed number: a string `inf` or `1e400` is infinite only once parsed
Count = Annotated[float, Field(gt=0, allow_inf_nan=False), BeforeValidator(parse_quantity), BeforeValidator(_no_bool)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False), BeforeValidator(_no_bool)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False), BeforeValidator(_no_bool)]
PositiveInt = Annotated[int, Field(gt=0), BeforeValidator(parse_quantity), BeforeValidator(_no_bool)]
Beta = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False), BeforeValidator(_no_bool)]
Ratio = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False), BeforeValidator(_no_bool)]
Scalar = str | int | float | bool | None
