"""JSON for typed records: a non-finite float is written as null, never a bare NaN."""
from __future__ import annotations

import math
from typing import Any, Mapping


def finite_or_null(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every NaN/Inf float as None: ``json.dumps`` would otherwise write a
    bare ``NaN``, which is not JSON and which strict readers (jq, JavaScript) reject."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in values.items()}
