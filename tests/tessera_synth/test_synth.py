"""The synthetic-data generator: deterministic, complete ground truth, realistic errors."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from client_sdk.cli import cli
from client_sdk.errors import InputError
from client_sdk.mapping import load_mapping
from client_sdk.pipeline import iter_records
from client_sdk.quality import QualityCollector
from client_sdk.record import NormalisedRecord
from tessera_synth import SynthParams, SynthSummary, generate

PERSONS = 5000
Read = dict[str, tuple[list[NormalisedRecord], QualityCollector]]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return generate(tmp_path_factory.mktemp("synth"), persons=PERSONS, seed=7)


@pytest.fixture(scope="module")
def read(synth: SynthSummary) -> Read:
    """Every dataset read through its mapping by the SDK's own pipeline."""
    result: Read = {}
    for dataset in synth.datasets:
        report = QualityCollector()
        records = list(iter_records(dataset.path, load_mapping(dataset.mapping), report=report))
        result[dataset.name] = (records, report)
    return result


def _rows(path: Path, encoding: str) -> list[dict[str, str]]:
    with path.open(encoding=encoding, newline="") as handle:
        return list(csv.DictReader(handle))


def _truth(summary: SynthSummary) -> dict[tuple[str, str], str]:
    return {(r["dataset"], r["local_id"]): r["person_id"] for r in _rows(summary.truth, "utf-8")}


def _errors(summary: SynthSummary) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for r in _rows(summary.truth_errors, "utf-8"):
        kind = "gp" if r["dataset"].startswith("gp_") else r["dataset"]
        counts[kind][r["error"]] += 1
    return counts


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", persons=400, seed=11)
    b = generate(tmp_path / "b", persons=400, seed=11)
    c = generate(tmp_path / "c", persons=400, seed=12)
    names = sorted(p.name for p in a.out_dir.iterdir())
    assert names == sorted(p.name for p in b.out_dir.iterdir())
    for name in names:
        assert (a.out_dir / name).read_bytes() == (b.out_dir / name).read_bytes(), name
    assert (a.out_dir / "hospital.csv").read_bytes() != (c.out_dir / "hospital.csv").read_bytes()


def test_every_row_of_every_file_is_in_the_truth(synth: SynthSummary) -> None:
    truth = _truth(synth)
    persons = {r["person_id"] for r in _rows(synth.truth_persons, "utf-8")}
    assert len(persons) == PERSONS
    seen = set()
    id_column = {"gp": "PATIENT_ID", "hospital": "HOSP_NO", "optout": "record_ref"}
    for dataset in synth.datasets:
        rows = _rows(dataset.path, dataset.encoding)
        assert len(rows) == dataset.rows > 0
        ids = [r[id_column[dataset.kind]] for r in rows]
        assert len(set(ids)) == len(ids), f"{dataset.name}: local ids repeat"
        for local_id in ids:
            assert (dataset.name, local_id) in truth
            seen.add((dataset.name, local_id))
        # One record per person per dataset.
        people = [truth[(dataset.name, i)] for i in ids]
        assert len(set(people)) == len(people), f"{dataset.name}: a person appears twice"
    assert seen == set(truth)
    assert set(truth.values()) == persons, "every person appears in at least one file"


def test_persons_are_registered_at_one_practice_except_ghosts(synth: SynthSummary) -> None:
    truth = _truth(synth)
    practices: dict[str, set[str]] = defaultdict(set)
    for (dataset, _), person in truth.items():
        if dataset.startswith("gp_"):
            practices[person].add(dataset)
    ghosts = {
        r["person_id"]
        for r in _rows(synth.truth_persons, "utf-8")
        if "ghost_registration" in r["traps"].split(";")
    }
    assert ghosts
    for person, held in practices.items():
        assert len(held) == (2 if person in ghosts else 1)


