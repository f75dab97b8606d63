"""The ASGI app: every reply and event is verified, stored durably in the inbox, then answered.

It never opens the warehouse (a running flow holds it): ``collect_feedback`` drains the inbox.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from careloop.settings import ConfigError, Settings
from feedback.inbox import Inbox
from feedback.parsing import parse_digits, parse_reply
from feedback.service.pages import ATTRIBUTES, expired_page, thanks_page, unsubscribe_page
from feedback.service.replies import locale_of, sms_answer, voice_answer, voice_survey
from feedback.service.security import (
    SENDGRID_SIGNATURE,
    SENDGRID_TIMESTAMP,
    TWILIO_SIGNATURE,
    Forbidden,
    SendGridVerifier,
    TwilioVerifier,
)
from feedback.service.writer import InboxWriter
from feedback.tokens import LinkToken, TokenError, verify

XML = "application/xml"


class FeedbackService:
    def __init__(self, settings: Settings) -> None:
        missing = [
            name
            for name, value in (
                ("TWILIO_AUTH_TOKEN", settings.twilio_auth_token),
                ("SENDGRID_WEBHOOK_PUBLIC_KEY", settings.sendgrid_webhook_public_key),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"careloop serve needs {', '.join(missing)} to verify webhooks")
        assert settings.twilio_auth_token and settings.sendgrid_webhook_public_key
        self.settings = settings
        self.inbox = Inbox(settings.inbox_path)
        self.writer = InboxWriter(self.inbox)
        self.twilio = TwilioVerifier(
            settings.twilio_auth_token.get_secret_value(), settings.public_url
        )
        self.sendgrid = SendGridVerifier(
            settings.sendgrid_webhook_public_key, settings.webhook_tolerance_seconds
        )
        self.secret = settings.link_secret.get_secret_value()

    async def twilio_form(self, request: Request) -> dict[str, str]:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        self.twilio.check(
            request.url.path, request.url.query, form, request.headers.get(TWILIO_SIGNATURE)
        )
        return form

    async def sms(self, request: Request) -> Response:
        form = await self.twilio_form(request)
        sender, now = form.get("From", ""), datetime.now(UTC)
        await self.writer.put("sms", form.get("MessageSid") or _digest(form), now, form)
        parsed = parse_reply(form.get("Body"))
        may_clarify = parsed.intent == "unknown" and bool(
            await self.writer.run_in_writer(
                self.inbox.may_clarify, sender, now, self.settings.reply_window_hours
            )
        )
        return Response(
            sms_answer(parsed, form.get("Body", ""), locale_of(sender), may_clarify), media_type=XML
        )

    async def status(self, request: Request) -> Response:
        form = await self.twilio_form(request)
        sid = form.get("MessageSid") or form.get("CallSid") or _digest(form)
        state = form.get("MessageStatus") or form.get("CallStatus") or "unknown"
        await self.writer.put("status", f"{sid}:{state}", datetime.now(UTC), form)
        return Response("<Response/>", media_type=XML)

    async def voice(self, request: Request) -> Response:
        await self.twilio_form(request)
        locale = _locale(request)
        gather = (
            f"{self.settings.public_url}/webhooks/twilio/voice/"
            f"{request.path_params['action_id']}/gather?locale={locale}"
        )
        return Response(voice_survey(gather, locale), media_type=XML)

    async def gather(self, request: Request) -> Response:
        form = await self.twilio_form(request)
        action_id = request.path_params["action_id"]
        key = f"{form.get('CallSid') or _digest(form)}:gather"
        await self.writer.put("ivr", key, datetime.now(UTC), {**form, "action_id": action_id})
        rated = parse_digits(form.get("Digits")).intent == "rating"
        return Response(voice_answer(rated, _locale(request)), media_type=XML)

    async def sendgrid_events(self, request: Request) -> Response:
        body = (await request.body()).decode()
        self.sendgrid.check(
            body, request.headers.get(SENDGRID_SIGNATURE), request.headers.get(SENDGRID_TIMESTAMP)
        )
        events = json.loads(body)
        if not isinstance(events, list):
            return PlainTextResponse("expected a JSON array of events", status_code=400)
        now = datetime.now(UTC)
        await asyncio.gather(
            *(
                self.writer.put("status", str(e.get("sg_event_id") or _digest(e)), now, e)
                for e in events
            )
        )
        return PlainTextResponse("ok")

    def _token(self, request: Request, purpose: str) -> LinkToken:
        token = verify(request.path_params["token"], self.secret, datetime.now(UTC))
        if token.purpose != purpose:
            raise Forbidden(f"a {token.purpose} token used for {purpose}")
        return token

    async def rating(self, request: Request) -> Response:
        try:
            token = self._token(request, "rate")
        except TokenError as exc:
            return _token_refused(exc)
        assert token.score is not None
        payload: dict[str, object] = {"action_id": token.action_id, "score": token.score}
        key = f"{token.action_id}:{token.score}"
        detail = request.method == "POST"
        if detail:
            form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            payload |= _detail(form)
            key += f":detail:{_digest(form)}"
        await self.writer.put("email_rating", key, datetime.now(UTC), payload)
        return HTMLResponse(thanks_page(token.score, detail))

    async def unsubscribe(self, request: Request) -> Response:
        try:
            token = self._token(request, "unsubscribe")
        except TokenError as exc:
            return _token_refused(exc)
        if request.method == "GET":  # a page with a button: a link scanner unsubscribes nobody
            return HTMLResponse(unsubscribe_page(done=False))
        await self.writer.put(
            "unsubscribe", token.action_id, datetime.now(UTC), {"action_id": token.action_id}
        )
        return HTMLResponse(unsubscribe_page(done=True))

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

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
                Route("/webhooks/twilio/voice/{action_id}", self.voice, methods=twilio_post),
                Route(
                    "/webhooks/twilio/voice/{action_id}/gather", self.gather, methods=twilio_post
                ),
                Route("/webhooks/sendgrid/events", self.sendgrid_events, methods=["POST"]),
                Route("/r/{token}", self.rating, methods=["GET", "POST"]),
                Route("/unsubscribe/{token}", self.unsubscribe, methods=["GET", "POST"]),
                Route("/healthz", self.health, methods=["GET"]),
            ],
            exception_handlers={Forbidden: _forbidden},
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


def create_app(settings: Settings) -> Starlette:
    return FeedbackService(settings).app()


async def _forbidden(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("forbidden", status_code=403)


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


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]
