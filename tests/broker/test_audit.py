"""The audit log: chain, signed checkpoints, and tampering directly in Redis, each detected
at the right position."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from broker.audit import (
    AuditEntry,
    Checkpoint,
    append_audit,
    audit_key_id,
    checkpoint_now,
    ensure_checkpoints,
    entry_hash,
    export_lines,
    make_checkpoint,
    read_audit,
    read_audit_checkpoints,
    releases_by_agreement,
    use_audit_signing_key,
    verify_audit,
    verify_export,
)
from broker.errors import AuditTamperedError
from broker.store import audit_log, keyspace
from keys.signing import public_key_of

SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
PUBLIC = public_key_of(SEED)
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(flushed_store):
    """A store whose appends are signed as a broker's are."""
    use_audit_signing_key(flushed_store, SEED)
    return flushed_store


def _fill(store, n, *, start=0):
    for i in range(start, start + n):
        append_audit(
            store,
            identity=f"org-{i % 3}",
            role="org",
            action="batch.chunk",
            dataset=f"org-{i % 3}/gp",
            counts={"records": i},
            now=T0 + timedelta(seconds=i),
        )


def _raw(store):
    return store.redis.lrange(keyspace.audit_log(), 0, -1)


def _rewrite(store, raws):
    pipe = store.redis.pipeline()
    pipe.delete(keyspace.audit_log())
    if raws:
        pipe.rpush(keyspace.audit_log(), *raws)
    pipe.execute()


def _set_head(store, entry):
    store.redis.set(
        keyspace.audit_head(),
        json.dumps({"hash": entry.hash, "seq": entry.seq}, separators=(",", ":")).encode(),
    )


def _rehashed(entry, **changes):
    draft = replace(entry, **changes)
    return replace(draft, hash=entry_hash(draft))


def test_an_untouched_log_verifies_with_its_checkpoints(store):
    _fill(store, 25)
    made = ensure_checkpoints(store, SEED, every=10, now=T0)
    assert [c.position for c in made] == [9, 19]
    result = verify_audit(store, PUBLIC)
    assert result.ok, result.problems
    assert (result.entries, result.valid_checkpoints, result.last_checkpoint) == (25, 2, 19)
    assert result.first_bad_position is None
    assert "verifies" in result.summary()


def test_entries_carry_organisation_and_agreement_and_no_credential(store):
    entry = append_audit(
        store, identity="dr-a", role="researcher", action="release", agreement="dsa-0123456789"
    )
    org_entry = append_audit(store, identity="gp-1", role="org", action="dataset.declare")
    assert entry.organisation == "" and entry.agreement == "dsa-0123456789"
    assert org_entry.organisation == "gp-1"
    assert read_audit(store, count=10) == [entry, org_entry]
    assert releases_by_agreement(store) == {"dsa-0123456789": 1}


def test_periodic_checkpoints_then_on_demand_then_by_age(store):
    _fill(store, 12)
    assert [c.position for c in ensure_checkpoints(store, SEED, every=5, now=T0)] == [4, 9]
    assert ensure_checkpoints(store, SEED, every=5, now=T0) == []
    latest = checkpoint_now(store, SEED, every=5, now=T0)
    assert latest is not None and latest.position == 11
    assert checkpoint_now(store, SEED, every=5, now=T0) == latest
    _fill(store, 2, start=12)
    assert ensure_checkpoints(store, SEED, every=5, max_age=timedelta(hours=1), now=T0) == []
    later = T0 + timedelta(hours=2)
    made = ensure_checkpoints(store, SEED, every=5, max_age=timedelta(hours=1), now=later)
    assert [c.position for c in made] == [13]
    positions = [c.position for c in read_audit_checkpoints(store)]
    assert positions == [4, 9, 11, 13]
    assert all(c.is_valid(PUBLIC) and c.key_id == audit_key_id(PUBLIC) for c in made)
    assert verify_audit(store, PUBLIC).ok


def test_checkpoint_of_an_empty_log_is_none(store):
    assert checkpoint_now(store, SEED, every=5) is None
    assert verify_audit(store, PUBLIC).ok


def test_a_raw_edit_is_detected_at_its_position(store):
    _fill(store, 20)
    raws = _raw(store)
    edited = json.loads(raws[7])
    edited["counts"] = {"records": 99999}
    raws[7] = json.dumps(edited).encode()
    _rewrite(store, raws)
    result = verify_audit(store, PUBLIC)
    assert result.first_bad_position == 7
    assert "altered" in result.problems[0].message


