"""The done-store: which tasks finished, with what result, so an interrupted driver's
re-run skips them.

One JSON file per task, ``<root>/<key>.json`` (``/`` in a key becomes ``__``), holding the
task's fingerprint and its whole ``TaskResult`` (records included: the tables of a re-run
are built from it without running the task again). An entry is written atomically (a
temporary file renamed into place) and only after the task's process has ended and its
outputs were collected, so a run killed at any moment leaves either no entry or a whole
one. An entry whose fingerprint differs (other code, weights or options) is not done.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from zoo import atomic
from zoo.executors.task import TaskResult

DONE_DIR = ".done"


class DoneStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / (key.replace(os.sep, "__").replace("/", "__") + ".json")

    def get(self, key: str, fingerprint: str) -> TaskResult | None:
        """The stored result for ``key`` if it was done with ``fingerprint``, else None."""
        try:
            result = TaskResult.from_json(json.loads(self.path(key).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing, or unreadable: not done
        if result.fingerprint != fingerprint or not result.done:
            return None
        return result.with_(cached=True)

    def put(self, result: TaskResult) -> Path:
        path = self.path(result.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic.write_json(path, result.with_(cached=False).to_json(), default=str)

    def discard(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
