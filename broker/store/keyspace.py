"""Every Redis key the broker uses is built here, and nowhere else.

See docs/keyspace.md for each key's type, size and lifetime. Keys that one MULTI/EXEC or
Lua script touches together share a cluster hash tag (the part in braces), so they stay on
one slot of a Redis Cluster. Names are validated before they get here (against
:data:`keys.wire.NAME_PATTERN`), so they never hold a brace or colon that could alias a key.
"""

from __future__ import annotations

__all__ = [
    "LINK_BASIS",
    "LINK_BATCHES",
    "LINK_CONFLICTS",
    "LINK_DATASETS",
    "LINK_DATASET_NUMBERS",
    "LINK_EVIDENCE",
    "LINK_LEASE",
    "LINK_LOCK",
    "LINK_META",
    "LINK_MODEL",
    "LINK_PAYLOADS",
    "LINK_PERSONS",
    "LINK_POSSIBLE",
    "LINK_RECORDS",
    "LINK_STATS",
    "PREFIX",
    "agreement",
    "agreements_all",
    "audit_checkpoints",
    "audit_head",
    "audit_head_checkpoint",
    "audit_log",
    "audit_releases",
    "audit_releases_by_month",
    "auth_failures_address",
    "auth_failures_credential",
    "batch",
    "batch_chunks",
    "batch_lock",
    "batch_sequence",
    "credential",
    "dataset",
    "dataset_batches",
    "datasets_all",
    "identities_all",
    "identity",
    "identity_name",
    "link_queue",
    "linkage_base",
    "linkage_bucket",
    "linkage_key",
    "linkage_report_snapshot",
    "org_blobs",
    "org_datasets",
    "org_open_batches",
    "org_public_key",
    "replica_probe",
    "rotation",
    "rotation_changes",
    "schema_version",
    "session",
    "sign_in_failures",
]

PREFIX = "ts"


def schema_version() -> str:
    """STRING: the keyspace layout's version (broker/store/schema.py)."""
    return f"{PREFIX}:schema"


# Identities and credentials --------------------------------------------------------------


def credential(digest: str) -> str:
    """STRING: identity id for a credential's keyed digest (never the credential)."""
    return f"{PREFIX}:cred:{digest}"


def identity(identity_id: str) -> str:
    """HASH: one identity: name, role, created_at, revoked, credential digest."""
    return f"{PREFIX}:id:{identity_id}"


def identity_name(name: str) -> str:
    """STRING: identity id of a name (names are unique across roles)."""
    return f"{PREFIX}:idname:{name}"


def identities_all() -> str:
    """SET: every identity id."""
    return f"{PREFIX}:ids"


# Organisations: public key, wrapped key blobs, datasets ------------------------------------


def org_public_key(org: str) -> str:
    """HASH: the organisation's registered identity public key and its metadata."""
    return f"{PREFIX}:org:{{{org}}}:pubkey"


def org_blobs(org: str) -> str:
    """HASH: ``domain/version`` -> wrapped domain-key blob (opaque to the broker)."""
    return f"{PREFIX}:org:{{{org}}}:blobs"


def org_datasets(org: str) -> str:
    """SET: names of the organisation's datasets."""
    return f"{PREFIX}:org:{{{org}}}:datasets"


def dataset(dataset_id: str) -> str:
    """HASH: a dataset declaration (dataset id is ``org/name``)."""
    return f"{PREFIX}:ds:{{{dataset_id}}}"


def dataset_batches(dataset_id: str) -> str:
    """ZSET: committed batch ids of the dataset, scored by commit order."""
    return f"{PREFIX}:ds:{{{dataset_id}}}:batches"


def datasets_all() -> str:
    """SET: every dataset id."""
    return f"{PREFIX}:datasets"


# Upload batches ------------------------------------------------------------------------------


def batch(batch_id: str) -> str:
    """HASH: a batch's state, manifest and counters."""
    return f"{PREFIX}:b:{{{batch_id}}}"