def test_an_edit_with_its_hash_recomputed_is_detected_at_its_position(store):
    _fill(store, 20)
    raws = _raw(store)
    raws[11] = _rehashed(AuditEntry.from_json(raws[11]), action="nothing.happened").to_json()
    _rewrite(store, raws)
    assert verify_audit(store, PUBLIC).first_bad_position == 11


def test_a_deletion_is_detected_at_its_position(store):
    _fill(store, 20)
    raws = _raw(store)
    del raws[5]
    _rewrite(store, raws)
    result = verify_audit(store, PUBLIC)
    assert result.first_bad_position == 5
    assert "deleted, inserted or reordered" in result.problems[0].message


def test_an_insertion_is_detected_at_its_position(store):
    _fill(store, 20)
    raws = _raw(store)
    before = AuditEntry.from_json(raws[8])
    forged = _rehashed(before, seq=9, prev=before.hash, action="looked.innocent")
    raws.insert(9, forged.to_json())
    _rewrite(store, raws)
    result = verify_audit(store, PUBLIC)
    assert result.first_bad_position == 9
    assert "inserted" in result.problems[0].message


def test_a_copied_entry_inserted_is_detected_at_its_position(store):
    _fill(store, 20)
    raws = _raw(store)
    raws.insert(4, raws[15])
    _rewrite(store, raws)
    assert verify_audit(store, PUBLIC).first_bad_position == 4


def test_reordering_is_detected_at_the_first_moved_position(store):
    _fill(store, 20)
    raws = _raw(store)
    raws[12], raws[13] = raws[13], raws[12]
    _rewrite(store, raws)
    assert verify_audit(store, PUBLIC).first_bad_position == 12


def test_removing_the_newest_entries_is_detected(store):
    _fill(store, 20)
    store.redis.rpop(keyspace.audit_log(), 3)
    result = verify_audit(store, PUBLIC)
    assert result.first_bad_position == 17
    assert "removed from the end" in result.problems[0].message


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(store):
    _fill(store, 30)
    ensure_checkpoints(store, SEED, every=10, now=T0)  # checkpoints at 9, 19, 29
    entries = [AuditEntry.from_json(r) for r in _raw(store)]
    prev = entries[13].prev
    rewritten = entries[:13]
    for entry in entries[13:]:
        fixed = _rehashed(entry, prev=prev, counts={"records": 0})
        rewritten.append(fixed)
        prev = fixed.hash
    _rewrite(store, [e.to_json() for e in rewritten])
    _set_head(store, rewritten[-1])
    result = verify_audit(store, PUBLIC)
    assert not result.ok
    assert result.first_bad_position == 10  # after the last checkpoint that still matches
    assert "rewritten" in result.problems[0].message
    assert result.valid_checkpoints == 1


def test_a_truncated_log_with_its_head_moved_back_is_caught_by_a_checkpoint(store):
    _fill(store, 20)
    ensure_checkpoints(store, SEED, every=10, now=T0)
    raws = _raw(store)[:15]
    _rewrite(store, raws)
    _set_head(store, AuditEntry.from_json(raws[-1]))
    result = verify_audit(store, PUBLIC)
    assert result.first_bad_position == 15
    assert "entries were removed" in result.problems[0].message


def test_a_forged_checkpoint_is_detected(store):
    _fill(store, 20)
    ensure_checkpoints(store, SEED, every=10, now=T0)
    raws = store.redis.lrange(keyspace.audit_checkpoints(), 0, -1)
    altered = replace(Checkpoint.from_json(raws[1]), head="f" * 64)
    store.redis.lset(keyspace.audit_checkpoints(), 1, altered.to_json())
    result = verify_audit(store, PUBLIC)
    assert result.first_bad_position == 19
    assert "forged" in result.problems[0].message


def test_a_checkpoint_signed_with_another_key_is_detected(store):
    _fill(store, 12)
    entry = read_audit(store, start=11, count=1)[0]
    store.redis.rpush(
        keyspace.audit_checkpoints(), make_checkpoint(11, entry.hash, OTHER_SEED, now=T0).to_json()
    )
    result = verify_audit(store, PUBLIC)
    assert result.first_bad_position == 11
    assert "not signed by the broker's audit key" in result.problems[0].message


def test_no_checkpoint_is_signed_over_a_broken_chain(store):
    _fill(store, 12)
    raws = _raw(store)
    raws[3], raws[4] = raws[4], raws[3]
    _rewrite(store, raws)
    with pytest.raises(AuditTamperedError) as caught:
        ensure_checkpoints(store, SEED, every=5, now=T0)
    assert caught.value.position == 3
    assert read_audit_checkpoints(store) == []


