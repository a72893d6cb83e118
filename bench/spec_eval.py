"""Measure a linkage spec's precision and recall against ground truth.

    .venv/bin/python -m bench.spec_eval [--spec S] [--people N] [--seed N] [--json FILE]

Records are tokenised with the real tokeniser under a throwaway key, then linked by a
small in-memory model of the broker's linkage semantics (``link``):

- datasets arrive one after another (incremental), each with one record per person;
- a token carried by two records of one dataset is ambiguous and unused for it, and a
  token already held by two persons is unused;
- a record joins the person reached by its strongest usable key; a person never holds
  two records of one dataset (a key that reaches such a person is skipped);
- a weaker key that reaches another person is counted as a conflict, never followed.

Reported, over cross-dataset record pairs:

- overall pairwise precision and recall of the persons formed;
- per match key, *standalone*: pairs of records (of two datasets) sharing a usable token
  of that key alone, how many are the same person (precision) and what share of all
  true pairs they find (recall);
- per match key, *in the cascade*: records joined through that key and how many joined
  the right person.

The data comes from ``generate``: an independent corruption model (documented below and
in docs/linkage-measured-cascade.md), not the SDK's synthetic generator, so a spec tuned on one is
checked on the other.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client_sdk.mapping import load_mapping
from client_sdk.pipeline import iter_records
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.derive import DomainKey, RecordRef, StoredToken
from keys.spec import LinkageSpec, default_spec, load_spec
from tessera_synth import generate as synth_generate

__all__ = [
    "LinkResult",
    "Rates",
    "count_pairs",
    "evaluate",
    "generate",
    "link",
    "load_synth",
    "main",
]

# --- the population model ------------------------------------------------------------

_SURNAMES = (
    "SMITH JONES WILLIAMS TAYLOR BROWN DAVIES EVANS WILSON THOMAS JOHNSON ROBERTS ROBINSON "
    "THOMPSON WRIGHT WALKER WHITE EDWARDS HUGHES GREEN HALL LEWIS HARRIS CLARKE PATEL JACKSON "
    "WOOD TURNER MARTIN COOPER HILL WARD MORRIS MOORE CLARK LEE KING BAKER HARRISON MORGAN "
    "ALLEN JAMES SCOTT PHILLIPS WATSON DAVIS PARKER PRICE BENNETT YOUNG GRIFFITHS MITCHELL "
    "KELLY COOK CARTER RICHARDSON BAILEY COLLINS BELL SHAW MURPHY MILLER COX RICHARDS KHAN "
    "MARSHALL ANDERSON SIMPSON ELLIS ADAMS SINGH BEGUM WILKINSON FOSTER CHAPMAN POWELL WEBB "
    "ROGERS GRAY MASON ALI HUNT HUSSAIN CAMPBELL MATTHEWS OWEN PALMER HOLMES MILLS BARNES "
    "KNIGHT LLOYD BUTLER RUSSELL BARKER FISHER STEVENS JENKINS MURRAY DIXON HARVEY OBRIEN "
    "SMITH JONES NGUYEN WOJCIK KOWALSKI MACDONALD MCCARTHY"
).split()
_MALE = (
    "JAMES JOHN ROBERT MICHAEL WILLIAM DAVID RICHARD JOSEPH THOMAS CHRISTOPHER DANIEL "
    "MATTHEW ANTHONY MARK PAUL STEVEN ANDREW KENNETH GEORGE EDWARD PETER HARRY JACK OLIVER "
    "NOAH MUHAMMAD LEO ARTHUR OSCAR CHARLES HENRY ALFIE FREDDIE THEO ARCHIE JOSHUA SAMUEL "
    "ADAM BEN LIAM RYAN LUKE CONNOR KIERAN DYLAN ALEXANDER NATHAN MOHAMMED IAN GARY"
).split()
_FEMALE = (
    "MARY PATRICIA JENNIFER LINDA ELIZABETH BARBARA SUSAN JESSICA SARAH KAREN MARGARET "
    "EMMA OLIVIA AMELIA ISLA AVA MIA IVY LILY ISABELLA ROSIE SOPHIA GRACE FREYA ELLA "
    "CHARLOTTE EMILY POPPY JESSICA HANNAH LUCY CHLOE MEGAN LAUREN REBECCA KATHERINE JANE "
    "ANN HELEN CLAIRE NICOLA JOANNE RACHEL SAMANTHA VICTORIA ZOE AISHA FATIMA CATHERINE"
).split()
_NICKNAMES = {
    "WILLIAM": ["BILL", "WILL", "BILLY", "LIAM"],
    "ROBERT": ["BOB", "ROB", "BOBBY"],
    "RICHARD": ["DICK", "RICH", "RICKY"],
    "JAMES": ["JIM", "JAMIE", "JIMMY"],
    "MICHAEL": ["MIKE", "MICK"],
    "THOMAS": ["TOM", "TOMMY"],
    "CHRISTOPHER": ["CHRIS"],
    "DANIEL": ["DAN", "DANNY"],
    "MATTHEW": ["MATT"],
    "ANTHONY": ["TONY"],
    "ANDREW": ["ANDY", "DREW"],
    "EDWARD": ["ED", "TED", "EDDIE"],
    "ALEXANDER": ["ALEX", "SANDY"],
    "ELIZABETH": ["LIZ", "BETH", "LIZZIE", "BETTY"],
    "MARGARET": ["MAGGIE", "PEGGY", "MEG"],
    "KATHERINE": ["KATE", "KATIE", "KATHY"],
    "CATHERINE": ["CATH", "CATHY"],
    "SAMANTHA": ["SAM"],
    "VICTORIA": ["VICKY", "TORI"],
    "REBECCA": ["BECKY", "BECCA"],
    "PATRICIA": ["PAT", "TRISH"],
    "JENNIFER": ["JEN", "JENNY"],
    "SUSAN": ["SUE", "SUSIE"],
}
_NICK_KEY = {nick: formal for formal, nicks in _NICKNAMES.items() for nick in nicks}
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True, slots=True)
class Rates:
    """Error rates of one source (each applied independently per record)."""

    nhs_missing: float
    nhs_wrong: float
    given_typo: float
    family_typo: float
    nickname: float
    dob_swap: float
    dob_typo: float
    sex_missing: float
    postcode_missing: float
    postcode_typo: float


GP_RATES = Rates(0.03, 0.001, 0.01, 0.01, 0.02, 0.003, 0.003, 0.005, 0.01, 0.005)
HOSPITAL_RATES = Rates(0.20, 0.003, 0.04, 0.05, 0.10, 0.03, 0.01, 0.02, 0.04, 0.02)
MARRIED_CHANGE = 0.25  # of women aged 20-60 in the hospital copy: a changed family name
MOVED = 0.15  # of people: the hospital holds a newer address than the GP
TWIN_BIRTHS = 0.016  # of people: born a twin


def _mod11_ok(digits: str) -> bool:
    total = sum(int(d) * (10 - i) for i, d in enumerate(digits[:9]))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


def _nhs_number(rng: random.Random) -> str:
    while True:
        digits = str(rng.randrange(400_000_000, 999_999_999)) + str(rng.randrange(10))
        if _mod11_ok(digits):
            return digits


def _rare_surname(rng: random.Random) -> str:
    syllables = ["AL", "BER", "CRO", "DEN", "FAR", "GOR", "HAL", "KIN", "LEY", "MOR", "NET"]
    syllables += ["PEN", "RID", "SON", "TON", "WICK", "WELL", "ING", "HAM", "BY", "FORD"]
    return "".join(rng.choice(syllables) for _ in range(rng.randint(2, 3)))


def _typo(name: str, rng: random.Random) -> str:
    if len(name) < 3:
        return name
    i = rng.randrange(1, len(name))
    kind = rng.random()
    if kind < 0.35:
        return name[:i] + rng.choice(_LETTERS) + name[i + 1 :]
    if kind < 0.6:
        return name[:i] + name[i + 1 :]
    if kind < 0.8 and i < len(name) - 1:
        return name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    return name[:i] + name[i] + name[i:]


@dataclass(frozen=True, slots=True)
class _Person:
    pid: int
    nhs: str
    given: str
    family: str
    dob: str
    sex: str
    postcode: str
    practice: int


def _population(n: int, rng: random.Random, practices: int) -> list[_Person]:
    people: list[_Person] = []
    weights = [1.0 / (r + 1) ** 0.9 for r in range(len(_SURNAMES))]
    postcodes = [
        f"{area}{d} {s}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
        for area in ("BA", "BS", "TA")
        for d in range(1, 16)
        for s in range(10)
        for _ in range(max(1, n // 1500))
    ]
    while len(people) < n:
        family = rng.choices(_SURNAMES, weights)[0] if rng.random() < 0.6 else _rare_surname(rng)
        postcode = rng.choice(postcodes)
        practice = rng.randrange(practices)
        size = rng.choice([1, 1, 2, 2, 3, 4, 5])
        for _ in range(size):
            sex = rng.choice("MF")
            given = rng.choice(_MALE if sex == "M" else _FEMALE)
            dob = f"{rng.randint(1930, 2023)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            people.append(
                _Person(len(people), _nhs_number(rng), given, family, dob, sex, postcode, practice)
            )
            if rng.random() < TWIN_BIRTHS:
                twin_sex = sex if rng.random() < 0.6 else ("F" if sex == "M" else "M")
                pool = [g for g in (_MALE if twin_sex == "M" else _FEMALE) if g != given]
                if rng.random() < 0.3:  # twins often share an initial
                    pool = [g for g in pool if g[0] == given[0]] or pool
                people.append(
                    _Person(
                        len(people),
                        _nhs_number(rng),
                        rng.choice(pool),
                        family,
                        dob,
                        twin_sex,
                        postcode,
                        practice,
                    )
                )
    return people[:n]


def _record(
    person: _Person,
    local_id: str,
    rates: Rates,
    rng: random.Random,
    *,
    family: str | None = None,
    postcode: str | None = None,
) -> NormalisedRecord:
    given = person.given
    if rng.random() < rates.nickname and given in _NICKNAMES:
        given = rng.choice(_NICKNAMES[given])
    if rng.random() < rates.given_typo:
        given = _typo(given, rng)
    family = family or person.family
    if rng.random() < rates.family_typo:
        family = _typo(family, rng)
    dob = person.dob
    if rng.random() < rates.dob_swap and int(dob[8:]) <= 12:
        dob = f"{dob[:4]}-{dob[8:]}-{dob[5:7]}"
    elif rng.random() < rates.dob_typo:
        i = rng.choice([2, 3, 6, 9])
        dob = dob[:i] + str(rng.randrange(10)) + dob[i + 1 :]
        if not (1 <= int(dob[5:7]) <= 12 and 1 <= int(dob[8:]) <= 28):
            dob = person.dob
    nhs: str | None = person.nhs
    if rng.random() < rates.nhs_missing:
        nhs = None
    elif rng.random() < rates.nhs_wrong:
        nhs = _nhs_number(rng)
    pc: str | None = postcode or person.postcode
    if rng.random() < rates.postcode_missing:
        pc = None
    elif rng.random() < rates.postcode_typo and pc is not None:
        pc = pc[:-1] + rng.choice("ABDEFGHJLNPQRSTUWXYZ")
    sex: Any = None if rng.random() < rates.sex_missing else person.sex
    return NormalisedRecord(
        line=0,
        local_id=local_id,
        nhs_number=nhs,
        given_name=given,
        given_name_key=_NICK_KEY.get(given, given),
        family_name=family,
        date_of_birth=dob,
        sex=sex,
        postcode=pc,
    )


def generate(
    people: int, *, seed: int = 7, practices: int = 3, hospital_share: float = 0.35
) -> tuple[dict[str, list[NormalisedRecord]], dict[tuple[str, str], int]]:
    """GP practice lists and a hospital patient index of one population, with the truth.

    Every person is on one practice's list; a share of them (and some people from out of
    area, on no list) are in the hospital index with that source's higher error rates,
    married-name changes and newer addresses.

    Returns:
        ``(datasets, truth)``: records per dataset, and person id per (dataset, local id).
    """
    rng = random.Random(seed)
    population = _population(people, rng, practices)
    datasets: dict[str, list[NormalisedRecord]] = defaultdict(list)
    truth: dict[tuple[str, str], int] = {}
    for person in population:
        name = f"gp{person.practice}"
        local_id = f"{name}-{person.pid}"
        datasets[name].append(_record(person, local_id, GP_RATES, rng))
        truth[(name, local_id)] = person.pid
    outsiders = _population(max(1, people // 20), random.Random(seed + 1), 1)
    visitors = [(p, p.pid) for p in population if rng.random() < hospital_share]
    visitors += [(p, -1 - p.pid) for p in outsiders]
    for person, pid in visitors:
        family = None
        age = 2024 - int(person.dob[:4])
        if person.sex == "F" and 20 <= age <= 60 and rng.random() < MARRIED_CHANGE:
            family = rng.choice(_SURNAMES)
        postcode = None
        if rng.random() < MOVED:
            postcode = _population(1, rng, 1)[0].postcode
        local_id = f"H{len(datasets['hospital']):07d}"
        datasets["hospital"].append(
            _record(person, local_id, HOSPITAL_RATES, rng, family=family, postcode=postcode)
        )
        truth[("hospital", local_id)] = pid
    return dict(datasets), truth


# --- the linkage model ---------------------------------------------------------------


@dataclass
class LinkResult:
    """Persons formed, and how each record joined."""

    person_of: dict[tuple[str, str], int]
    joined_by: dict[tuple[str, str], int | None]
    conflicts: int


def link(
    tokens: Mapping[str, Sequence[tuple[str, Sequence[bytes | None]]]], n_keys: int
) -> LinkResult:
    """Link datasets in order under the broker's semantics (see the module docstring)."""
    holders: list[dict[bytes, set[int]]] = [defaultdict(set) for _ in range(n_keys)]
    person_datasets: dict[int, set[str]] = defaultdict(set)
    person_of: dict[tuple[str, str], int] = {}
    joined_by: dict[tuple[str, str], int | None] = {}
    conflicts = 0
    next_person = 0
    for dataset, rows in tokens.items():
        counts = [Counter(row[k] for _, row in rows if row[k] is not None) for k in range(n_keys)]
        for local_id, row in rows:
            usable = [t if t is not None and counts[k][t] == 1 else None for k, t in enumerate(row)]
            chosen: int | None = None
            via: int | None = None
            for k, token in enumerate(usable):
                if token is None:
                    continue
                persons = holders[k].get(token)
                if not persons or len(persons) != 1:
                    continue
                (candidate,) = persons
                if dataset in person_datasets[candidate]:
                    continue
                if chosen is None:
                    chosen, via = candidate, k
                elif candidate != chosen:
                    conflicts += 1
            if chosen is None:
                chosen = next_person
                next_person += 1
            person_datasets[chosen].add(dataset)
            person_of[(dataset, local_id)] = chosen
            joined_by[(dataset, local_id)] = via
            for k, token in enumerate(usable):
                if token is not None:
                    holders[k][token].add(chosen)
    return LinkResult(person_of, joined_by, conflicts)


