"""The store managers' page: each manager sees and works their own store's cases.

A personal link (``careloop managers link STORE``) starts a session: a signed cookie,
HttpOnly, SameSite=Strict, Secure behind https, naming the store. Every case id in a URL is
checked against that store; a case of another store is "not found". Every change is a POST
carrying the session's CSRF token, from our own origin. The page reads the board the flows
publish (cases.board); a change goes to the board and the inbox at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from cases.board import Board, StoreBoard
from cases.machine import ACTIVE, manager_moves
from cases.publishing import sla_left
from core.settings import Settings
from core.tokens import TokenError, verify
from service.limits import (
    PAGE_FORM_LIMIT,
    RequestRefusedError,
    parse_form,
    read_body,
)
from service.manager_text import TEXT, Text
from service.writer import InboxWriter

_ENV = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True)
NOTE_LIMIT = 1000


class ManagerPages:
    def __init__(self, settings: Settings, board: Board, writer: InboxWriter) -> None:
        self.settings = settings
        self.board = board
        self.writer = writer
        self.secret = settings.link_secret.get_secret_value()
        self.origin = _origin(settings.public_url)

    def app(self) -> Starlette:
        """Mounted at /m, with sessions of its own (the webhooks never get a cookie)."""
        session_key = hmac.new(self.secret.encode(), b"manager-session", hashlib.sha256)
        return Starlette(
            routes=[
                Route("/", self.home, methods=["GET"]),
                Route("/login/{token}", self.login, methods=["GET"]),
                Route("/cases/{case_id}", self.case, methods=["GET", "POST"]),
                Route("/logout", self.logout, methods=["POST"]),
            ],
            exception_handlers={RequestRefusedError: _refused},
            middleware=[
                Middleware(
                    SessionMiddleware,
                    secret_key=session_key.hexdigest(),
                    session_cookie="careloop_manager",
                    max_age=self.settings.manager_session_hours * 3600,
                    path="/m",
                    same_site="strict",
                    https_only=self.settings.public_url.startswith("https://"),
                )
            ],
        )

    async def login(self, request: Request) -> Response:
        try:
            token = verify(request.path_params["token"], self.secret, datetime.now(UTC))
        except TokenError as exc:
            expired = str(exc) == "expired"
            return _message(
                TEXT["en"], "link_expired" if expired else "link_invalid", 410 if expired else 403
            )
        if token.purpose != "manager":
            return _message(TEXT["en"], "link_invalid", 403)
        request.session.clear()
        request.session.update(store=token.action_id, csrf=secrets.token_urlsafe(24))
        return RedirectResponse("/m/", status_code=303)

    async def home(self, request: Request) -> Response:
        store_id = request.session.get("store")
        if not store_id:
            return _message(TEXT["en"], "sign_in", 401)
        board = self.board.for_store(store_id)
        if board is None:
            return _message(TEXT["en"], "no_board", 404)
        if request.query_params.get("lang") in TEXT:
            request.session["lang"] = request.query_params["lang"]
        return HTMLResponse(self._render_board(request, board))

    async def case(self, request: Request) -> Response:
        store_id = request.session.get("store")
        if not store_id:
            return _message(TEXT["en"], "sign_in", 401)
        board = self.board.for_store(store_id)
        case = self.board.case(store_id, request.path_params["case_id"])
        if board is None or case is None:  # another store's case is none of this session's
            return _message(self._text(request, board), "not_found", 404)
        if request.method == "POST":
            return await self._change(request, store_id, case)
        page = _ENV.get_template("manager_detail.html")
        return HTMLResponse(
            page.render(**self._context(request, board), case=self._shown(case, board))
        )

    async def _form(self, request: Request) -> dict[str, str]:
        body = await read_body(request, PAGE_FORM_LIMIT, self.settings.body_timeout_seconds)
        return parse_form(body, max_fields=10)

    async def logout(self, request: Request) -> Response:
        form = await self._form(request)
        if not self._trusted_post(request, form.get("csrf")):
            return _message(TEXT["en"], "refused", 403)
        request.session.clear()
        return _message(TEXT["en"], "signed_out", 200)

    async def _change(self, request: Request, store_id: str, case: dict[str, Any]) -> Response:
        form = await self._form(request)
        if not self._trusted_post(request, form.get("csrf")):
            return _message(TEXT["en"], "refused", 403)
        action = str(form.get("action", ""))
        if action not in manager_moves():
            return _message(TEXT["en"], "refused", 400)
        change = {
            "case_id": case["case_id"],
            "store_id": store_id,
            "action": action,
            "note": str(form.get("note", "")).strip()[:NOTE_LIMIT],
            "at": datetime.now(UTC).isoformat(),
        }
        key = f"{case['case_id']}:{action}:{secrets.token_hex(6)}"
        await self.writer.transact(self.board.record_change, key, change)
        return RedirectResponse("/m/", status_code=303)

    def _trusted_post(self, request: Request, csrf: object) -> bool:
        """Our own form, from our own origin, in this session."""
        expected = request.session.get("csrf")
        if not isinstance(expected, str) or not expected or not isinstance(csrf, str):
            return False
        origin = request.headers.get("origin")
        same_origin = origin is None or origin == self.origin
        return same_origin and hmac.compare_digest(csrf.encode(), expected.encode())

    def _text(self, request: Request, board: StoreBoard | None) -> Text:
        locale = request.session.get("lang") or (board.store["locale"] if board else "en")
        return TEXT[locale if locale in TEXT else "en"]

    def _context(self, request: Request, board: StoreBoard) -> dict[str, Any]:
        t = self._text(request, board)
        locale = "zh-CN" if t is TEXT["zh-CN"] else "en"
        return {
            "t": t,
            "locale": locale,
            "other_locale": "en" if locale == "zh-CN" else "zh-CN",
            "title": f"{board.store['name']} · {t['title']}",
            "csrf": request.session.get("csrf", ""),
        }

    def _render_board(self, request: Request, board: StoreBoard) -> str:
        shown = [self._shown(case, board) for case in board.cases]
        active = [c for c in shown if c["status"] in ACTIVE]
        active.sort(
            key=lambda c: (c["escalated_at"] is None, c["status"] != "open", c["opened_at"])
        )
        closed = sorted(
            (c for c in shown if c["status"] not in ACTIVE),
            key=lambda c: c["opened_at"],
            reverse=True,
        )
        fresh = _local(board.published_at.isoformat(), board.store["timezone"])
        context = self._context(request, board)
        return _ENV.get_template("manager_board.html").render(
            **context, active=active, closed=closed, fresh=fresh
        )

    def _shown(self, case: dict[str, Any], board: StoreBoard) -> dict[str, Any]:
        zone = board.store["timezone"]
        left = sla_left(case, datetime.now(UTC))
        return {
            **case,
            "opened_local": _local(str(case["opened_at"]), zone),
            "sla_left": _duration(left) if left is not None else None,
            "sla_overdue": left is not None and left.total_seconds() < 0,
            "actions": [a for a, states in manager_moves().items() if case["status"] in states],
            "events": [{**e, "at_local": _local(e["at"], zone)} for e in case.get("events", [])],
        }


async def _refused(request: Request, exc: Exception) -> Response:
    """A body too big, too slow or not a form: the client's fault, told as such."""
    assert isinstance(exc, RequestRefusedError)
    return PlainTextResponse(exc.reason, status_code=exc.status)


def _message(t: Text, key: str, status: int) -> HTMLResponse:
    page = _ENV.get_template("manager_message.html")
    both = f"{TEXT['zh-CN']['messages'][key]} / {TEXT['en']['messages'][key]}"
    return HTMLResponse(
        page.render(t=t, locale="en", title="careloop", message=both), status_code=status
    )


def _local(moment: str, zone: str) -> str:
    return datetime.fromisoformat(moment).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def _duration(left: timedelta) -> str:
    minutes = int(abs(left.total_seconds()) // 60)
    text = f"{minutes // 60} h {minutes % 60:02d} min"
    return text if left.total_seconds() >= 0 else f"-{text}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