def test_an_export_verifies_offline_and_tampering_in_it_is_found(store):
    _fill(store, 15)
    checkpoint_now(store, SEED, every=10, now=T0)
    lines = list(export_lines(store))
    assert len(lines) == 15 + 2
    assert verify_export(lines, PUBLIC).ok
    text = [line.decode() for line in lines]
    text[6] = text[6].replace('"records":6', '"records":7')
    result = verify_export(text, PUBLIC)
    assert result.first_bad_position == 6
    assert not verify_export(lines, public_key_of(OTHER_SEED)).ok


# The exact stored bytes, and the tail (issue 20, point 9) ----------------------------------


def _canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _with_extra_field(raw):
    return _canonical({**json.loads(raw), "note": "looked.innocent"})


def _with_duplicate_key(raw):
    # json keeps the last value of a repeated key: the entry still parses and hashes as before
    return raw.replace(b'{"action":', b'{"action":"nothing.happened","action":', 1)


def _with_seq_as_string(raw):
    entry = json.loads(raw)
    return _canonical({**entry, "seq": str(entry["seq"])})


def _with_count_as_string(raw):
    entry = json.loads(raw)
    return _canonical({**entry, "counts": {k: str(v) for k, v in entry["counts"].items()}})


NON_CANONICAL = {
    "extra field": (_with_extra_field, "a field that is not part of the record"),
    "duplicate key": (_with_duplicate_key, "'action' appears twice"),
    "number as string": (_with_seq_as_string, "'seq' is stored as a string, not an integer"),
    "count as string": (_with_count_as_string, "a value in 'counts' is not stored as an integer"),
}


@pytest.mark.parametrize("tampering", sorted(NON_CANONICAL))
def test_an_entry_not_stored_in_its_canonical_bytes_is_refused_at_its_position(store, tampering):
    tamper, reason = NON_CANONICAL[tampering]
    _fill(store, 20)
    raws = _raw(store)
    raws[7] = tamper(raws[7])
    assert AuditEntry.from_json(raws[7]) == AuditEntry.from_json(_raw(store)[7])  # same fields
    _rewrite(store, raws)
    result = verify_audit(store, PUBLIC)
    assert result.first_bad_position == 7
    assert "not stored in its canonical bytes" in result.problems[0].message
    assert reason in result.problems[0].message
    export = verify_export(list(export_lines(store)), PUBLIC)
    assert export.first_bad_position == 7


def test_a_checkpoint_not_stored_in_its_canonical_bytes_is_refused(store):
    _fill(store, 12)
    ensure_checkpoints(store, SEED, every=5, now=T0)
    raw = store.redis.lindex(keyspace.audit_checkpoints(), 1)
    store.redis.lset(keyspace.audit_checkpoints(), 1, _with_extra_field(raw))
    result = verify_audit(store, PUBLIC)
    assert result.first_bad_position == 9
    assert "checkpoint 1 (position 9) is not stored in its canonical bytes" in (
        result.problems[0].message
    )


def test_every_entry_is_signed_as_it_is_written(store):
    _fill(store, 3)
    head = Checkpoint.from_json(store.redis.get(keyspace.audit_head_checkpoint()))
    assert head.position == 2 and head.is_valid(PUBLIC)
    assert head.head == read_audit(store, start=2, count=1)[0].hash
    result = verify_audit(store, PUBLIC)
    assert result.ok and result.signed_head == 2
    assert "head signed at position 2" in result.summary()


def test_a_tail_dropped_with_the_head_moved_back_is_found_at_the_first_removed_position(store):
    _fill(store, 20)
    raws = _raw(store)[:15]
    _rewrite(store, raws)
    _set_head(store, AuditEntry.from_json(raws[-1]))  # the chain and the head look whole
    result = verify_audit(store, PUBLIC)
    assert result.first_bad_position == 15
    assert "entries were removed, from position 15" in result.problems[0].message


def test_a_tail_dropped_with_the_head_deleted_is_found_at_the_first_removed_position(store):
    _fill(store, 20)
    _rewrite(store, _raw(store)[:15])
    store.redis.delete(keyspace.audit_head())
    result = verify_audit(store, PUBLIC)
    assert result.first_bad_position == 15
    assert all(p.position == 15 for p in result.problems)


def test_a_forged_head_checkpoint_is_detected(store):
    _fill(store, 5)
    forged = make_checkpoint(9, "f" * 64, OTHER_SEED, now=T0)
    store.redis.set(keyspace.audit_head_checkpoint(), forged.to_json())
    result = verify_audit(store, PUBLIC)
    assert result.first_bad_position == 9
    assert "the head checkpoint (position 9) is not signed by the broker's audit key" in (
        result.problems[0].message
    )


