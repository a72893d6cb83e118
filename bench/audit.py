"""The audit log's cost per entry, now that every entry is signed as it is written.

* ``append_unsigned_us``: one entry appended by a process without the audit key (the
  chain and the head only), against a private redis-server;
* ``append_signed_us``: the same with its Ed25519 head checkpoint signed and written in
  the entry's transaction (what every broker process does);
* ``sign_us``: the signature alone (``append_signed_us - append_unsigned_us`` is about it);
* ``verify_per_entry_us``: ``verify_audit`` over the whole log, per entry;
* ``head_checkpoint_bytes``: what the head checkpoint holds in Redis (one key, replaced).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from broker.audit import append_audit, make_checkpoint, use_audit_signing_key, verify_audit
from broker.store import keyspace
from broker.store.client import Store
from broker.store.embedded import EmbeddedRedis
from keys.signing import public_key_of

__all__ = ["run"]

_SEED = bytes(range(32))


def _append(store: Store, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        append_audit(
            store,
            identity="gp-north",
            role="org",
            action="batch.chunk",
            dataset="gp-north/extract",
            counts={"chunk": i, "records": 10_000},
        )
    return (time.perf_counter() - started) / n * 1e6


def run(n: int) -> dict[str, float]:
    """Append ``n`` entries unsigned and ``n`` signed, sign ``n`` checkpoints, verify."""
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp))
        server.start()
        try:
            with Store(server.url) as unsigned:
                unsigned_us = _append(unsigned, n)
                unsigned.redis.flushdb()
            with Store(server.url) as signed:
                use_audit_signing_key(signed, _SEED)
                signed_us = _append(signed, n)
                started = time.perf_counter()
                result = verify_audit(signed, public_key_of(_SEED))
                verify_us = (time.perf_counter() - started) / n * 1e6
                if not result.ok:
                    raise RuntimeError(result.summary())
                held = signed.redis.memory_usage(keyspace.audit_head_checkpoint()) or 0
        finally:
            server.stop()
    started = time.perf_counter()
    for i in range(n):
        make_checkpoint(i, "0" * 64, _SEED)
    sign_us = (time.perf_counter() - started) / n * 1e6
    return {
        "append_unsigned_us": unsigned_us,
        "append_signed_us": signed_us,
        "sign_us": sign_us,
        "verify_per_entry_us": verify_us,
        "head_checkpoint_bytes": float(held),
    }
