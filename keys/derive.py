"""Every keyed hash in Tessera, each under its own label.

Domain separation is reviewed here and nowhere else: no other module picks an algorithm,
a label or a truncation. All recipes are HMAC-SHA256 (from ``cryptography``) over
``LABEL ‖ fields``, where every field is written as a 2-byte big-endian length followed by
its bytes, so no two different field lists can give the same input.

=================  ==========================================  ===========================
recipe             key                                         input after the label
=================  ==========================================  ===========================
token              domain key vN                               domain, version, spec hash,
                                                               match key name, values…
block token        domain key vN                               domain, version, spec hash,
                                                               blocking key name, values…
comparison token   domain key vN (the block token's HMAC,     domain, version, spec hash,
                   and an AES key)                             blocking key name, block
                                                               values…; then comparison,
                                                               level, value (see
                                                               :class:`EvidenceDeriver`)
reference          org-local reference secret                  dataset, local record id
at-rest re-keying  broker re-keying secret                     token
evidence at rest   AES key from the broker re-keying secret    comparison token, padded
                                                               with its re-keyed block
                                                               token (see
                                                               :class:`EvidenceRekeyer`)
project pseudonym  per-agreement key (from the master secret)  person id
credential digest  broker credential secret                    credential
key fingerprint    the key itself                              (nothing)
=================  ==========================================  ===========================

Tokens, block tokens, references and re-keyed tokens are truncated to 128 bits;
comparison tokens to 32 bits (``COMPARISON_TOKEN_BYTES``), because they are only ever
compared inside one block: docs/probabilistic.md argues the width.
"""

from __future__ import annotations

import array
import base64
import hashlib
from collections.abc import Iterable, Sequence
from typing import Literal, NewType, cast

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "BLOCK_LABEL",
    "COMPARISON_KEY_LABEL",
    "COMPARISON_REKEY_LABEL",
    "COMPARISON_TOKEN_BYTES",
    "CREDENTIAL_LABEL",
    "FINGERPRINT_LABEL",
    "PSEUDONYM_LABEL",
    "REFERENCE_LABEL",
    "REKEY_LABEL",
    "SESSION_LABEL",
    "TOKEN_BYTES",
    "TOKEN_LABEL",
    "AtRestKeyer",
    "ComparisonToken",
    "DomainKey",
    "EvidenceDeriver",
    "EvidenceRekeyer",
    "LevelDigests",
    "RecordRef",
    "ReferenceDeriver",
    "StoredToken",
    "Token",
    "TokenDeriver",
    "derive_pseudonym",
    "digest_credential",
    "digest_session_id",
    "encode_value",
    "encode_values",
    "fingerprint_key",
]

Token = NewType("Token", bytes)
"""A match-key token as the SDK derives it: 16 bytes."""
StoredToken = NewType("StoredToken", bytes)
"""A token re-keyed at rest under the broker's secret: 16 bytes, never leaves the broker."""
RecordRef = NewType("RecordRef", bytes)
"""An opaque record reference: a keyed hash of a local record id, 16 bytes."""
DomainKey = NewType("DomainKey", bytes)
"""A linkage domain key version: 32 random bytes."""
ComparisonToken = NewType("ComparisonToken", bytes)
"""A comparison level token, keyed under one block: 4 bytes, compared only inside it."""

TOKEN_BYTES = 16
COMPARISON_TOKEN_BYTES = 4
_DIGEST_BYTES = 16
_BLOCK_CACHE_SIZE = 1 << 17
_WORD: Literal["I", "L"] = "I" if array.array("I").itemsize == COMPARISON_TOKEN_BYTES else "L"
"""The array and memoryview code of a 4-byte unsigned word (a comparison token's size)."""

