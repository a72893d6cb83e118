"""Each dataset's quality grades, batch by batch, from the manifests of committed batches.

Every committed batch keeps its manifest (with the SDK's quality report) in its hash, and
the dataset's batch set orders them by commit, so the history needs no key of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

from broker.store import keyspace
from broker.store.batches import get_batch
from broker.store.client import Store

__all__ = ["GradeAt", "grade_history"]


@dataclass(frozen=True, slots=True)
class GradeAt:
    """The quality grade one batch carried, and when its extract was made."""

    created_at: str
    grade: str
    records: int


def grade_history(store: Store, dataset_id: str, *, limit: int = 12) -> list[GradeAt]:
    """Grades of the dataset's newest ``limit`` committed batches that carry one, oldest
    first (retractions carry none)."""
    keys = cast(list[bytes], store.redis.zrevrange(keyspace.dataset_batches(dataset_id), 0, -1))
    found: list[GradeAt] = []
    for key in keys:
        batch = get_batch(store, key.decode())
        if batch is None:
            continue
        manifest = json.loads(batch.manifest_json)
        quality = manifest.get("quality") or {}
        grade = quality.get("grade") if isinstance(quality, dict) else None
        if not grade:
            continue
        found.append(
            GradeAt(
                created_at=str(manifest.get("created_at", "")),
                grade=str(grade),
                records=int(quality.get("records_used", batch.record_count) or 0),
            )
        )
        if len(found) >= limit:
            break
    found.reverse()
    return found