def test_an_export_ends_with_the_head_checkpoint_so_its_dropped_tail_is_found(store):
    _fill(store, 15)
    checkpoint_now(store, SEED, every=100, now=T0)  # a periodic checkpoint at 14 as well
    _fill(store, 3, start=15)
    lines = list(export_lines(store))
    assert len(lines) == 18 + 2
    assert verify_export(lines, PUBLIC).ok
    result = verify_export(lines[:16] + lines[18:], PUBLIC)
    assert result.first_bad_position == 16
    assert "entries were removed" in result.problems[0].message


def test_entries_covered_by_no_signed_checkpoint_fail_verification(flushed_store):
    _fill(flushed_store, 12)  # appended without the audit key
    ensure_checkpoints(flushed_store, SEED, every=5, now=T0)
    result = verify_audit(flushed_store, PUBLIC)
    assert result.first_bad_position == 10
    assert "entries 10 to 11 are covered by no signed checkpoint" in result.problems[0].message
    checkpoint_now(flushed_store, SEED, every=5, now=T0)
    assert verify_audit(flushed_store, PUBLIC).ok


def test_a_tail_dropped_with_the_head_and_its_checkpoint_moved_back_is_found(store):
    _fill(store, 10)
    checkpoint_now(store, SEED, every=100, now=T0)  # a periodic checkpoint at 9
    _fill(store, 10, start=10)
    raws = _raw(store)[:15]
    _rewrite(store, raws)
    _set_head(store, AuditEntry.from_json(raws[-1]))
    store.redis.delete(keyspace.audit_head_checkpoint())
    result = verify_audit(store, PUBLIC)
    assert result.first_bad_position == 10  # the first entry no signature covers any more
    assert "covered by no signed checkpoint" in result.problems[0].message


def test_a_rollback_to_a_signed_state_is_found_only_against_an_anchor(store):
    _fill(store, 10)
    earlier = checkpoint_now(store, SEED, every=100, now=T0)  # published at position 9
    assert earlier is not None
    _fill(store, 10, start=10)
    anchor = store.redis.get(keyspace.audit_head_checkpoint())  # published at position 19
    raws = _raw(store)[:10]  # the whole state rolled back to position 9, consistently
    _rewrite(store, raws)
    _set_head(store, AuditEntry.from_json(raws[-1]))
    store.redis.set(keyspace.audit_head_checkpoint(), earlier.to_json())
    assert verify_audit(store, PUBLIC).ok  # the bound: Redis alone cannot tell
    result = verify_audit(store, PUBLIC, anchors=[anchor])
    assert result.first_bad_position == 10
    assert "anchor 0 (position 19) covers position 19" in result.problems[0].message
    assert verify_audit(store, PUBLIC, anchors=[earlier.to_json()]).ok


def test_an_export_is_the_log_as_of_one_moment_while_entries_are_appended(store):
    _fill(store, 6)
    lines = export_lines(store)
    first = next(lines)  # the snapshot is taken here
    _fill(store, 3, start=6)  # a busy broker goes on writing
    exported = [first, *lines]
    assert len(exported) == 6 + 1  # six entries and the head checkpoint at position 5
    assert verify_export(exported, PUBLIC).ok
    assert verify_audit(store, PUBLIC).ok


def test_an_append_whose_head_moved_while_it_was_built_is_rebuilt_on_the_new_head(store):
    """Another writer getting in between the read of the head and the write must not fork
    the chain: the store checks the head where it writes (on a cluster, on whichever node
    holds the slot by then) and builds the entry again."""
    _fill(store, 3)
    heads_seen: list[bytes] = []

    def build(head):
        heads_seen.append(head)
        if len(heads_seen) == 1:
            _fill(store, 1, start=3)  # the rival append lands first
        seq = json.loads(head)["seq"] + 1
        entry = json.dumps({"seq": seq, "built_on": head.decode()}).encode()
        return entry, json.dumps({"seq": seq, "hash": f"h{seq}"}).encode(), None

    audit_log.append_chained(store, build)
    assert len(heads_seen) == 2 and heads_seen[0] != heads_seen[1]
    stored = _raw(store)
    assert len(stored) == 5
    assert json.loads(stored[-1])["built_on"] == heads_seen[1].decode()


def test_an_append_sent_again_after_a_lost_reply_is_stored_once(store):
    """A client that retries the write after the reply was lost (a master failing over)
    finds its own head already in place and does not append a second copy."""
    _fill(store, 2)
    entry, new_head = b'{"seq":2,"retried":true}', b'{"seq":2,"hash":"h2"}'
    for _ in range(2):  # the same write, sent twice
        audit_log.append_chained(store, lambda _head: (entry, new_head, None))
    assert _raw(store).count(entry) == 1
    assert len(_raw(store)) == 3
