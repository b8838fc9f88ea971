"""Local stand-ins for Slack, Microsoft Teams and an outbound-webhook receiver, answering as their
documentation says, including the error answers.

- Slack incoming webhooks (`POST /hooks/<name>`): `200 ok` (text); 400 `invalid_payload` /
  `no_text` / `invalid_blocks` (Block Kit limits: header 150 characters, section text 3,000,
  field 2,000, at most 10 fields, button text 75, 50 blocks); 404 `no_service`; 410
  `channel_is_archived`; 429 with Retry-After (injected).
- Slack Web API (`POST /api/chat.postMessage`, `GET /api/conversations.history`): a bearer bot
  token (else `{"ok": false, "error": "not_authed" | "invalid_auth"}`), `channel_not_found`,
  `not_in_channel`, `is_archived`, `no_text`, `invalid_blocks`; 429 with Retry-After and
  `{"ok": false, "error": "ratelimited"}`; messages keep their metadata, and history returns
  it only with `include_all_metadata=true`, newest first, paginated by cursor.
- Teams incoming webhook (`POST /teams/<name>`): the Office 365 connector's `200 1`, its
  `200` with an error text when throttled, a Workflows URL's `202`; 400 for a body that is not a
  message with an Adaptive Card; 404 / 410.
- Webhook receiver (`POST /receive`): records every request; answers what it is told to.

`faults` (per fake) are answers served before the real ones. `hold`: requests wait on this
event after being recorded; `release(client_gone=True)` lets them go on knowing their client died,
and `hold_drops` then makes them vanish (the server saw the connection close before it committed). Every request is in `requests`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

BOT_TOKEN = "xoxb-test-bot-token"


@dataclass
class Fault:
    """An answer served instead of the real one: to the next request whose path starts with `path`
    (any, when None)."""

    status: int = 503
    headers: dict = field(default_factory=dict)
    body: object = None
    path: str | None = None


@dataclass
class Received:
    at: float
    method: str
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


class Base:
    def __init__(self):
        self.faults: list[Fault] = []
        self.requests: list[Received] = []
        self.hold: asyncio.Event | None = None
        self.hold_drops = False
        self.held = 0
        self.abandoned = False
        self.url = ""

    async def _record(self, request: Request) -> bytes:
        body = await request.body()
        self.requests.append(Received(time.monotonic(), request.method, request.url.path, dict(request.headers), body))
        return body

    async def _gate(self, request: Request, drops: bool | None = None) -> bool:
        """Wait while held; False when the request should vanish (the client left meanwhile and
        this endpoint drops what it did not commit: `drops`, else `hold_drops`)."""
        if self.hold is None:
            return True
        self.held += 1
        await self.hold.wait()
        return not ((self.hold_drops if drops is None else drops) and self.abandoned)

    def release(self, client_gone: bool) -> None:
        """Let the held requests go on; `client_gone`: their client died meanwhile (the test killed it),
        so an endpoint that drops what it did not commit drops them."""
        self.abandoned = client_gone
        if self.hold is not None:
            self.hold.set()
        self.hold = None

    def _fault(self, path: str = "") -> Response | None:
        f = next((f for f in self.faults if f.path is None or path.startswith(f.path)), None)
        if f is None:
            return None
        self.faults.remove(f)
        if isinstance(f.body, (dict, list)):
            return JSONResponse(f.body, status_code=f.status, headers=f.headers)
        return PlainTextResponse(str(f.body or ""), status_code=f.status, headers=f.headers)


def check_blocks(blocks) -> str | None:
    """The Block Kit limits Slack enforces (answering invalid_blocks)."""
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for b in blocks:
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "header":
            if b["text"]["type"] != "plain_text" or len(b["text"]["text"]) > 150:
                return "invalid_blocks"
        elif kind == "section":
            if "text" in b and len(b["text"]["text"]) > 3000:
                return "invalid_blocks"
            fields = b.get("fields") or []
            if len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                return "invalid_blocks"
            if "text" not in b and not fields:
                return "invalid_blocks"
        elif kind == "actions":
            for e in b.get("elements") or []:
                if e.get("type") != "button" or len(e["text"]["text"]) > 75 or not str(e.get("url", "")).startswith(
                        ("http://", "https://")):
                    return "invalid_blocks"
        elif kind == "context":
            if not b.get("elements"):
                return "invalid_blocks"
        else:
            return "invalid_blocks"
    return None


class FakeSlack(Base):
    """Incoming webhooks and the Web API of one workspace."""

    def __init__(self, hooks=("escalations", "cs-alerts"), channels=("C0CRITALRT", "C0ACMESHRD")):
        super().__init__()
        self.hooks = {name: [] for name in hooks}           # webhook name -> messages posted
        self.archived_hooks: set[str] = set()
        self.channels: dict[str, list[dict]] = {c: [] for c in channels}  # channel id -> messages
        self.not_member: set[str] = set()
        self.archived: set[str] = set()
        self._ts = itertools.count(1)

    def posted(self, channel: str) -> list[dict]:
        return self.channels.get(channel, [])

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hooks/{name}")
        async def incoming_webhook(name: str, request: Request):
            body = await self._record(request)
            fault = self._fault(request.url.path)
            if fault:
                return fault
            if not await self._gate(request):
                return PlainTextResponse("", status_code=499)
            if name not in self.hooks:
                return PlainTextResponse("no_service", status_code=404)
            if name in self.archived_hooks:
                return PlainTextResponse("channel_is_archived", status_code=410)
            try:
                message = json.loads(body)
            except ValueError:
                return PlainTextResponse("invalid_payload", status_code=400)
            if not message.get("text") and not message.get("blocks"):
                return PlainTextResponse("no_text", status_code=400)
            if "blocks" in message and (problem := check_blocks(message["blocks"])):
                return PlainTextResponse(problem, status_code=400)
            self.hooks[name].append(message)
            return PlainTextResponse("ok")

        @app.post("/api/chat.postMessage")
        async def post_message(request: Request):
            body = await self._record(request)
            fault = self._fault(request.url.path)
            if fault:
                return fault
            auth = request.headers.get("authorization", "")
            if not auth:
                return {"ok": False, "error": "not_authed"}
            if auth != f"Bearer {BOT_TOKEN}":
                return {"ok": False, "error": "invalid_auth"}
            message = json.loads(body)
            channel = message.get("channel")
            if channel not in self.channels:
                return {"ok": False, "error": "channel_not_found"}
            if channel in self.not_member:
                return {"ok": False, "error": "not_in_channel"}
            if channel in self.archived:
                return {"ok": False, "error": "is_archived"}
            if not message.get("text") and not message.get("blocks"):
                return {"ok": False, "error": "no_text"}
            if "blocks" in message and check_blocks(message["blocks"]):
                return {"ok": False, "error": "invalid_blocks"}
            if not await self._gate(request, drops=False):  # the Web API commits what it received
                return Response(status_code=499)
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            stored = {**message, "ts": ts, "type": "message"}
            self.channels[channel].append(stored)
            return {"ok": True, "channel": channel, "ts": ts, "message": {k: v for k, v in stored.items()
                                                                            if k != "channel"}}

        @app.get("/api/conversations.history")
        async def history(request: Request, channel: str = "", oldest: str = "0", limit: int = 100,
                          cursor: str = "", include_all_metadata: str = "false"):
            await self._record(request)
            fault = self._fault(request.url.path)
            if fault:
                return fault
            if request.headers.get("authorization") != f"Bearer {BOT_TOKEN}":
                return {"ok": False, "error": "invalid_auth"}
            if channel not in self.channels:
                return {"ok": False, "error": "channel_not_found"}
            newest_first = [m for m in reversed(self.channels[channel]) if float(m["ts"]) >= float(oldest)]
            start = int(cursor or 0)
            page = newest_first[start:start + limit]
            keep_meta = include_all_metadata == "true"
            messages = [{k: v for k, v in m.items() if k != "channel" and (keep_meta or k != "metadata")} for m in page]
            more = start + limit < len(newest_first)
            return {"ok": True, "messages": messages, "has_more": more,
                    "response_metadata": {"next_cursor": str(start + limit) if more else ""}}

        return app


class FakeTeams(Base):
    """Teams incoming webhooks (`/teams/<name>`): connector-style (200 "1") unless named in `workflows`
    (202)."""

    def __init__(self, hooks=("cs-leadership",), workflows=()):
        super().__init__()
        self.hooks = {name: [] for name in (*hooks, *workflows)}
        self.workflows = set(workflows)
        self.removed: set[str] = set()

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/teams/{name}")
        async def webhook(name: str, request: Request):
            body = await self._record(request)
            fault = self._fault(request.url.path)
            if fault:
                return fault
            if name not in self.hooks:
                return PlainTextResponse("Not Found", status_code=404)
            if name in self.removed:
                return PlainTextResponse("Gone", status_code=410)
            try:
                message = json.loads(body)
                cards = [a for a in message["attachments"]
                         if a["contentType"] == "application/vnd.microsoft.card.adaptive"]
                assert message["type"] == "message" and cards and cards[0]["content"]["type"] == "AdaptiveCard"
                assert isinstance(cards[0]["content"]["body"], list)
            except (ValueError, KeyError, TypeError, AssertionError, IndexError):
                return PlainTextResponse("Bad payload received by generic incoming webhook.", status_code=400)
            if not await self._gate(request):
                return PlainTextResponse("", status_code=499)
            self.hooks[name].append(message)
            if name in self.workflows:
                return Response(status_code=202)
            return PlainTextResponse("1")

        return app


THROTTLED = ("Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with "
             "ContextId tcid=0,server=msgapi-production-eus-azsc2-4-170,cv=deadbeef.0.")


class WebhookReceiver(Base):
    """A subscriber's endpoint: records what it gets; 204 unless told otherwise."""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/receive")
        async def receive(request: Request):
            await self._record(request)
            fault = self._fault(request.url.path)
            if fault:
                return fault
            if not await self._gate(request):
                return Response(status_code=499)
            return Response(status_code=204)

        return app
