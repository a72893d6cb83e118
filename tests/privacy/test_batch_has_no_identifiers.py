"""Threat model: the broker never receives a raw identifier.

Synthetic GP (UTF-8) and hospital (cp1252) extracts are tokenised with the CLI; every
identifier of the input — names, NHS numbers, dates of birth, postcodes, addresses and
local record ids, as written and as normalised — is searched for in the raw batch file
and in every decompressed chunk, in UTF-8, cp1252, UTF-16 (both byte orders) and
lower/upper case. Values shorter than five bytes are skipped, because they occur by chance
in random bytes. Inside the batch's own tokens and references (random bytes, where a
five-byte needle turns up by chance about once in a thousand runs; the block tokens and the
run of comparison tokens of the probabilistic stage count among them) only values of
eight bytes or more are searched; everywhere else, all of five or more.
"""

from __future__ import annotations

import csv
import tomllib
import zlib
from pathlib import Path

import pytest

import keys
from keys.batch import BatchReader
from keys.spec import PROBABILISTIC_SPEC_NAME
from tessera_synth import generate
from tests.support.tokenise_world import make_orgs, tokenise

MIN_BYTES = 5
MIN_BYTES_IN_TOKENS = 8


_NAMES = {"full_name", "given_name", "middle_names", "family_name"}


def _identifier_columns(mapping: dict[str, object]) -> dict[str, bool]:
    """Identifier column → whether it holds names (searched part by part too)."""
    columns = {str(mapping["record"]["id"]): False}  # type: ignore[index]
    for name, spec in mapping["identifiers"].items():  # type: ignore[attr-defined]
        columns[spec if isinstance(spec, str) else spec["column"]] = name in _NAMES
    return columns


def _needles(path: Path, mapping_path: Path) -> set[bytes]:
    mapping = tomllib.loads(mapping_path.read_text())
    encoding = mapping["source"]["encoding"]
    columns = _identifier_columns(mapping)
    values: set[str] = set()
    with path.open(encoding=encoding, newline="") as fh:
        reader = csv.DictReader(fh, delimiter=mapping["source"].get("delimiter", ","))
        for row in reader:
            for column, is_name in columns.items():
                raw = (row.get(column) or "").strip()
                if not raw:
                    continue
                values.add(raw)
                if is_name:
                    values.update(raw.replace(",", " ").replace("-", " ").split())
                values.add(raw.replace(" ", ""))  # NHS numbers and postcodes unspaced
                if len(raw) == 10 and raw[2] in "/-" and raw[5] in "/-":
                    d, m, y = raw[:2], raw[3:5], raw[6:]
                    values.add(f"{y}-{m}-{d}")  # the ISO form of a day-first date
    needles: set[bytes] = set()
    for value in values:
        for form in {value, value.upper(), value.lower()}:
            for codec in ("utf-8", "cp1252", "utf-16-le", "utf-16-be"):
                try:
                    encoded = form.encode(codec)
                except UnicodeEncodeError:
                    continue
                if len(encoded) >= MIN_BYTES:
                    needles.add(encoded)
    return needles


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("privacy")
    summary = generate(root / "data", persons=500, seed=21, practices=1, opt_out=False)
    orgs = make_orgs(root, ["acute-trust", "gp-practice"])
    return {"root": root, "summary": summary, "orgs": orgs}


@pytest.mark.parametrize("kind", ["hospital", "gp"])
def test_batch_contains_none_of_the_inputs_identifiers(
    world: dict[str, object], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = world["summary"]
    dataset = next(d for d in summary.datasets if d.kind == kind)  # type: ignore[attr-defined]
    org = world["orgs"]["acute-trust" if kind == "hospital" else "gp-practice"]  # type: ignore[index]
    out = world["root"] / f"{kind}.batch"  # type: ignore[operator]
    # the spec with the probabilistic evidence: every token the SDK can emit
    spec = ["--spec", str(Path(keys.__file__).parent / "specs" / f"{PROBABILISTIC_SPEC_NAME}.toml")]
    assert (
        tokenise(monkeypatch, org, dataset.path, dataset.mapping, out, dataset=kind, extra=spec)
        == 0
    )

    needles = _needles(dataset.path, dataset.mapping)
    assert len(needles) > 1000, "the search must cover the input's identifiers"
    source = dataset.path.read_bytes()
    assert sum(n in source for n in needles) > 500, "the needles are the input's own bytes"
    raw = out.read_bytes()
    reader = BatchReader(out)
    assert reader.manifest.record_count > 50
    # Each chunk is searched decompressed; in the file its compressed body is random
    # bytes, where a 5-byte needle could turn up by chance.
    outside_chunks = raw
    for chunk in reader.raw_chunks():
        outside_chunks = outside_chunks.replace(chunk, b"\x00")
    haystacks = [outside_chunks] + [zlib.decompress(chunk) for chunk in reader.raw_chunks()]
    random_parts: set[bytes] = {
        value for chunk in reader.chunks() for value in chunk.refs if len(value) >= MIN_BYTES
    } | {
        token
        for chunk in reader.chunks()
        for tokens in chunk.tokens
        for token in tokens
        if token is not None and len(token) >= MIN_BYTES
    }
    evidence = [chunk.evidence for chunk in reader.chunks()]
    assert all(e is not None for e in evidence), "the batch carries the probabilistic evidence"
    random_parts |= {
        token for e in evidence if e is not None for row in e.blocks for token in row if token
    }
    # comparison tokens are 4 bytes each, stored back to back: the whole run is random
    random_parts |= {e.tokens for e in evidence if e is not None and e.tokens}
    assert len(random_parts) > reader.manifest.record_count, "the tokens are cut out"
    # the manifest's random hex (the batch id, each chunk's digest), where a needle of
    # digits turns up by chance every few dozen runs
    manifest = reader.manifest
    random_parts |= {manifest.batch_id.encode(), *(d.encode() for d in manifest.chunk_digests)}
    for haystack in haystacks:
        for part in random_parts:
            # a separator, so that cutting a token out never joins its neighbours' bytes
            haystack = haystack.replace(part, b"\x00")
        found = [n for n in needles if n in haystack]
        assert not found, f"{len(found)} identifier values found in the {kind} batch"
    tokens = b"|".join(random_parts)
    found = [n for n in needles if len(n) >= MIN_BYTES_IN_TOKENS and n in tokens]
    assert not found, f"{len(found)} identifier values found in the {kind} batch's tokens"