def test_hospital_extract_is_cp1252_with_carried_and_transliterated_names(
    synth: SynthSummary,
) -> None:
    raw = (synth.out_dir / "hospital.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = raw.decode("cp1252")
    assert "\r\n" in text
    names = [r["PATIENT NAME"] for r in _rows(synth.out_dir / "hospital.csv", "cp1252")]
    assert any(not n.isascii() for n in names), "a name cp1252 can carry (Zoë, José)"
    errors = _errors(synth)["hospital"]
    assert errors["transliterated"] > 0, "names cp1252 cannot carry are best-fitted"
    # The practices keep what cp1252 cannot carry (Polish, Turkish, Czech letters).
    gp_text = "".join(d.path.read_text(encoding="utf-8") for d in synth.datasets if d.kind == "gp")
    assert any(ch in gp_text for ch in "ŁłśćńźżąęŞşřěč")


def test_optout_is_utf8_with_bom(synth: SynthSummary) -> None:
    raw = (synth.out_dir / "optout.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    optout = next(d for d in synth.datasets if d.kind == "optout")
    assert 0.015 < optout.rows / PERSONS < 0.045


def test_mappings_load_and_every_row_reads(synth: SynthSummary, read: Read) -> None:
    for dataset in synth.datasets:
        records, report = read[dataset.name]
        assert report.rows_rejected == 0, dataset.name
        assert len(records) == dataset.rows
        with_nhs = sum(1 for r in records if r.nhs_number is not None)
        assert with_nhs / len(records) > 0.85, dataset.name
        with_dob = sum(1 for r in records if r.date_of_birth is not None)
        assert with_dob / len(records) > 0.98, dataset.name


def test_nhs_number_errors_are_what_the_truth_says(synth: SynthSummary, read: Read) -> None:
    tags: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in _rows(synth.truth_errors, "utf-8"):
        tags[(r["dataset"], r["local_id"])].add(r["error"])
    invalid = {"nhs_missing", "nhs_placeholder", "nhs_mistyped", "unknown_patient"}
    for dataset in synth.datasets:
        for record in read[dataset.name][0]:
            row_tags = tags[(dataset.name, record.local_id)]
            if row_tags & invalid:
                assert record.nhs_number is None, (dataset.name, sorted(row_tags))
            else:
                assert record.nhs_number is not None, (dataset.name, sorted(row_tags))


def test_clean_records_normalise_to_the_same_person(synth: SynthSummary, read: Read) -> None:
    """A hospital row with no injected error normalises like the person's GP row."""
    truth = _truth(synth)
    dirty = {(r["dataset"], r["local_id"]) for r in _rows(synth.truth_errors, "utf-8")}
    by_person: dict[str, dict[str, object]] = defaultdict(dict)
    for dataset in synth.datasets:
        if dataset.kind == "optout":
            continue
        for record in read[dataset.name][0]:
            if (dataset.name, record.local_id) in dirty:
                continue
            by_person[truth[(dataset.name, record.local_id)]][dataset.kind] = record
    pairs = [(v["gp"], v["hospital"]) for v in by_person.values() if len(v) == 2]
    assert len(pairs) > 500
    same = Counter[str]()
    for gp, hosp in pairs:
        for name in ("nhs_number", "date_of_birth", "sex", "family_name", "given_name"):
            same[name] += getattr(gp, name) == getattr(hosp, name)
    for name, count in same.items():
        # Movers and stale surnames are person traits, not row errors: allow for them.
        assert count / len(pairs) > 0.97, (name, count / len(pairs))


def test_error_rates_are_near_their_parameters(synth: SynthSummary) -> None:
    params = SynthParams()
    errors = _errors(synth)
    for kind, rates in (("gp", params.gp), ("hospital", params.hospital)):
        rows = sum(d.rows for d in synth.datasets if d.kind == kind)
        for name in ("nhs_missing", "nhs_placeholder", "postcode_missing", "sex_unknown"):
            expected = getattr(rates, name) * rows
            observed = errors[kind][name]
            tolerance = 4 * expected**0.5 + 3
            assert abs(observed - expected) <= tolerance, (kind, name, observed, expected)
        typos = errors[kind]["given_typo"] + errors[kind]["family_typo"]
        expected = 2 * rates.name_typo * rows
        assert abs(typos - expected) <= 4 * expected**0.5 + 5, (kind, typos, expected)
    hospital = errors["hospital"]
    assert hospital["nhs_mistyped"] + hospital["nhs_mistyped_valid"] > 0
    assert hospital["nickname"] > 0 and hospital["dob_swap"] > 0 and hospital["married_name"] > 0


def test_hospital_population_has_outsiders_and_is_older(synth: SynthSummary) -> None:
    truth = _truth(synth)
    persons = {r["person_id"]: r for r in _rows(synth.truth_persons, "utf-8")}
    hospital = [p for (d, _), p in truth.items() if d == "hospital"]
    outsiders = sum(1 for p in hospital if "outsider" in persons[p]["traps"])
    assert 0.2 <= outsiders / len(hospital) <= 0.3
    gp = [p for (d, _), p in truth.items() if d.startswith("gp_")]

    def elderly(ids: list[str]) -> float:
        return sum(1 for p in ids if int(persons[p]["age"]) >= 65) / len(ids)

    assert elderly(hospital) > elderly(gp) + 0.05


def test_traps_are_present(synth: SynthSummary) -> None:
    traps = Counter[str]()
    for r in _rows(synth.truth_persons, "utf-8"):
        for trap in filter(None, r["traps"].split(";")):
            traps[trap.split("=")[0]] += 1
    for trap in ("twin_of", "junior_of", "surname_changed", "moved", "outsider"):
        assert traps[trap] > 0, trap


def test_namesakes_share_name_sex_and_birth_date_but_not_address(tmp_path: Path) -> None:
    summary = generate(tmp_path, persons=1500, seed=3, params=SynthParams(namesake_rate=0.3))
    persons = {r["person_id"]: r for r in _rows(summary.truth_persons, "utf-8")}
    truth = _truth(summary)
    gp: dict[str, tuple[object, ...]] = {}
    for dataset in summary.datasets:
        if dataset.kind == "gp":
            for r in iter_records(dataset.path, load_mapping(dataset.mapping)):
                key = (r.given_name, r.family_name, r.date_of_birth, r.sex)
                gp[truth[(dataset.name, r.local_id)]] = key
    pairs = [
        (pid, trap.split("=")[1])
        for pid, r in persons.items()
        for trap in r["traps"].split(";")
        if trap.startswith("namesake_of=")
    ]
    assert len(pairs) > 20
    both = [(a, b) for a, b in pairs if a in gp and b in gp]
    for a, b in pairs:
        assert persons[a]["household_id"] != persons[b]["household_id"]
        assert persons[a]["sex"] == persons[b]["sex"]
    # Identical after normalisation, unless a row carries an injected error.
    assert sum(gp[a] == gp[b] for a, b in both) >= 0.9 * len(both)


def test_payload_is_correlated_with_risk(synth: SynthSummary) -> None:
    truth = _truth(synth)
    persons = {r["person_id"]: r for r in _rows(synth.truth_persons, "utf-8")}
    by_ltc: dict[bool, list[int]] = defaultdict(list)
    for row in _rows(synth.out_dir / "hospital.csv", "cp1252"):
        person = persons[truth[("hospital", row["HOSP_NO"])]]
        by_ltc[int(person["ltc_count"]) >= 3].append(int(row["AE_ATTENDANCES_12M"]))
    mean = {k: sum(v) / len(v) for k, v in by_ltc.items()}
    assert mean[True] > 2 * mean[False]


@pytest.mark.parametrize(("persons", "practices"), [(1, 1), (7, 3), (60, 50)])
def test_tiny_populations_and_many_practices(tmp_path: Path, persons: int, practices: int) -> None:
    summary = generate(tmp_path, persons=persons, seed=persons, practices=practices)
    assert sum(1 for d in summary.datasets if d.kind == "gp") == practices
    persons_seen = {r["person_id"] for r in _rows(summary.truth, "utf-8")}
    assert len(persons_seen) == persons
    for dataset in summary.datasets:
        load_mapping(dataset.mapping)


@pytest.mark.parametrize(("persons", "practices"), [(0, 1), (10, 0), (10, 10_000)])
def test_bad_arguments_are_refused(tmp_path: Path, persons: int, practices: int) -> None:
    with pytest.raises(InputError):
        generate(tmp_path, persons=persons, seed=1, practices=practices)
    with pytest.raises(InputError, match="opt_out_rate"):
        SynthParams(opt_out_rate=1.5)


def test_a_second_run_replaces_the_first(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    generate(tmp_path, persons=200, seed=1, practices=4)
    generate(tmp_path, persons=200, seed=1, practices=2, opt_out=False)
    assert len(list(tmp_path.glob("gp_*.csv"))) == 2
    assert len(list(tmp_path.glob("mapping_gp_*.toml"))) == 2
    assert not (tmp_path / "optout.csv").exists()
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_cli_writes_the_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["synth", "--persons", "300", "--seed", "5", "--out", str(tmp_path), "--practices", "2",
         "--no-opt-out"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("gp_*.csv"))) == 2
    assert (tmp_path / "hospital.csv").exists()
    assert not (tmp_path / "optout.csv").exists()
    assert "hospital" in result.output


def test_a_district_whose_postcodes_run_out_widens_then_shares_units() -> None:
    # `synth --persons 200000` used to loop for ever once a district's sectors were full.
    # One district, drawn far past its 10 sectors × 400 units, must keep answering.
    import random

    from tessera_synth.identifiers import PostcodeBook
    from tessera_synth.names import Lists

    lists = Lists()
    book = PostcodeBook(random.Random(7), lists)
    district = lists.places[0].district
    postcodes = [book._new_postcode(district) for _ in range(4_500)]
    assert len(set(postcodes)) == 4_000  # every unit of the district is handed out once
    assert len(book.sectors[district]) == 10  # the district widened to every sector
    assert all(p.startswith(f"{district} ") for p in postcodes)