def batch_chunks(batch_id: str) -> str:
    """HASH: chunk index -> the chunk re-keyed at rest (deleted once linked)."""
    return f"{PREFIX}:b:{{{batch_id}}}:chunks"


def batch_lock(batch_id: str) -> str:
    """STRING with TTL: held by the broker worker that is linking the batch."""
    return f"{PREFIX}:b:{{{batch_id}}}:lock"


def batch_sequence() -> str:
    """STRING counter: commit order of batches."""
    return f"{PREFIX}:seq:batch"


def link_queue() -> str:
    """ZSET: committed batches waiting to be linked, scored by commit order."""
    return f"{PREFIX}:linkq"


def linkage_report_snapshot(scope: str) -> str:
    """STRING: JSON of the scope's linkage report as of its last whole batch."""
    return f"{PREFIX}:lkreport:{{{scope}}}"


# Key rotation (broker/store/rotation_store.py) -----------------------------------------------


def rotation(domain: str) -> str:
    """HASH: the domain's key rotation: versions, state, the active linkage scope, moves."""
    return f"{PREFIX}:rot:{{{domain}}}"


def rotation_changes(domain: str) -> str:
    """LIST: JSON of each person id a rotation's switch merged or split, for review."""
    return f"{PREFIX}:rot:{{{domain}}}:changes"


# Data-sharing agreements (broker/store/agreements_store.py) --------------------------------


def agreement(agreement_id: str) -> str:
    """HASH: an agreement: ``terms`` JSON, ``created_at``, ``revoked_at``, ``appr:<org>``."""
    return f"{PREFIX}:agr:{{{agreement_id}}}"


def agreements_all() -> str:
    """SET: every agreement id."""
    return f"{PREFIX}:agrs"


# Audit log ---------------------------------------------------------------------------------


def replica_probe(key: str) -> str:
    """STRING with TTL: a write in ``key``'s slot that a ``WAIT`` after it is counted from.

    It carries ``key``'s hash tag (the whole key when it has none), so it lands on the
    master that holds ``key`` (broker/store/client.py, ``Store.wait_for_replicas``).
    """
    start = key.find("{")
    end = key.find("}", start + 1)
    tag = key[start + 1 : end] if start >= 0 and end > start + 1 else key
    return f"{PREFIX}:replicated:{{{tag}}}"


def audit_log() -> str:
    """LIST: audit entries as canonical JSON, oldest first, each hash-chained."""
    return f"{PREFIX}:{{audit}}:log"


def audit_head() -> str:
    """STRING: JSON ``{"seq": n, "hash": hex}`` of the newest audit entry."""
    return f"{PREFIX}:{{audit}}:head"


def audit_head_checkpoint() -> str:
    """STRING: the signed checkpoint of the newest entry, written in the entry's transaction."""
    return f"{PREFIX}:{{audit}}:head-checkpoint"


def audit_checkpoints() -> str:
    """LIST: signed audit checkpoints as canonical JSON, in increasing position."""
    return f"{PREFIX}:{{audit}}:checkpoints"


def audit_releases() -> str:
    """HASH: agreement id -> number of ``release`` entries in the audit log."""
    return f"{PREFIX}:{{audit}}:releases"


def audit_releases_by_month() -> str:
    """HASH: ``AGREEMENT|YYYY-MM`` (UTC) -> number of ``release`` entries that month."""
    return f"{PREFIX}:{{audit}}:releases-by-month"


# Operator dashboard sessions -----------------------------------------------------------------


def session(session_digest: str) -> str:
    """STRING with TTL: a dashboard session (identity, credential digest, CSRF token).

    Named by the keyed digest of the session id, never the id the browser holds.
    """
    return f"{PREFIX}:session:{session_digest}"


def sign_in_failures(client: str) -> str:
    """STRING counter with TTL: failed dashboard sign-ins from one client address."""
    return f"{PREFIX}:signin:{client}"


