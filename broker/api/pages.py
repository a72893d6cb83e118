"""Server-rendered pages: the public register and the operator dashboard.

``/register`` (with ``.json`` and ``.csv``) and ``/register/how-we-protect-data`` need no
login. ``/dashboard`` needs an admin: ``/dashboard/login`` takes an admin credential in a
form and sets a cookie holding only a random session id (HttpOnly, Secure,
SameSite=Strict); the session lives in Redis with an idle expiry. Every POST carries a
CSRF token (the session's, or for the login form a double-submit cookie). The pages are
plain HTML with inline SVG charts: no JavaScript and nothing fetched from elsewhere, and
Jinja2 escapes every value.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from broker.audit import append_audit, checkpoint_now
from broker.dashboard import Session, build_dashboard, end_session, load_session, sign_in
from broker.deps import RuntimeDep
from broker.errors import AuditTamperedError, NotFoundOrForbiddenError
from broker.labels import Labels
from broker.register import build_register, register_csv
from broker.runtime import BrokerRuntime, utc_now
from broker.store.datasets import list_opt_out_registers
from broker.store.identities import find_identity, list_identities, revoke_identity
from keys.signing import public_key_of

__all__ = ["LOGIN_COOKIE", "SESSION_COOKIE", "router"]

SESSION_COOKIE = "tessera_session"
"""Holds the random session id only."""
LOGIN_COOKIE = "tessera_login"
"""Double-submit CSRF token of the login form."""

_TEMPLATES = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent.parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)

# Pages rendered without organisation names (tests render templates directly) show ids.
_TEMPLATES.env.globals["labels"] = Labels()

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

_NOTICES = {
    "revoked": "The credential was revoked. It is refused from the next request on.",
    "checkpoint": "A signed checkpoint of the newest audit entry was made.",
    "not-found": "There is no such identity.",
    "expired": "The form had expired. Please try again.",
    "empty": "The audit log is empty: there is nothing to checkpoint yet.",
    "tampered": "No checkpoint was signed: the audit log fails verification (see below).",
}

router = APIRouter(include_in_schema=False)


def _page(
    request: Request, template: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    response = _TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
    response.headers.update(_SECURITY_HEADERS)
    return response


def _private(response: Response) -> Response:
    response.headers.update(_SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-store"
    return response


def _see_other(url: str) -> Response:
    return _private(RedirectResponse(url, status_code=303))


def _session(request: Request, runtime: BrokerRuntime) -> Session | None:
    session_id = request.cookies.get(SESSION_COOKIE, "")
    ttl = runtime.settings.session_ttl_seconds
    return load_session(runtime.store, session_id, secret=runtime.session_secret, ttl=ttl)


def _csrf_ok(session: Session, token: str) -> bool:
    return secrets.compare_digest(session.csrf.encode(), token.encode())


# The public register ------------------------------------------------------------------------


@router.get("/register", response_class=HTMLResponse)
def register_page(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    """Every agreement ever active, for everyone."""
    entries = build_register(runtime.store)
    context = {
        "entries": entries,
        "labels": Labels.of(list_identities(runtime.store)),
        "opt_out_registers": list_opt_out_registers(runtime.store),
        "generated_at": utc_now()[:16].replace("T", " "),
    }
    return _page(request, "register.html", context)


@router.get("/register.json")
def register_json(runtime: RuntimeDep) -> JSONResponse:
    """The register as JSON."""
    entries = build_register(runtime.store)
    registers = [
        {"dataset": r.dataset, "body": r.body, "since": r.since}
        for r in list_opt_out_registers(runtime.store)
    ]
    body = {
        "generated_at": utc_now(),
        "agreements": [e.to_dict() for e in entries],
        "opt_out_registers": registers,
    }
    return JSONResponse(body, headers={"Access-Control-Allow-Origin": "*"})


@router.get("/register.csv")
def register_csv_file(runtime: RuntimeDep) -> PlainTextResponse:
    """The register as CSV, one row per agreement."""
    text = register_csv(build_register(runtime.store))
    return PlainTextResponse(
        text,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="tessera-register.csv"',
            "Access-Control-Allow-Origin": "*",
        },
    )


@router.get("/register/how-we-protect-data", response_class=HTMLResponse)
def protection_page(request: Request) -> HTMLResponse:
    """How the data is protected and how to opt out, in plain English."""
    return _page(request, "protection.html", {})


# The operator dashboard ----------------------------------------------------------------------


@router.get("/dashboard/login", response_class=HTMLResponse)
def login_page(request: Request, notice: str = "") -> Response:
    """The login form (with a fresh double-submit CSRF token)."""
    token = secrets.token_urlsafe(32)
    error = _NOTICES["expired"] if notice == "expired" else ""
    response = _page(request, "login.html", {"csrf": token, "error": error})
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        path="/dashboard/login",
        httponly=True,
        secure=True,
        samesite="strict",
        max_age=3600,
    )
    return _private(response)


@router.post("/dashboard/login", response_class=HTMLResponse)
def login(
    request: Request,
    runtime: RuntimeDep,
    credential: Annotated[str, Form(max_length=256)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Check an admin credential; on success start a session and go to the dashboard."""
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not secrets.compare_digest(expected.encode(), csrf.encode()):
        return _see_other("/dashboard/login?notice=expired")
    settings = runtime.settings
    typed = credential.strip()
    outcome = sign_in(
        runtime.store,
        credential_digest=runtime.credential_digest(typed) if typed else None,
        client=request.client.host if request.client else "unknown",
        secret=runtime.session_secret,
        ttl=settings.session_ttl_seconds,
        max_failures=settings.sign_in_max_failures,
        lockout=settings.sign_in_lockout_seconds,
    )
    session = outcome.session
    if session is None:
        error = "That is not a live administrator credential."
        status_code = 401
        if outcome.locked:
            minutes = -(-settings.sign_in_lockout_seconds // 60)
            error = f"Too many failed sign-ins from this address: try again in {minutes} min."
            status_code = 429
        page = _page(
            request, "login.html", {"csrf": expected, "error": error}, status_code=status_code
        )
        if outcome.locked:
            page.headers["Retry-After"] = str(settings.sign_in_lockout_seconds)
        return _private(page)
    response = _see_other("/dashboard")
    response.set_cookie(
        SESSION_COOKIE,
        session.session_id,
        path="/dashboard",
        httponly=True,
        secure=True,
        samesite="strict",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/dashboard/login")
    return response


@router.post("/dashboard/logout")
def logout(
    request: Request, runtime: RuntimeDep, csrf: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    """End the session."""
    session = _session(request, runtime)
    if session is not None and _csrf_ok(session, csrf):
        end_session(runtime.store, session.session_id, secret=runtime.session_secret)
    response = _see_other("/dashboard/login")
    response.delete_cookie(SESSION_COOKIE, path="/dashboard")
    return response


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request, runtime: RuntimeDep, notice: str = "") -> Response:
    """The operator dashboard (admins only; others are sent to the login form)."""
    session = await run_in_threadpool(_session, request, runtime)
    if session is None:
        return _see_other("/dashboard/login")
    content = await run_in_threadpool(
        lambda: build_dashboard(
            runtime.store,
            audit_public_key=public_key_of(runtime.secrets.audit_signing_key),
            viewer=session.identity,
        )
    )
    labels = await run_in_threadpool(lambda: Labels.of(list_identities(runtime.store)))
    context = {
        "d": content,
        "labels": labels,
        "csrf": session.csrf,
        "viewer": session.identity.name,
        "notice": _NOTICES.get(notice, ""),
    }
    return _private(_page(request, "dashboard.html", context))


@router.post("/dashboard/credentials/revoke")
def revoke_credential(
    request: Request,
    runtime: RuntimeDep,
    name: Annotated[str, Form(max_length=128)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
    confirm: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Revoke an identity's credential (refused from the next request on).

    The dashboard's Revoke button first shows what will happen and asks again (no
    JavaScript, so the question is a page); only ``confirm=yes`` revokes.
    """
    session = _session(request, runtime)
    if session is None:
        return _see_other("/dashboard/login")
    if not _csrf_ok(session, csrf):
        return _see_other("/dashboard?notice=expired")
    try:
        identity = find_identity(runtime.store, name)
    except NotFoundOrForbiddenError:
        return _see_other("/dashboard?notice=not-found#credentials")
    if confirm != "yes":
        labels = Labels.of([identity])
        context = {
            "identity": identity,
            "label": labels.org(identity.name),
            "csrf": session.csrf,
        }
        return _private(_page(request, "revoke.html", context))
    revoke_identity(runtime.store, identity)
    append_audit(
        runtime.store,
        identity=session.identity.name,
        role=session.identity.role.value,
        organisation=identity.name if identity.role.value == "org" else "",
        action="credential.revoke",
    )
    return _see_other("/dashboard?notice=revoked#credentials")


@router.post("/dashboard/audit/checkpoint")
async def checkpoint(
    request: Request, runtime: RuntimeDep, csrf: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    """Sign a checkpoint of the newest audit entry now."""
    session = await run_in_threadpool(_session, request, runtime)
    if session is None:
        return _see_other("/dashboard/login")
    if not _csrf_ok(session, csrf):
        return _see_other("/dashboard?notice=expired")
    try:
        made = await run_in_threadpool(
            lambda: checkpoint_now(
                runtime.store,
                runtime.secrets.audit_signing_key,
                every=runtime.settings.audit_checkpoint_every,
            )
        )
    except AuditTamperedError:
        return _see_other("/dashboard?notice=tampered#audit")
    return _see_other(f"/dashboard?notice={'checkpoint' if made else 'empty'}#audit")
