"""JSON for typed records: a non-finite float is written as null, never a bare NaN."""
from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, Iterable, Mapping


def finite_or_null(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every NaN/Inf float as None: ``json.dumps`` would otherwise write a
    bare ``NaN``, which is not JSON and which strict readers (jq, JavaScript) reject."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in values.items()}


def known_fields(cls: type, data: Mapping[str, Any],
                 tuples: Iterable[str] = ()) -> dict[str, Any]:
    """The entries of ``data`` that are fields of the dataclass ``cls`` (a record written by
    a newer version may carry more), with the fields named in ``tuples`` made tuples again
    (JSON has only lists), ready for ``cls(**...)``."""
    names = {f.name for f in fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    for key in tuples:
        if key in kwargs and kwargs[key] is not None:
            kwargs[key] = tuple(kwargs[key])
    return kwargs
