"""The ASGI app: every reply and event is verified, stored durably in the inbox, then answered.

It never opens the warehouse (a running flow holds it): ``collect_feedback`` drains the inbox.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from cases.board import Board
from core.settings import DEVELOPMENT_LINK_SECRET, ConfigError, Settings
from core.tokens import LinkToken, TokenError, verify
from feedback.parsing import parse_digits, parse_reply
from feedback.statuses import plain_id
from inbox.inbox import Inbox
from service.access_log import AccessLog
from service.headers import SecurityHeaders
from service.limits import (
    OFF_LOOP_ABOVE,
    PAGE_FORM_LIMIT,
    SENDGRID_BATCH_LIMIT,
    TWILIO_FORM_LIMIT,
    RequestRefusedError,
    parse_form,
    read_body,
)
from service.managers import ManagerPages
from service.pages import (
    ATTRIBUTES,
    confirm_rating_page,
    expired_page,
    thanks_page,
    unsubscribe_page,
)
from service.replies import locale_of, sms_answer, voice_answer, voice_survey
from service.security import (
    SENDGRID_SIGNATURE,
    SENDGRID_TIMESTAMP,
    TWILIO_SIGNATURE,
    Forbidden,
    SendGridVerifier,
    TwilioVerifier,
    twilio_sid,
)
from service.writer import InboxWriter, ReplayedSignatureError, Write, storable

XML = "application/xml"
MAX_FORM_FIELDS = 200  # Twilio sends a few dozen; a million is an attack
MAX_EVENTS = 10_000
STYLESHEET = (Path(__file__).parent / "static" / "careloop.css").read_bytes()


class FeedbackService:
    def __init__(self, settings: Settings) -> None:
        """Each provider's webhooks are on when its verification key is set; the sandbox needs
        none. A provider's routes without a key answer 503 saying which key is missing."""
        self.settings = settings
        self.inbox = Inbox.of(settings)
        self.writer = InboxWriter(self.inbox)
        token, key = settings.twilio_auth_token, settings.sendgrid_webhook_public_key
        self.twilio = (
            TwilioVerifier(token.get_secret_value(), settings.public_url) if token else None
        )
        self.sendgrid = SendGridVerifier(key, settings.webhook_tolerance_seconds) if key else None
        self.secret = settings.link_secret.get_secret_value()
        self.managers = ManagerPages(settings, Board(self.inbox), self.writer)

    def enabled(self) -> str:
        """One line for the start-up log: which webhooks are on and which are off, and why."""
        return "; ".join(
            [
                "Twilio webhooks " + ("on" if self.twilio else "off (no TWILIO_AUTH_TOKEN)"),
                "SendGrid events "
                + ("on" if self.sendgrid else "off (no SENDGRID_WEBHOOK_PUBLIC_KEY)"),
                "rating and unsubscribe links on",
                "store managers' page on (/m)",
            ]
        )

    async def _body(self, request: Request, limit: int) -> bytes:
        return await read_body(request, limit, self.settings.body_timeout_seconds)

    async def twilio_form(self, request: Request) -> tuple[dict[str, str], str]:
        """The verified form and its signature. Parsing and hashing a large body happen on a
        worker thread, so a big request never stalls the event loop."""
        if self.twilio is None:
            raise RequestRefusedError(503, "Twilio webhooks are off: TWILIO_AUTH_TOKEN is not set")
        body = await self._body(request, TWILIO_FORM_LIMIT)
        signature = request.headers.get(TWILIO_SIGNATURE)
        path, query = request.url.path, request.url.query
        if len(body) > OFF_LOOP_ABOVE:
            form = await run_in_threadpool(self._verified_form, body, path, query, signature)
        else:
            form = self._verified_form(body, path, query, signature)
        return form, signature or ""

    def _verified_form(
        self, body: bytes, path: str, query: str, signature: str | None
    ) -> dict[str, str]:
        form = parse_form(body, MAX_FORM_FIELDS)
        assert self.twilio is not None
        self.twilio.check(path, query, form, signature)
        return form

    async def _store(self, write: Write) -> None:
        try:
            await self.writer.write(write)
        except ReplayedSignatureError:
            raise Forbidden("replayed signature") from None
        except ValueError as exc:
            raise RequestRefusedError(400, str(exc)) from None

    async def sms(self, request: Request) -> Response:
        form, signature = await self.twilio_form(request)
        sid = twilio_sid(form, "MessageSid")
        sender, now = form.get("From", ""), datetime.now(UTC)
        await self._store(Write([("sms", sid, now, form)], signature, sid))
        parsed = parse_reply(form.get("Body"))
        if parsed.intent in ("opt_out", "opt_in"):
            await self.writer.run_in_writer(
                self.inbox.clarifying, sender, parsed.intent == "opt_in"
            )
        may_clarify = parsed.intent == "unknown" and bool(
            await self.writer.run_in_writer(
                self.inbox.may_clarify, sender, now, self.settings.reply_window_hours
            )
        )
        return Response(
            sms_answer(parsed, form.get("Body", ""), locale_of(sender), may_clarify), media_type=XML
        )

    async def status(self, request: Request) -> Response:
        form, signature = await self.twilio_form(request)
        sid = twilio_sid(form, "MessageSid", "CallSid")
        state = form.get("MessageStatus") or form.get("CallStatus") or "unknown"
        # the send's action, when its callback URL names it (sends made before it did not)
        action = request.path_params.get("action_id")
        payload = {**form, "action_id": action} if action else form
        await self._store(
            Write([("status", f"{sid}:{state}", datetime.now(UTC), payload)], signature, sid)
        )
        return Response("<Response/>", media_type=XML)

    async def voice(self, request: Request) -> Response:
        form, _ = await self.twilio_form(request)
        twilio_sid(form, "CallSid")
        locale = _locale(request)
        gather = (
            f"{self.settings.public_url}/webhooks/twilio/voice/"
            f"{request.path_params['action_id']}/gather?locale={locale}"
        )
        return Response(voice_survey(gather, locale), media_type=XML)

    async def gather(self, request: Request) -> Response:
        form, signature = await self.twilio_form(request)
        sid = twilio_sid(form, "CallSid")
        action_id = request.path_params["action_id"]
        item = ("ivr", f"{sid}:gather", datetime.now(UTC), {**form, "action_id": action_id})
        await self._store(Write([item], signature, sid))
        intent = parse_digits(form.get("Digits")).intent
        return Response(voice_answer(intent, _locale(request)), media_type=XML)

    async def sendgrid_events(self, request: Request) -> Response:
        if self.sendgrid is None:
            reason = "SendGrid events are off: SENDGRID_WEBHOOK_PUBLIC_KEY is not set"
            raise RequestRefusedError(503, reason)
        body = await self._body(request, SENDGRID_BATCH_LIMIT)
        events = await run_in_threadpool(
            self._verified_events,
            body,
            request.headers.get(SENDGRID_SIGNATURE),
            request.headers.get(SENDGRID_TIMESTAMP),
        )
        now = datetime.now(UTC)
        kept = [_storable_event(e) for e in events]
        items = [("status", _event_key(e), now, e) for e in kept]
        await self._store(Write(items))
        return PlainTextResponse("ok")

    def _verified_events(
        self, body: bytes, signature: str | None, timestamp: str | None
    ) -> list[dict[str, object]]:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestRefusedError(400, "body is not UTF-8") from None
        assert self.sendgrid is not None
        self.sendgrid.check(text, signature, timestamp)
        try:
            events = json.loads(text, parse_constant=_non_finite, parse_float=_finite_float)
        except (ValueError, RecursionError):
            raise RequestRefusedError(400, "body is not JSON") from None
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise RequestRefusedError(400, "expected a JSON array of event objects")
        if len(events) > MAX_EVENTS:
            raise RequestRefusedError(413, f"more than {MAX_EVENTS} events")
        try:
            storable(events)
        except ValueError as exc:
            raise RequestRefusedError(400, str(exc)) from None
        return events

    def _token(self, request: Request, purpose: str) -> LinkToken:
        token = verify(request.path_params["token"], self.secret, datetime.now(UTC))
        if token.purpose != purpose:
            raise Forbidden(f"a {token.purpose} token used for {purpose}")
        return token

    async def rating(self, request: Request) -> Response:
        """GET and HEAD (a person, or a mail scanner) only show the rating and a button; the
        rating is recorded by the POST that button sends, with any detail given."""
        try:
            token = self._token(request, "rate")
        except TokenError as exc:
            return _token_refused(exc)
        assert token.score is not None
        if request.method != "POST":
            return HTMLResponse(confirm_rating_page(token.score))
        form = parse_form(await self._body(request, PAGE_FORM_LIMIT), max_fields=20)
        payload: dict[str, object] = {"action_id": token.action_id, "score": token.score}
        payload |= _detail(form)
        key = f"{token.action_id}:{token.score}:{_digest(payload)}"
        await self._store(Write([("email_rating", key, datetime.now(UTC), payload)]))
        return HTMLResponse(thanks_page(token.score))

    async def unsubscribe(self, request: Request) -> Response:
        """GET and HEAD show a button; only a POST (the button, or an RFC 8058 one-click POST
        from the mail client) unsubscribes."""
        try:
            token = self._token(request, "unsubscribe")
        except TokenError as exc:
            return _token_refused(exc)
        if request.method != "POST":
            return HTMLResponse(unsubscribe_page(done=False))
        await self._body(request, PAGE_FORM_LIMIT)
        item = ("unsubscribe", token.action_id, datetime.now(UTC), {"action_id": token.action_id})
        await self._store(Write([item]))
        return HTMLResponse(unsubscribe_page(done=True))

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stylesheet(self, request: Request) -> Response:
        """The pages' only stylesheet (their policy allows no inline style); no customer data,
        so browsers may keep it."""
        return Response(
            STYLESHEET,
            media_type="text/css",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    def app(self) -> Starlette:
        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            await self.writer.start()
            yield
            await self.writer.stop()

        twilio_post = ["POST"]
        return Starlette(
            routes=[
                Route("/webhooks/twilio/sms", self.sms, methods=twilio_post),
                Route("/webhooks/twilio/status", self.status, methods=twilio_post),
                Route("/webhooks/twilio/status/{action_id}", self.status, methods=twilio_post),
                Route("/webhooks/twilio/voice/{action_id}", self.voice, methods=twilio_post),
                Route(
                    "/webhooks/twilio/voice/{action_id}/gather", self.gather, methods=twilio_post
                ),
                Route("/webhooks/sendgrid/events", self.sendgrid_events, methods=["POST"]),
                Route("/r/{token}", self.rating, methods=["GET", "POST"]),
                Route("/unsubscribe/{token}", self.unsubscribe, methods=["GET", "POST"]),
                Route("/healthz", self.health, methods=["GET"]),
                Route("/static/careloop.css", self.stylesheet, methods=["GET"]),
                Mount("/m", app=self.managers.app()),
            ],
            exception_handlers={Forbidden: _forbidden, RequestRefusedError: _refused},
            middleware=[
                Middleware(AccessLog),
                Middleware(SecurityHeaders, public_url=self.settings.public_url),
            ],
            lifespan=lifespan,
        )


def settle_garbage_collector() -> None:
    """Keep full collections off the request path. The SDKs and pydantic leave a large heap
    of long-lived objects; each full collection walked all of it, and under 100 concurrent
    senders those pauses set the p99 (89 ms; with this, 24 ms). Freezing moves what start-up
    made out of the collector's way; the higher first threshold makes collections rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_exposure(settings: Settings, host: str) -> None:
    """Refuse to serve beyond this machine with the development link secret: it is in the
    source and action ids can be derived, so anyone could rate or unsubscribe anyone."""
    if settings.link_secret.get_secret_value() != DEVELOPMENT_LINK_SECRET:
        return
    if host in LOOPBACK or host.startswith("127."):
        return
    raise ConfigError(
        f"careloop serve --host {host}: CARELOOP_LINK_SECRET is still the development value "
        "from the source, so anyone could forge rating and unsubscribe links. Set "
        "CARELOOP_LINK_SECRET to a long random value, or listen on 127.0.0.1 only."
    )


def create_app(settings: Settings) -> Starlette:
    return FeedbackService(settings).app()


async def _forbidden(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("forbidden", status_code=403)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestRefusedError)
    return PlainTextResponse(exc.reason, status_code=exc.status)


def _token_refused(exc: TokenError) -> Response:
    if str(exc) == "expired":
        return HTMLResponse(expired_page(), status_code=410)
    return PlainTextResponse("forbidden", status_code=403)


def _locale(request: Request) -> str:
    return "zh-CN" if request.query_params.get("locale") == "zh-CN" else "en"


def _detail(form: dict[str, str]) -> dict[str, object]:
    attributes = {
        name: int(form[name])
        for name in ATTRIBUTES
        if form.get(name, "") in {"1", "2", "3", "4", "5"}
    }
    comment = form.get("comment", "").strip()[:1000] or None
    return {"attributes": attributes, "comment": comment}


def _non_finite(name: str) -> float:
    """NaN and Infinity are not JSON (Python's parser takes them): refused, never stored."""
    raise RequestRefusedError(400, f"a non-finite number ({name}) in the JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 overflows to infinity
        raise RequestRefusedError(400, f"a non-finite number ({text[:20]}) in the JSON")
    return value


# The longest id an event may name as it is: a key or an action id beyond it (another
# sender's custom argument may hold 10 KB) is kept under another name, for PostgreSQL's index
# entries stop at 2,704 bytes and one refused event loses its whole batch.
LONGEST_ID = 200


def _storable_event(event: dict[str, object]) -> dict[str, object]:
    """The event as the inbox can keep it whichever database holds it: no NUL character
    (PostgreSQL's JSON text cannot give one back), no action id but a short text or number."""
    clean = _without_nul(event)
    assert isinstance(clean, dict)
    # read as SendGrid's whatever it holds: without its 'event' it would read as a sandbox
    # receipt, which may settle an action never claimed
    clean.setdefault("event", None)
    if "action_id" in clean and clean["action_id"] is not None:
        given = plain_id(clean["action_id"])
        if given is None or len(given) > LONGEST_ID:
            clean["action_id_given"] = clean.pop("action_id")
    return clean


def _event_key(event: dict[str, object]) -> str:
    key = plain_id(event.get("sg_event_id")) or ""
    return key if 0 < len(key) <= LONGEST_ID else _digest(event)


def _without_nul(value: object) -> object:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]