# Limits of the HTTP edge (broker/store/limits.py) ------------------------------------------


def auth_failures_address(address: str) -> str:
    """STRING with TTL: bearer-credential failures from one client address in this window."""
    return f"{PREFIX}:authfail:addr:{address}"


def auth_failures_credential(digest: str) -> str:
    """STRING with TTL: failures of one presented credential (by its keyed digest)."""
    return f"{PREFIX}:authfail:cred:{digest}"


def org_open_batches(org: str) -> str:
    """ZSET: an organisation's batch keys opened and not yet committed, scored by expiry."""
    return f"{PREFIX}:org:{{{org}}}:openbatches"


# Linkage (broker/store/linkage_store.py) -----------------------------------------------------
# One linkage scope (a linkage domain) keeps every key under the hash tag ``{scope}``: a
# slice's atomic write is one Lua script over that one slot. There is no token index in
# Redis: the linking worker rebuilds it in memory from the records (linkage_store.py).
# Bucket and per-id keys are built inside the scripts from the same base and letters.

LINK_RECORDS = "R"
"""HASH per ``R:<rid[0:3]>``: ``rid[3]`` -> record (dataset, person, ref, tokens)."""
LINK_PERSONS = "P"
"""HASH per ``P:<pid[0:3]>``: ``pid[3]`` -> members ``(rid u32, dsn u16)*``."""
LINK_PAYLOADS = "Y"
"""HASH per ``Y:<rid[0:3]>``: ``rid[3]`` -> payload values as a JSON array."""
LINK_CONFLICTS = "C"
"""HASH per ``C:<rid[0:3]>``: ``rid[3]`` -> conflicts recorded for the record."""
LINK_EVIDENCE = "E"
"""HASH per ``E:<rid[0:3]>``: ``rid[3]`` -> probabilistic evidence (block, comparison tokens)."""
LINK_BASIS = "B"
"""HASH per ``B:<rid[0:3]>``: ``rid[3]`` -> basis of a probabilistic link (partner, weights)."""
LINK_POSSIBLE = "M"
"""HASH per ``M:<rid[0:3]>``: ``rid[3]`` -> possible matches kept for review."""
LINK_MODEL = "model"
"""HASH: ``layout`` and ``model`` (JSON) of the probabilistic stage's fitted model."""
LINK_META = "meta"
"""HASH: last allocated ``rid``, ``pid``, ``bseq`` and ``dsn``."""
LINK_DATASET_NUMBERS = "dsn"
"""HASH: dataset id -> dataset number."""
LINK_DATASETS = "dsi"
"""HASH: dataset number -> JSON declaration (id, org, one record per person, key names)."""
LINK_BATCHES = "bat"
"""HASH: batch id -> batch number."""
LINK_STATS = "stats"
"""HASH: linkage report counters."""
LINK_LOCK = "lock"
"""STRING with TTL: the single linking worker's lock token."""
LINK_LEASE = "lease"
"""STRING with TTL: the link worker that holds the scope (broker/worker.py), by owner id."""


def linkage_base(scope: str) -> str:
    """Common prefix of every linkage key of ``scope``, hash tag included."""
    return f"{PREFIX}:lk:{{{scope}}}:"


def linkage_key(scope: str, name: str) -> str:
    """A singleton linkage key (``LINK_META``, ``LINK_STATS``, …) of ``scope``."""
    return linkage_base(scope) + name


def linkage_bucket(scope: str, letter: str, suffix: bytes) -> bytes:
    """A bucket key: ``letter`` is a ``LINK_*`` bucket letter, ``suffix`` its raw bytes.

    Record, person, payload and conflict buckets end in the first three bytes of the id
    (big-endian u32; ids never use a last byte of 128 or more, so a bucket holds 128).
    """
    return f"{linkage_base(scope)}{letter}:".encode() + suffix