TOKEN_LABEL = b"tessera/v1/token"
REFERENCE_LABEL = b"tessera/v1/reference"
REKEY_LABEL = b"tessera/v1/rekey"
PSEUDONYM_LABEL = b"tessera/v1/pseudonym"
CREDENTIAL_LABEL = b"tessera/v1/credential"
FINGERPRINT_LABEL = b"tessera/v1/fingerprint"
SESSION_LABEL = b"tessera/v1/session"
BLOCK_LABEL = b"tessera/v1/block"
COMPARISON_KEY_LABEL = b"tessera/v1/comparison-key"
COMPARISON_REKEY_LABEL = b"tessera/v1/comparison-rekey"


_LENGTH_PREFIXES = tuple(n.to_bytes(2, "big") for n in range(256))


def _field(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError("field longer than 65535 bytes")
    return len(value).to_bytes(2, "big") + value


def encode_value(value: str) -> bytes:
    """One value as the token recipe writes it: 2-byte big-endian length, then UTF-8.

    Callers that see the same value many times may cache this; :meth:`TokenDeriver.derive`
    and :meth:`TokenDeriver.derive_encoded` give the same token.
    """
    return _field(value.encode())


def encode_values(values: Iterable[str | None]) -> list[bytes | None]:
    """:func:`encode_value` of each value, ``None`` for a missing (``None`` or empty) one.

    The bulk form for columns of values that do not repeat (NHS numbers, other ids): the
    length prefix of a short value is looked up rather than built.
    """
    prefixes = _LENGTH_PREFIXES
    return [
        None if not v else (prefixes[len(b)] + b if len(b := v.encode()) < 256 else _field(b))
        for v in values
    ]


def _keyed(key: bytes, label: bytes) -> hmac.HMAC:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(label)
    return mac


class TokenDeriver:
    """Derives the tokens of one domain, key version and linkage spec.

    The HMAC is keyed once and the per-match-key prefix absorbed once; each token then
    costs one context copy and one short update (about a microsecond).

    Args:
        key: the domain key version.
        domain: linkage domain name.
        version: key version label, e.g. ``"v1"``.
        spec_hash: content hash of the linkage spec.
        key_names: the spec's match key names, strongest first.
    """

    __slots__ = ("_per_key",)

    def __init__(
        self,
        key: DomainKey,
        *,
        domain: str,
        version: str,
        spec_hash: str,
        key_names: Sequence[str],
    ) -> None:
        base = _keyed(key, TOKEN_LABEL)
        base.update(_field(domain.encode()) + _field(version.encode()))
        base.update(_field(spec_hash.encode()))
        self._per_key: list[hmac.HMAC] = []
        for name in key_names:
            ctx = base.copy()
            ctx.update(_field(name.encode()))
            self._per_key.append(ctx)

    def derive(self, key_index: int, values: Sequence[str]) -> Token:
        """Token of match key ``key_index`` over canonical ``values`` (never empty ones)."""
        return self.derive_encoded(key_index, b"".join([encode_value(v) for v in values]))

    def derive_encoded(self, key_index: int, encoded: bytes) -> Token:
        """Token of match key ``key_index`` over values already joined by :func:`encode_value`.

        The hot path of tokenisation: the same recipe as :meth:`derive`, without re-encoding
        values the caller has cached.
        """
        ctx = self._per_key[key_index].copy()
        ctx.update(encoded)
        return Token(ctx.finalize()[:TOKEN_BYTES])

    def derive_all(self, encoded: Sequence[bytes | None]) -> tuple[Token | None, ...]:
        """One token per match key from each key's encoded values, ``None`` where ``None``.

        ``encoded[k]`` is match key ``k``'s values joined by :func:`encode_value`; the
        batched form of :meth:`derive_encoded`, for the hot path.
        """
        out: list[Token | None] = []
        for base, data in zip(self._per_key, encoded, strict=True):
            if data is None:
                out.append(None)
            else:
                ctx = base.copy()
                ctx.update(data)
                out.append(Token(ctx.finalize()[:TOKEN_BYTES]))
        return tuple(out)

    def derive_column(self, key_index: int, encoded: Iterable[bytes | None]) -> list[Token | None]:
        """Tokens of match key ``key_index`` for many records, ``None`` where ``None``.

        ``encoded`` holds, per record, the key's values joined by :func:`encode_value`. The
        same recipe as :meth:`derive_encoded`, looped here so that a block of records costs
        one context copy, one update and one finalisation per token and nothing more.
        """
        copy = self._per_key[key_index].copy
        out: list[bytes | None] = []
        append = out.append
        for data in encoded:
            if data is None:
                append(None)
            else:
                ctx = copy()
                ctx.update(data)
                append(ctx.finalize()[:TOKEN_BYTES])
        return cast("list[Token | None]", out)


class EvidenceDeriver:
    """Derives the block tokens and comparison tokens of one domain, key version and spec.

    A *block token* is ``HMAC(key, BLOCK_LABEL ‖ domain ‖ version ‖ spec hash ‖ blocking
    key name ‖ values…)`` truncated to 16 bytes, a match-key token under its own label.

    A *comparison token* is a pseudorandom function of (blocking key, block values,
    comparison, level, value), built so that a record's eighty-odd tokens cost a share of
    one AES call over many records rather than eighty HMACs:

    - the block secret ``S``: the second half of the block token's HMAC (bytes 16 to 32,
      never emitted; the first half, the block token, says nothing about it), so a
      record's block costs one HMAC for both;
    - the level digest ``D = BLAKE2b-128(comparison ‖ level ‖ value)`` (unkeyed, cached:
      names and dates repeat);
    - the token ``AES-256(K_c, S ⊕ D)[:4]``, where ``K_c = HMAC(key,
      COMPARISON_KEY_LABEL ‖ domain ‖ version ‖ spec hash)``.

    AES is a pseudorandom permutation and ``S`` is secret and differs per block, so the
    same value gives unrelated tokens in two blocks and nothing without the domain key
    relates them (docs/probabilistic.md argues it). ECB mode is only the API that applies
    the permutation to many independent 16-byte inputs in one call.

    Args:
        key: the domain key version.
        domain: linkage domain name.
        version: key version label.
        spec_hash: content hash of the linkage spec.
        block_names: the spec's blocking key names, in order.
    """

    __slots__ = ("_blocks", "_cipher", "_out")

    def __init__(
        self,
        key: DomainKey,
        *,
        domain: str,
        version: str,
        spec_hash: str,
        block_names: Sequence[str],
    ) -> None:
        head = _field(domain.encode()) + _field(version.encode()) + _field(spec_hash.encode())
        block_base = _keyed(key, BLOCK_LABEL)
        block_base.update(head)
        cipher_key = _keyed(key, COMPARISON_KEY_LABEL)
        cipher_key.update(head)
        self._cipher = Cipher(algorithms.AES(cipher_key.finalize()), modes.ECB())
        self._out = bytearray()
        self._blocks: list[hmac.HMAC] = []
        for name in block_names:
            ctx = block_base.copy()
            ctx.update(_field(name.encode()))
            self._blocks.append(ctx)

    def block_column(
        self,
        block: int,
        encoded: Sequence[bytes | None],
        cache: dict[bytes, tuple[bytes, bytes]] | None = None,
    ) -> tuple[list[Token | None], list[bytes | None]]:
        """Block tokens and block secrets ``S`` of blocking key ``block`` for many records.

        ``encoded`` holds each record's block values joined by :func:`encode_value`, or
        ``None`` (no block value: ``None`` in both). Both come from one HMAC per record
        (one context copy, one update, one finalisation): the token is its first 16 bytes,
        the secret, which never leaves the SDK, the last 16. With ``cache`` (the caller's,
        in memory, for block values that repeat, such as dates of birth) each distinct
        value's token and secret are kept there and derived once; it is emptied when it
        holds 131,072 values.
        """
        copy = self._blocks[block].copy
        tokens: list[bytes | None] = []
        secrets: list[bytes | None] = []
        for data in encoded:
            if data is None:
                tokens.append(None)
                secrets.append(None)
                continue
            found = None if cache is None else cache.get(data)
            if found is None:
                ctx = copy()
                ctx.update(data)
                digest = ctx.finalize()
                found = (digest[:TOKEN_BYTES], digest[TOKEN_BYTES : TOKEN_BYTES + _DIGEST_BYTES])
                if cache is not None:
                    if len(cache) >= _BLOCK_CACHE_SIZE:
                        cache.clear()
                    cache[data] = found
            tokens.append(found[0])
            secrets.append(found[1])
        return cast("list[Token | None]", tokens), secrets

    def comparison_tokens(self, secrets: bytes, digests: bytes) -> bytes:
        """Comparison tokens of many inputs at once, joined (4 bytes each).

        ``secrets`` and ``digests`` are 16 bytes per token, in the same order: the block
        secret of each token's block (repeated) and its level digest
        (:class:`LevelDigests`).
        """
        if len(secrets) != len(digests) or len(secrets) % _DIGEST_BYTES:
            raise ValueError("one 16-byte secret and digest per comparison token")
        if not secrets:
            return b""
        data = _xor(secrets, digests)
        if len(self._out) < len(data) + _DIGEST_BYTES:
            self._out = bytearray(len(data) + _DIGEST_BYTES)
        encryptor = self._cipher.encryptor()
        size = encryptor.update_into(data, self._out)
        encryptor.finalize()
        # Four 4-byte words per output: keep the first. The cipher writes into one buffer
        # kept for the next call (a window's output is some 2 MB: a fresh one each time
        # costs more in page faults than the cipher), read here before anything else can.
        return memoryview(self._out)[:size].cast(_WORD)[::4].tobytes()


def _xor(a: bytes, b: bytes) -> bytes | memoryview:
    """``a ⊕ b``, two byte strings of one length, a multiple of 8 bytes.

    With pyarrow installed (the SDK's extra) its C kernel does it, 8 bytes at a time: 0.3
    against 4.3 µs of CPU a record for Python's integers, on the tokeniser's windows
    (docs/performance-history.md). The result is then a view of Arrow's own buffer, which the
    cipher reads as it is: copying it into a ``bytes`` first cost some 0.4 µs a record.
    Without pyarrow (``keys`` alone, as the broker installs it) Python's integers give
    the same bytes.
    """
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        return _xor_ints(a, b)
    words = len(a) >> 3
    left = pa.Array.from_buffers(pa.uint64(), words, [None, pa.py_buffer(a)])
    right = pa.Array.from_buffers(pa.uint64(), words, [None, pa.py_buffer(b)])
    data = pc.bit_wise_xor(left, right).buffers()[1]
    assert data is not None  # a uint64 array without nulls: its values buffer
    return memoryview(data).cast("B")  # Arrow's buffers export signed bytes ("b")


def _xor_ints(a: bytes | memoryview, b: bytes | memoryview) -> bytes:
    """``a ⊕ b`` through Python's integers: :func:`_xor` without pyarrow (either's result)."""
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")


class LevelDigests:
    """The level digests ``D`` of one comparison level (:class:`EvidenceDeriver`).

    ``D = BLAKE2b-128(encode_value(comparison) ‖ encode_value(level) ‖ encode_value(value))``,
    unkeyed: the hash state after the comparison and level is kept, so each value costs
    one state copy, one update and one finalisation.
    """

    __slots__ = ("_base",)

    def __init__(self, comparison: str, level: str) -> None:
        self._base = hashlib.blake2b(
            encode_value(comparison) + encode_value(level), digest_size=_DIGEST_BYTES
        )

    def digests(self, values: Iterable[str]) -> bytes:
        """The digests (16 bytes each, joined) of one level's values, in order."""
        copy = self._base.copy
        prefixes = _LENGTH_PREFIXES
        out: list[bytes] = []
        for value in values:
            data = value.encode()
            size = len(data)
            state = copy()
            state.update((prefixes[size] if size < 256 else _field(data)[:2]) + data)
            out.append(state.digest())
        return b"".join(out)


class ReferenceDeriver:
    """Turns local record ids into opaque references under an org-local secret."""

    __slots__ = ("_ctx",)

    def __init__(self, secret: bytes, *, dataset: str) -> None:
        self._ctx = _keyed(secret, REFERENCE_LABEL)
        self._ctx.update(_field(dataset.encode()))

    def derive(self, local_id: str) -> RecordRef:
        """Reference for one local record id."""
        ctx = self._ctx.copy()
        ctx.update(_field(local_id.encode()))
        return RecordRef(ctx.finalize()[:TOKEN_BYTES])

    def derive_many(self, local_ids: Iterable[str]) -> list[RecordRef]:
        """References of many local record ids, in order (the same recipe as :meth:`derive`)."""
        copy = self._ctx.copy
        prefixes = _LENGTH_PREFIXES
        out: list[bytes] = []
        append = out.append
        for local_id in local_ids:
            data = local_id.encode()
            ctx = copy()
            size = len(data)
            ctx.update((prefixes[size] if size < 256 else _field(data)[:2]) + data)
            append(ctx.finalize()[:TOKEN_BYTES])
        return cast("list[RecordRef]", out)


class AtRestKeyer:
    """Re-keys tokens under the broker's own secret before anything is stored."""

    __slots__ = ("_ctx",)

    def __init__(self, secret: bytes) -> None:
        self._ctx = _keyed(secret, REKEY_LABEL)

    def rekey(self, token: Token) -> StoredToken:
        """The at-rest form of ``token``."""
        ctx = self._ctx.copy()
        ctx.update(token)
        return StoredToken(ctx.finalize()[:TOKEN_BYTES])

    def rekey_rows(
        self, rows: Iterable[tuple[Token | None, ...]]
    ) -> list[tuple[StoredToken | None, ...]]:
        """The at-rest form of every token of every row (absent tokens stay absent)."""
        rekey = self.rekey
        return [tuple(None if t is None else rekey(t) for t in row) for row in rows]


class EvidenceRekeyer:
    """Re-keys a chunk's probabilistic evidence at rest under the broker's secret.

    Block tokens are re-keyed like match-key tokens (:class:`AtRestKeyer`). A comparison
    token ``c`` (4 bytes) of a column under blocking key ``j`` becomes
    ``AES-256(K_r, c ‖ B_j[:12])[:4]``, where ``B_j`` is the record's *re-keyed* block
    token of that key and ``K_r = HMAC(secret, COMPARISON_REKEY_LABEL)``: two records of
    one block keep equal tokens exactly where they had them (they share ``B_j``), the
    same SDK token in two blocks gets unrelated stored tokens, and without the broker's
    secret no one holding a domain key can derive a stored comparison token from a
    guessed value. One AES call covers a whole chunk (ECB is only the API that applies
    the permutation to many independent blocks at once). docs/probabilistic.md argues it.

    Args:
        secret: the broker's re-keying secret.
    """

    __slots__ = ("_blocks", "_cipher")

    def __init__(self, secret: bytes) -> None:
        self._blocks = AtRestKeyer(secret)
        key = _keyed(secret, COMPARISON_REKEY_LABEL).finalize()
        self._cipher = Cipher(algorithms.AES(key), modes.ECB())

    def rekey_blocks(
        self, rows: Iterable[tuple[Token | None, ...]]
    ) -> list[tuple[StoredToken | None, ...]]:
        """The at-rest form of every block token of every record."""
        return self._blocks.rekey_rows(rows)

    def rekey_comparisons(
        self,
        stored_blocks: Sequence[tuple[StoredToken | None, ...]],
        column_blocks: Sequence[int],
        counts: bytes,
        tokens: bytes,
    ) -> bytes:
        """The at-rest form of a chunk's comparison tokens, in the same order (4 bytes each).

        Args:
            stored_blocks: per record, its re-keyed block tokens (:meth:`rekey_blocks`).
            column_blocks: per evidence column, the index of its blocking key.
            counts: per record and column, how many tokens it has (as the chunk packs them).
            tokens: the comparison tokens, record by record, column by column.

        Raises:
            ValueError: the counts and tokens disagree, or a token has no block token.
        """
        width, pad = COMPARISON_TOKEN_BYTES, _DIGEST_BYTES - COMPARISON_TOKEN_BYTES
        n_columns = len(column_blocks)
        total = sum(counts)
        if len(tokens) != width * total or (n_columns and len(counts) % n_columns):
            raise ValueError("the comparison tokens do not match their counts")
        if not tokens:
            return b""
        # Consecutive columns of one blocking key share the record's block token, so each
        # record needs the tail of its block once per run of such columns (a spec lists
        # a key's columns together: a record has a few runs and a hundred tokens).
        runs: list[tuple[int, int, int]] = []
        for column, block_index in enumerate(column_blocks):
            if runs and runs[-1][0] == block_index:
                runs[-1] = (block_index, runs[-1][1], column + 1)
            else:
                runs.append((block_index, column, column + 1))
        # Each AES block is laid out whole with its token's place left zero (a run's k
        # blocks are one repeated 16 bytes), then the tokens are written into their places
        # a 4-byte word at a time in C: one strided copy, where filling the tails in
        # around the tokens took three and a buffer more.
        hole = bytes(width)
        blocks_of_runs: list[bytes] = []
        for i, blocks in enumerate(stored_blocks):
            base = i * n_columns
            for block_index, start, end in runs:
                k = sum(counts[base + start : base + end])
                if not k:
                    continue
                block = blocks[block_index]
                if block is None:
                    raise ValueError("a comparison token without its block token")
                blocks_of_runs.append((hole + block[:pad]) * k)
        plain = bytearray().join(blocks_of_runs)
        if len(plain) != _DIGEST_BYTES * total:
            raise ValueError("the comparison tokens do not match their counts")
        step = _DIGEST_BYTES // width
        memoryview(plain).cast(_WORD)[0::step] = memoryview(tokens).cast(_WORD)
        encryptor = self._cipher.encryptor()
        out = encryptor.update(plain) + encryptor.finalize()
        # the first word of each AES block (an array's strided slice copies in a C loop,
        # about twice as fast as a memoryview's)
        return array.array(_WORD, out)[::step].tobytes()


def derive_pseudonym(master_secret: bytes, *, agreement_id: str, person_id: str) -> str:
    """Project pseudonym of a person under one agreement.

    The agreement's own key is expanded from the master secret with HKDF, so pseudonyms
    under two agreements are unrelated. Returned as 26 characters of base32 (128 bits).
    """
    agreement_key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=PSEUDONYM_LABEL + _field(agreement_id.encode()),
    ).derive(master_secret)
    ctx = _keyed(agreement_key, PSEUDONYM_LABEL)
    ctx.update(_field(person_id.encode()))
    digest = ctx.finalize()[:TOKEN_BYTES]
    return base64.b32encode(digest).decode().rstrip("=")


def digest_credential(secret: bytes, credential: str) -> str:
    """Keyed digest under which the broker stores a credential (hex)."""
    ctx = _keyed(secret, CREDENTIAL_LABEL)
    ctx.update(_field(credential.encode()))
    return ctx.finalize().hex()


def digest_session_id(secret: bytes, session_id: str) -> str:
    """Keyed digest under which the broker stores a dashboard session (hex).

    The store holds only this digest, so a copy of Redis (its AOF or a backup) names no
    session a browser could present.
    """
    ctx = _keyed(secret, SESSION_LABEL)
    ctx.update(_field(session_id.encode()))
    return ctx.finalize().hex()


def fingerprint_key(key: bytes) -> str:
    """Short fingerprint of a secret key for people to compare, e.g. ``"K7QF-2MZD-PA4C"``.

    Keyed by the key itself under its own label: it matches tokens or any other recipe in
    nothing, and it is only ever shown beside an opaque key id.
    """
    ctx = _keyed(key, FINGERPRINT_LABEL)
    text = base64.b32encode(ctx.finalize()[:10]).decode()
    return "-".join(text[i : i + 4] for i in range(0, 12, 4))
