"""Opt-out registers: only the broker operator makes a dataset one, for a named body.

The persons an opt-out register links to leave every release of an agreement where
opt-outs apply, so the power to declare one is the power to shape every research cohort:
an organisation that could make its own dataset a register could remove persons at will
and, with a researcher, single a known person out by differencing two cohorts. So an
organisation uploads the register as a tokens-only dataset, and the operator designates it
(``tessera-broker admin opt-out-register declare ORG/NAME --body ...``) once the body holding
it (e.g. NHS England for the National Data Opt-out) is approved to. The act is audited and
every register is listed, with its body and date, on the public register.
"""

from __future__ import annotations

import re

from broker.audit import append_audit
from broker.errors import BadRequestError
from broker.store.client import Store
from broker.store.datasets import OptOutRegister, designate_opt_out_register
from keys.wire import NAME_PATTERN

__all__ = ["declare_opt_out_register"]


def declare_opt_out_register(store: Store, *, dataset: str, body: str, now: str) -> OptOutRegister:
    """Make ``dataset`` (``org/name``) the opt-out register held by ``body``, audited.

    Raises:
        BadRequestError: ``dataset`` is not ``org/name``, carries payload, or ``body`` is empty.
        NotFoundOrForbiddenError: no such dataset.
        ConflictError: it is already the register of another body.
    """
    org, _, name = dataset.partition("/")
    if not (re.fullmatch(NAME_PATTERN, org) and re.fullmatch(NAME_PATTERN, name)):
        raise BadRequestError(f"{dataset!r}: name the dataset as ORG/NAME")
    register, new = designate_opt_out_register(store, org=org, name=name, body=body, now=now)
    if new:
        append_audit(
            store,
            identity="operator",
            role="operator",
            action="opt_out_register.declare",
            organisation=org,
            dataset=register.dataset,
        )
    return register
