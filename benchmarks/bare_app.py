"""The baseline for the service benchmark: the same framework and server, answering the same
route with a fixed TwiML reply, without verifying, parsing or storing anything."""

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = "<?xml version='1.0' encoding='UTF-8'?><Response><Message>Thanks</Message></Response>"


async def sms(request: Request) -> Response:
    await request.body()
    return Response(ANSWER, media_type="application/xml")


app = Starlette(routes=[Route("/webhooks/twilio/sms", sms, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
