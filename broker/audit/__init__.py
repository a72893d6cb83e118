"""The hash-chained audit log: every call that reads or writes personal data leaves an entry.

An entry records the time, the identity (its name and role), the organisation, the action,
the agreement, the dataset and counts, and never an identifier, token, reference or
credential. The package is in four parts, behind the names importers have always used
(``from broker.audit import append_audit``):

- :mod:`broker.audit.records`: what an entry and a checkpoint hold, their canonical
  bytes, hashing and signing;
- :mod:`broker.audit.chain`: appending (each entry with its own signed *head checkpoint*
  in the same transaction) and reading;
- :mod:`broker.audit.checkpoints`: the periodic checkpoints to publish, by count, by age
  and on demand;
- :mod:`broker.audit.verify`: verifying the log in the store or from an export, naming
  the first bad position (docs/audit.md).
"""

from __future__ import annotations

from broker.audit.chain import (
    append_audit,
    audit_count,
    read_audit,
    releases_by_agreement,
    releases_by_month,
    use_audit_signing_key,
    verify_chain,
)
from broker.audit.checkpoints import (
    AuditCheckpointer,
    checkpoint_now,
    ensure_checkpoints,
    read_audit_checkpoints,
)
from broker.audit.records import (
    CHECKPOINT_LABEL,
    GENESIS_HASH,
    RELEASE_ACTION,
    AuditEntry,
    Checkpoint,
    audit_key_id,
    entry_hash,
    make_checkpoint,
)
from broker.audit.verify import (
    AuditProblem,
    AuditVerification,
    export_lines,
    verify_audit,
    verify_export,
)

__all__ = [
    "CHECKPOINT_LABEL",
    "GENESIS_HASH",
    "RELEASE_ACTION",
    "AuditCheckpointer",
    "AuditEntry",
    "AuditProblem",
    "AuditVerification",
    "Checkpoint",
    "append_audit",
    "audit_count",
    "audit_key_id",
    "checkpoint_now",
    "ensure_checkpoints",
    "entry_hash",
    "export_lines",
    "make_checkpoint",
    "read_audit",
    "read_audit_checkpoints",
    "releases_by_agreement",
    "releases_by_month",
    "use_audit_signing_key",
    "verify_audit",
    "verify_chain",
    "verify_export",
]
