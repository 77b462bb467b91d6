"""Pydantic validation with errors a user can act on: the field, the value, what was expected, the likely typo.

`validate` turns pydantic's `ValidationError` into one `ConfigError` line per bad field; `did_you_mean` is the
hint every "unknown field" message carries.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from ncpl.errors import ConfigError


def did_you_mean(name: str, known: typing.Iterable[str]) -> str:
    """' (did you mean 'lr'?)' for the close matches of `name` among `known`, else ''."""
    known = list(known)
    matches = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if not matches:  # a dotted name: compare the last part too (`optimizer.lrr` -> `optimizer.lr`)
        leaf = name.rpartition(".")[2]
        matches = [k for k in known if difflib.get_close_matches(leaf, [k.rpartition(".")[2]], n=1, cutoff=0.75)][:3]
    return f" (did you mean {' or '.join(repr(m) for m in matches)}?)" if matches else ""


def nested_model(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The model class at `path` (field names) below `model`, read from the annotations; None past a leaf."""
    for part in path:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        nested = [
            t
            for t in (field.annotation, *typing.get_args(field.annotation))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if not nested:
            return None
        model = nested[0]
    return model


def format_validation_error(error: ValidationError, model: type[BaseModel] | None = None) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "<root>"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            lines.append(f"{field}: required field is missing")
        elif item["type"] == "extra_forbidden":
            parent = nested_model(model, item["loc"][:-1]) if model else None
            hint = did_you_mean(str(item["loc"][-1]), parent.model_fields) if parent else ""
            lines.append(
                f"{field}: unknown field (value {item['input']!r}){hint}; put source-specific fields under 'extra'"
            )
        elif message.startswith(f"{field}."):  # a section's validator that names the field itself
            lines.append(message)
        else:
            lines.append(f"{field}: got {item['input']!r}: {message}")
    return "; ".join(lines)


def validate(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"invalid {model.__name__}: {format_validation_error(error, model)}") from None