def count_pairs(groups: dict[Any, list[tuple[str, int]]]) -> tuple[int, int]:
    """(cross-dataset pairs, of which the same true person) over groups of (dataset, pid)."""
    total = same = 0
    for members in groups.values():
        for i, (d1, p1) in enumerate(members):
            for d2, p2 in members[i + 1 :]:
                if d1 != d2:
                    total += 1
                    same += p1 == p2
    return total, same


def _broker_clusters(
    tokens: Mapping[str, Sequence[tuple[str, Sequence[bytes | None]]]],
    refs: Mapping[bytes, tuple[str, str]],
    tokeniser: Tokeniser,
    key_names: tuple[str, ...],
) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Link through the real ``broker.linkage.Linker`` on a private redis-server."""
    import redis

    from broker.linkage import DatasetInfo, IncomingRecord, Linker
    from broker.store.embedded import EmbeddedRedis
    from broker.store.linkage_store import LinkageStore

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp))
        server.start()
        try:
            client = redis.Redis.from_url(server.url)
            store = LinkageStore(client, scope="spec-eval")
            store.tune_server()
            linker = Linker(store)
            for dataset, rows in tokens.items():
                info = DatasetInfo(
                    id=dataset, org=dataset, one_record_per_person=True, key_names=key_names
                )
                incoming = [
                    IncomingRecord(
                        _ref(tokeniser, dataset, local_id),
                        tuple(None if t is None else StoredToken(t) for t in row),
                        (),
                    )
                    for local_id, row in rows
                ]
                for start in range(0, len(incoming), 5000):
                    linker.link(info, incoming[start : start + 5000], batch_id=dataset)
            person_of = {
                refs[bytes(r.ref)]: int(pid)
                for pid, records in store.iter_persons()
                for r in records
            }
            links = dict(linker.report().links_by_key)
            client.close()
        finally:
            server.stop()
    return person_of, links


def _ref(tokeniser: Tokeniser, dataset: str, local_id: str) -> RecordRef:
    return RecordRef(tokeniser.reference(f"{dataset}/{local_id}"))


def evaluate(
    spec: LinkageSpec,
    datasets: dict[str, list[NormalisedRecord]],
    truth: dict[tuple[str, str], int],
    *,
    linker: str = "model",
) -> dict[str, Any]:
    """Precision and recall of ``spec`` on ``datasets``, overall and per match key.

    ``linker="broker"`` links through the real engine (``broker.linkage.Linker`` on an
    embedded redis-server); per-key cascade precision is then not available, only the
    engine's links per key.
    """
    tokeniser = Tokeniser(
        TokeniseParams(
            spec=spec,
            domain_key=DomainKey(b"\x07" * 32),
            domain="eval",
            key_version="v1",
            reference_secret=b"\x08" * 32,
            dataset="eval",
        )
    )
    tokens = {
        name: [(r.local_id, tokeniser.tokens(r)) for r in records]
        for name, records in datasets.items()
    }
    n_keys = len(spec.match_keys)
    true_groups: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for (dataset, _), pid in truth.items():
        true_groups[pid].append((dataset, pid))
    true_pairs, _ = count_pairs(true_groups)

    result = link(tokens, n_keys)
    person_of = result.person_of
    broker_links: dict[str, int] | None = None
    if linker == "broker":
        refs = {
            bytes(_ref(tokeniser, dataset, local_id)): (dataset, local_id)
            for dataset, rows in tokens.items()
            for local_id, _ in rows
        }
        person_of, broker_links = _broker_clusters(tokens, refs, tokeniser, tuple(spec.key_names))
    clusters: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for (dataset, local_id), person in person_of.items():
        clusters[person].append((dataset, truth[(dataset, local_id)]))
    found, correct = count_pairs(clusters)

    per_key: dict[str, dict[str, float]] = {}
    for k, key in enumerate(spec.match_keys):
        groups: dict[bytes, list[tuple[str, int]]] = defaultdict(list)
        for dataset, rows in tokens.items():
            counts = Counter(row[k] for _, row in rows if row[k] is not None)
            for local_id, row in rows:
                token = row[k]
                if token is not None and counts[token] == 1:
                    groups[token].append((dataset, truth[(dataset, local_id)]))
        pairs, same = count_pairs(groups)
        joined = [
            (dataset, local_id) for (dataset, local_id), via in result.joined_by.items() if via == k
        ]
        joined_right = 0
        model_clusters: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for (dataset, local_id), person in result.person_of.items():
            model_clusters[person].append((dataset, truth[(dataset, local_id)]))
        for dataset, local_id in joined:
            person = result.person_of[(dataset, local_id)]
            pid = truth[(dataset, local_id)]
            joined_right += any(p == pid for d, p in model_clusters[person] if d != dataset)
        per_key[key.name] = {
            "standalone_pairs": pairs,
            "standalone_precision": same / pairs if pairs else 1.0,
            "standalone_recall": same / true_pairs if true_pairs else 0.0,
            "cascade_joins": len(joined),
            "cascade_precision": joined_right / len(joined) if joined else 1.0,
        }
    return {
        "spec": spec.name,
        "spec_hash": spec.content_hash,
        "records": sum(len(r) for r in datasets.values()),
        "true_pairs": true_pairs,
        "found_pairs": found,
        "precision": correct / found if found else 1.0,
        "recall": correct / true_pairs if true_pairs else 0.0,
        "conflicts": result.conflicts,
        "linker": linker,
        "broker_links_by_key": broker_links,
        "per_key": per_key,
    }


def load_synth(
    out_dir: Path, people: int, *, seed: int = 7
) -> tuple[dict[str, list[NormalisedRecord]], dict[tuple[str, str], int]]:
    """The SDK's synthetic extracts (``tessera-sdk synth``), read through the real pipeline.

    Every file goes through its own mapping (CSV conventions, encodings, date formats)
    and the SDK's normalisation, exactly as ``tessera-sdk tokenise`` reads it.
    """
    summary = synth_generate(out_dir, persons=people, seed=seed)
    datasets = {
        d.name: list(iter_records(d.path, load_mapping(d.mapping))) for d in summary.datasets
    }
    ids: dict[str, int] = {}
    truth: dict[tuple[str, str], int] = {}
    with summary.truth.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            truth[(row["dataset"], row["local_id"])] = ids.setdefault(row["person_id"], len(ids))
    # Rows the pipeline rejected (no usable identifiers) are not records.
    kept = {(name, r.local_id) for name, records in datasets.items() for r in records}
    return datasets, {k: v for k, v in truth.items() if k in kept}


def _print(report: dict[str, Any]) -> None:
    print(
        f"spec {report['spec']} ({report['spec_hash'][:19]}): {report['records']} records, "
        f"{report['true_pairs']} true pairs, {report['found_pairs']} linked pairs"
    )
    print(
        f"overall precision {report['precision']:.4f}  recall {report['recall']:.4f}  "
        f"({report['linker']} linker; model conflicts {report['conflicts']})"
    )
    if report["broker_links_by_key"] is not None:
        print(f"broker links by key: {report['broker_links_by_key']}")
    print(f"{'match key':<32} {'alone P':>8} {'alone R':>8} {'joins':>7} {'join P':>7}")
    for name, m in report["per_key"].items():
        print(
            f"{name:<32} {m['standalone_precision']:>8.4f} {m['standalone_recall']:>8.4f} "
            f"{m['cascade_joins']:>7} {m['cascade_precision']:>7.4f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--spec", type=Path, default=None)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--linker",
        choices=["model", "broker"],
        default="model",
        help="model: this module's in-memory linker; broker: the real engine on redis.",
    )
    parser.add_argument(
        "--source",
        choices=["synth", "model"],
        default="synth",
        help="synth: the SDK's generator through the real pipeline; model: this module's.",
    )
    args = parser.parse_args(argv)
    spec = default_spec() if args.spec is None else load_spec(args.spec)
    started = time.perf_counter()
    if args.source == "synth":
        with tempfile.TemporaryDirectory() as tmp:
            datasets, truth = load_synth(Path(tmp), args.people, seed=args.seed)
    else:
        datasets, truth = generate(args.people, seed=args.seed)
    report = evaluate(spec, datasets, truth, linker=args.linker)
    report["seconds"] = time.perf_counter() - started
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
