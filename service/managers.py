"""The store managers' page: each manager sees and works their own store's cases.

A personal link (``careloop managers link STORE``) shows a page with a button; the POST from
it, with the link's token and a nonce that a cookie of that page must match (no page elsewhere
can sign a browser in: login CSRF), starts a session. The session lives on the server
(inbox.sessions): the cookie is a random id, HttpOnly, SameSite=Strict, Secure behind https;
signing out, a new manager or ``careloop managers revoke`` end it on every instance, and it
ends at a time fixed when it started. Every case id in a URL is checked against the session's
store; a case of another store is "not found". Every change is a POST carrying the session's
CSRF token, from our own origin. The page reads the board the flows publish (cases.board); a
change goes to the board and the inbox at once.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from cases.board import Board, StoreBoard
from cases.machine import ACTIVE, manager_moves
from cases.notes import shown_note
from cases.publishing import sla_left
from core.clock import utc_now
from core.settings import Settings
from core.tokens import LinkToken, TokenError, verify
from inbox.sessions import ManagerSessions, Session
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
SESSION_COOKIE = "careloop_manager"
LOGIN_COOKIE = "careloop_login"  # the sign-in page's nonce (double submit)
LOGIN_PAGE_SECONDS = 15 * 60  # how long a sign-in page's button works


class ManagerPages:
    def __init__(self, settings: Settings, board: Board, writer: InboxWriter) -> None:
        self.settings = settings
        self.board = board
        self.writer = writer
        self.secret = settings.link_secret.get_secret_value()
        self.origin = _origin(settings.public_url)
        self.public_url = settings.public_url.rstrip("/")
        self.secure = settings.public_url.startswith("https://")
        self.lifetime = timedelta(hours=settings.manager_session_hours)
        self.sessions = ManagerSessions(board.db)

    def app(self) -> Starlette:
        """Mounted at /m, with sessions of its own (the webhooks never get a cookie)."""
        return Starlette(
            routes=[
                Route("/", self.home, methods=["GET"]),
                Route("/login/{token}", self.login_page, methods=["GET"]),
                Route("/login", self.login, methods=["POST"]),
                Route("/cases/{case_id}", self.case, methods=["GET", "POST"]),
                Route("/logout", self.logout, methods=["POST"]),
            ],
            exception_handlers={RequestRefusedError: _refused},
        )

    def _link(self, text: str) -> LinkToken | Response:
        """The sign-in link's token, or the page saying why it is refused: forged, expired,
        not a sign-in token, or issued before the store's sessions were revoked."""
        try:
            token = verify(text, self.secret, utc_now())
        except TokenError as exc:
            expired = str(exc) == "expired"
            return _message(
                TEXT["en"], "link_expired" if expired else "link_invalid", 410 if expired else 403
            )
        if token.purpose != "manager" or token.issued is None:
            return _message(TEXT["en"], "link_invalid", 403)
        revoked = self.sessions.revoked_at(token.action_id)
        if revoked is not None and token.issued <= revoked.timestamp() * 1000:
            return _message(TEXT["en"], "link_invalid", 403)
        return token

    async def login_page(self, request: Request) -> Response:
        """The link only shows a button (a GET changes nothing: a page elsewhere that opens
        it signs no one in); the button's POST, with this page's nonce, starts the session."""
        token = self._link(request.path_params["token"])
        if isinstance(token, Response):
            return token
        board = self.board.for_store(token.action_id)
        t = self._text(None, board)
        nonce = secrets.token_urlsafe(24)
        store = board.store["name"] if board else token.action_id
        page = _ENV.get_template("manager_login.html").render(
            t=t,
            locale=_locale_of(t),
            title=f"{store} · {t['title']}",
            store=store,
            token=request.path_params["token"],
            nonce=nonce,
        )
        response = HTMLResponse(page)
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=LOGIN_PAGE_SECONDS,
            path="/m/login",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )
        return response

    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        nonce, expected = form.get("nonce", ""), request.cookies.get(LOGIN_COOKIE, "")
        same_page = bool(nonce) and hmac.compare_digest(nonce.encode(), expected.encode())
        if not same_page or not self._same_origin(request):
            return _message(TEXT["en"], "refused", 403)
        token = self._link(form.get("token", ""))  # checked again: it may have expired since
        if isinstance(token, Response):
            return token
        previous = request.cookies.get(SESSION_COOKIE)
        if previous:  # a browser holds one session: the one it had ends
            self.sessions.end(previous)
        session = self.sessions.start(token.action_id, utc_now(), self.lifetime)
        response = RedirectResponse(f"{self.public_url}/m/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session.id,
            max_age=int(self.lifetime.total_seconds()),
            path="/m",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )
        response.delete_cookie(
            LOGIN_COOKIE, path="/m/login", secure=self.secure, httponly=True, samesite="strict"
        )
        return response

    def _session(self, request: Request) -> Session | None:
        value = request.cookies.get(SESSION_COOKIE)
        return self.sessions.find(value, utc_now()) if value else None

    async def home(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return _message(TEXT["en"], "sign_in", 401)
        board = self.board.for_store(session.store_id)
        if board is None:
            return _message(TEXT["en"], "no_board", 404)
        chosen = request.query_params.get("lang")
        if chosen in TEXT and chosen != session.locale:
            self.sessions.set_locale(session.id, chosen)
            session = Session(session.id, session.store_id, session.csrf, chosen, session.expires)
        return HTMLResponse(self._render_board(session, board))

    async def case(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return _message(TEXT["en"], "sign_in", 401)
        board = self.board.for_store(session.store_id)
        case = self.board.case(session.store_id, request.path_params["case_id"])
        if board is None or case is None:  # another store's case is none of this session's
            return _message(self._text(session, board), "not_found", 404)
        if request.method == "POST":
            return await self._change(request, session, case)
        page = _ENV.get_template("manager_detail.html")
        context = self._context(session, board)
        return HTMLResponse(
            page.render(**context, case=self._shown(case, board, context["locale"]))
        )

    async def _form(self, request: Request) -> dict[str, str]:
        body = await read_body(request, PAGE_FORM_LIMIT, self.settings.body_timeout_seconds)
        return parse_form(body, max_fields=10)

    async def logout(self, request: Request) -> Response:
        """Ends the session on the server: a copy of the cookie is worth nothing after."""
        session = self._session(request)
        form = await self._form(request)
        if session is None or not self._trusted_post(request, session, form.get("csrf")):
            return _message(TEXT["en"], "refused", 403)
        self.sessions.end(session.id)
        response = _message(TEXT["en"], "signed_out", 200)
        response.delete_cookie(
            SESSION_COOKIE, path="/m", secure=self.secure, httponly=True, samesite="strict"
        )
        return response

    async def _change(self, request: Request, session: Session, case: dict[str, Any]) -> Response:
        store_id = session.store_id
        form = await self._form(request)
        if not self._trusted_post(request, session, form.get("csrf")):
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
        if not await self.writer.transact(self.board.record_change, key, change):
            return _message(TEXT["en"], "not_applied", 409)  # the case had moved on
        return RedirectResponse(f"{self.public_url}/m/", status_code=303)

    def _trusted_post(self, request: Request, session: Session, csrf: object) -> bool:
        """Our own form, from our own origin, in this session."""
        if not isinstance(csrf, str) or not csrf or not self._same_origin(request):
            return False
        return hmac.compare_digest(csrf.encode(), session.csrf.encode())

    def _same_origin(self, request: Request) -> bool:
        """Not posted from another site, as far as the browser tells. Our pages are served
        with Referrer-Policy: no-referrer, under which browsers send ``Origin: null`` even for
        our own forms, so a null (or absent) Origin passes here and the form's token decides."""
        fetched_from = request.headers.get("sec-fetch-site")
        if fetched_from is not None and fetched_from != "same-origin":
            return False
        return request.headers.get("origin") in (None, "null", self.origin)

    def _text(self, session: Session | None, board: StoreBoard | None) -> Text:
        locale = (session.locale if session else None) or (board.store["locale"] if board else "en")
        return TEXT[locale if locale in TEXT else "en"]

    def _context(self, session: Session, board: StoreBoard) -> dict[str, Any]:
        t = self._text(session, board)
        locale = _locale_of(t)
        return {
            "t": t,
            "locale": locale,
            "other_locale": "en" if locale == "zh-CN" else "zh-CN",
            "title": f"{board.store['name']} · {t['title']}",
            "csrf": session.csrf,
        }

    def _render_board(self, session: Session, board: StoreBoard) -> str:
        locale = self._context(session, board)["locale"]
        shown = [self._shown(case, board, locale) for case in board.cases]
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
        context = self._context(session, board)
        return _ENV.get_template("manager_board.html").render(
            **context, active=active, closed=closed, fresh=fresh
        )

    def _shown(self, case: dict[str, Any], board: StoreBoard, locale: str) -> dict[str, Any]:
        zone = board.store["timezone"]
        left = sla_left(case, datetime.now(UTC))
        return {
            **case,
            "opened_local": _local(str(case["opened_at"]), zone),
            "sla_left": _duration(left) if left is not None else None,
            "sla_overdue": left is not None and left.total_seconds() < 0,
            "actions": [a for a, states in manager_moves().items() if case["status"] in states],
            "events": [
                {
                    **e,
                    "at_local": _local(e["at"], zone),
                    "note": shown_note(e["note"], e["actor"], locale),
                }
                for e in case.get("events", [])
            ],
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


def _locale_of(t: Text) -> str:
    return "zh-CN" if t is TEXT["zh-CN"] else "en"


def _local(moment: str, zone: str) -> str:
    return datetime.fromisoformat(moment).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def _duration(left: timedelta) -> str:
    minutes = int(abs(left.total_seconds()) // 60)
    text = f"{minutes // 60} h {minutes % 60:02d} min"
    return text if left.total_seconds() >= 0 else f"-{text}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
