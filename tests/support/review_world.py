"""The release world with conflicts on purpose, for the review tests.

The release world (GP persons 0..49, hospital persons 20..59, sharing every token) gets a
hospital clinic dataset with a record whose NHS token is person 3's and whose name token
is person 25's (a ``key`` conflict), and two records of person 7, the first carrying only
the NHS token and the second only the name token (a ``twin`` conflict: the clinic holds
one record per person, and the second reaches person 7 through the GP record).
"""

from __future__ import annotations

from pathlib import Path

from keys.derive import RecordRef
from keys.wire import DatasetKind
from tests.support.harness import BrokerProcess
from tests.support.release_world import World, build_world

__all__ = ["CLINIC_REFS", "KEY_REF", "TWIN_REFS", "build_review_world"]

KEY_REF = RecordRef(bytes.fromhex("11" * 16))
"""The clinic record in a key conflict."""
TWIN_REFS = (RecordRef(bytes.fromhex("22" * 16)), RecordRef(bytes.fromhex("33" * 16)))
"""The clinic's two records of person 7; the second is in a twin conflict."""
CLINIC_REFS = {100: KEY_REF, 101: TWIN_REFS[0], 102: TWIN_REFS[1]}
"""The clinic's records by the world's number for them."""


def build_review_world(broker: BrokerProcess, tmp: Path) -> World:
    """The release world plus the clinic's three records, uploaded one batch each."""
    world = build_world(broker, tmp, seed=23)
    world.declare(world.hosp_cred, "clinic", ["VISIT"], DatasetKind.RECORDS)
    held = dict(world.tokens)
    world.tokens[100] = (held[3][0], held[25][1])
    world.tokens[101] = (held[7][0], None)  # type: ignore[assignment]
    world.tokens[102] = (None, held[7][1])  # type: ignore[assignment]
    for i in CLINIC_REFS:  # one batch each: the twin's order is fixed
        world.upload(world.hosp_cred, "clinic", [i], CLINIC_REFS, [(f"visit-{i}",)], ["VISIT"])
    return world
