"""Key rotation state in Redis: one hash per linkage domain, and the scope releases read.

A domain's linkage lives in a *linkage scope* (broker/store/linkage_store.py). Before any
rotation the scope is named after the domain; a rotation to ``vN`` builds the scope
``domain@vN`` beside it (``@`` is never in a name, so it cannot alias another domain)
and, at the switch, makes it the domain's *active* scope with one ``HSET``: every reader
resolves the active scope through :func:`active_scope`, so a reader sees the old scope or
the new one, never a mixture. broker/rotation.py drives the states; docs/keyspace.md
lists the keys.

The hash (``keyspace.rotation``) holds ``from`` and ``to`` (key versions), ``state``
(:class:`RotationState`), ``target`` (the scope being built), ``active`` (absent: the
domain's own name), ``old`` (the scope to delete after the switch), times, and one
``rekey:<dataset id>`` field per dataset whose rekey batch was committed (its batch key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from broker.store import keyspace
from broker.store.client import Store

__all__ = [
    "Rotation",
    "RotationState",
    "active_scope",
    "delete_scope",
    "get_rotation",
    "list_rotations",
    "mark_rekey_committed",
    "person_changes",
    "save_person_changes",
    "set_rotation_state",
    "start_rotation",
    "switch_active_scope",
    "target_scope",
]

_REKEY = "rekey:"


class RotationState(StrEnum):
    """Where a domain's rotation stands."""

    BUILDING = "building"
    """Rekey batches link into the new scope; releases read the old one."""
    SWITCHING = "switching"
    """Every dataset has moved: person ids are being carried over (still the old scope)."""
    SWITCHED = "switched"
    """The new scope is active; the old one is being deleted."""
    DONE = "done"
    """The old scope is gone."""


@dataclass(frozen=True, slots=True)
class Rotation:
    """A domain's latest key rotation as stored.

    Attributes:
        domain: the linkage domain.
        from_version: the key version datasets move from.
        to_version: the key version they move to.
        state: where it stands.
        target: the linkage scope being built (active from the switch on).
        active: the scope releases read now.
        old: the scope the switch left behind (to delete), or ``""``.
        rekeyed: dataset id -> the batch key of its committed rekey batch.
        started_at: when the first rekey batch was committed.
    """

    domain: str
    from_version: str
    to_version: str
    state: RotationState
    target: str
    active: str
    old: str
    rekeyed: dict[str, str]
    started_at: str

    @property
    def running(self) -> bool:
        """True until the switch: rekey batches are still expected."""
        return self.state in (RotationState.BUILDING, RotationState.SWITCHING)


def target_scope(domain: str, version: str) -> str:
    """The linkage scope a rotation of ``domain`` to ``version`` builds."""
    return f"{domain}@{version}"


def get_rotation(store: Store, domain: str) -> Rotation | None:
    """The domain's latest rotation, or ``None`` when it never rotated."""
    raw = cast(dict[bytes, bytes], store.redis.hgetall(keyspace.rotation(domain)))
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    if "state" not in fields:
        return None
    return Rotation(
        domain=domain,
        from_version=fields["from"],
        to_version=fields["to"],
        state=RotationState(fields["state"]),
        target=fields["target"],
        active=fields.get("active", domain),
        old=fields.get("old", ""),
        rekeyed={k[len(_REKEY) :]: v for k, v in fields.items() if k.startswith(_REKEY)},
        started_at=fields.get("started_at", ""),
    )


def list_rotations(store: Store, domains: Sequence[str]) -> list[Rotation]:
    """The rotations of those of ``domains`` that ever rotated."""
    found = [get_rotation(store, d) for d in domains]
    return [r for r in found if r is not None]


def active_scope(store: Store, domain: str) -> str:
    """The linkage scope that holds the domain's persons now (what releases read)."""
    raw = cast(bytes | None, store.redis.hget(keyspace.rotation(domain), "active"))
    return raw.decode() if raw else domain


_START = """
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'done' then return 0 end
local fields = redis.call('HKEYS', KEYS[1])
for _, name in ipairs(fields) do
  if string.sub(name, 1, 6) == 'rekey:' then redis.call('HDEL', KEYS[1], name) end
end
redis.call('HDEL', KEYS[1], 'old', 'switching_at', 'switched_at', 'done_at')
redis.call('HSET', KEYS[1], 'state', 'building', 'from', ARGV[1], 'to', ARGV[2],
  'target', ARGV[3], 'started_at', ARGV[4])
return 1
"""


def start_rotation(
    store: Store, domain: str, *, from_version: str, to_version: str, now: str
) -> bool:
    """Start a rotation of ``domain`` unless one is under way (one script: no race).

    Returns:
        True when this call started it.
    """
    script = store.redis.register_script(_START)
    target = target_scope(domain, to_version)
    args = [from_version, to_version, target, now]
    return bool(int(script(keys=[keyspace.rotation(domain)], args=args)))


def mark_rekey_committed(store: Store, domain: str, *, dataset_id: str, batch_key: str) -> None:
    """Record the dataset's rekey batch (its move completes when that batch is linked)."""
    store.redis.hset(keyspace.rotation(domain), _REKEY + dataset_id, batch_key)


def set_rotation_state(store: Store, domain: str, *, state: RotationState, now: str) -> None:
    """Move the rotation to ``state``, noting when."""
    store.redis.hset(
        keyspace.rotation(domain), mapping={"state": state.value, f"{state.value}_at": now}
    )


_SWITCH = """
if redis.call('HGET', KEYS[1], 'state') ~= 'switching' then return 0 end
local old = redis.call('HGET', KEYS[1], 'active') or ARGV[1]
local target = redis.call('HGET', KEYS[1], 'target')
redis.call('HSET', KEYS[1], 'active', target, 'old', old, 'state', 'switched',
  'switched_at', ARGV[2])
return 1
"""


def switch_active_scope(store: Store, domain: str, *, now: str) -> bool:
    """Make the rotation's target the active scope, atomically (one script, one key).

    Returns:
        True when this call switched (False: not ``switching``, e.g. already switched).
    """
    script = store.redis.register_script(_SWITCH)
    return bool(int(script(keys=[keyspace.rotation(domain)], args=[domain, now])))


def delete_scope(store: Store, scope: str) -> int:
    """Delete every key of a linkage scope: its records, tokens, persons, payloads.

    Returns:
        Keys deleted.
    """
    pattern = keyspace.linkage_base(scope).replace("{", "\\{").replace("}", "\\}") + "*"
    deleted = 0
    batch: list[bytes] = []
    for key in store.redis.scan_iter(match=pattern, count=1000):
        batch.append(cast(bytes, key))
        if len(batch) >= 500:
            deleted += int(store.redis.delete(*batch))
            batch = []
    if batch:
        deleted += int(store.redis.delete(*batch))
    return deleted


def save_person_changes(store: Store, domain: str, changes: Sequence[bytes]) -> None:
    """Keep the person ids the switch merged or split (JSON lines), replacing any before."""
    key = keyspace.rotation_changes(domain)
    pipe = store.redis.pipeline(transaction=True)
    pipe.delete(key)
    if changes:
        pipe.rpush(key, *changes)
    pipe.execute()


def person_changes(store: Store, domain: str) -> list[bytes]:
    """The person id changes the domain's last switch recorded."""
    return cast(list[bytes], store.redis.lrange(keyspace.rotation_changes(domain), 0, -1))
