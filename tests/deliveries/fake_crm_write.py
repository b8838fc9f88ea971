"""Local stand-ins for HubSpot's CRM v3 and Salesforce's REST write endpoints, as documented,
including their error answers, for CRM write-back.

HubSpot (`/crm/v3/objects/{tasks|emails|companies}`): a bearer token (401
INVALID_AUTHENTICATION otherwise); create (201, `{id, properties, createdAt, updatedAt,
archived}`), with associations to existing records only; PATCH (200; 404 OBJECT_NOT_FOUND);
search (`POST .../search`, EQ filters) that, like HubSpot's index, shows a new record only
`search_lag` seconds after it was created; properties must exist on the object (400
VALIDATION_ERROR, PROPERTY_DOESNT_EXIST) and enumerations take their values
(hs_task_status, hs_task_priority). 429 `{"errorType": "RATE_LIMIT", "policyName": ...}`.

Salesforce (`/services/data/vXX.X/sobjects/...`): upsert by external id (`PATCH
/sobjects/Task/<field>/<value>`: 201 `{id, success, errors, created: true}` or 200 `created:
false`; 404 NOT_FOUND for a field that is not an external id), PATCH by id (204; 404), GET by
external id; unknown fields 400 INVALID_FIELD, a bad picklist value 400
INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST, a WhatId that is no Account 400
FIELD_INTEGRITY_EXCEPTION; 401 INVALID_SESSION_ID; 403 REQUEST_LIMIT_EXCEEDED (injected).

`outage`: while set, every request is answered by cycling through these faults (429 with
Retry-After, 500, ...) and counted in `refused`; `faults`: one-off answers first; `hold` /
`slow`: the record is written, then the answer waits (an answer lost to a timeout).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from datetime import datetime, timezone

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from starter.book.values import salesforce_id
from tests.deliveries.fakes import Base, Fault

TOKEN = "test-crm-token"
HS_TASK_PROPS = {"hs_timestamp", "hs_task_subject", "hs_task_body", "hs_task_status", "hs_task_priority",
                 "hs_task_type", "hubspot_owner_id"}
HS_EMAIL_PROPS = {"hs_timestamp", "hs_email_direction", "hs_email_status", "hs_email_subject", "hs_email_text",
                  "hs_email_headers", "hubspot_owner_id"}
HS_ENUMS = {"hs_task_status": {"NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"},
            "hs_task_priority": {"NONE", "LOW", "MEDIUM", "HIGH"}, "hs_task_type": {"TODO", "CALL", "EMAIL"}}
SF_TASK_FIELDS = {"Subject", "Description", "ActivityDate", "Status", "Priority", "WhatId", "WhoId", "OwnerId",
                  "TaskSubtype"}
SF_STATUS = {"Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"}


class Outage(Base):
    def __init__(self):
        super().__init__()
        self.outage: list[Fault] | None = None
        self.refused = 0
        self._cycle = None
        self.slow: list[float] = []  # the next creates' answers come this many seconds after the record is written

    def _seen(self, request: Request) -> None:
        """Every request, in order (its body is read by its handler)."""
        from tests.deliveries.fakes import Received

        self.requests.append(Received(time.monotonic(), request.method, request.url.path, dict(request.headers), b""))

    def start_outage(self, faults: list[Fault]) -> None:
        self.outage, self._cycle = faults, itertools.cycle(faults)

    def recover(self) -> None:
        self.outage = None

    def _down(self, path: str) -> Response | None:
        if self.outage:
            self.refused += 1
            f = next(self._cycle)
            return JSONResponse(f.body if f.body is not None else {"status": "error", "message": "outage"},
                                status_code=f.status, headers=f.headers)
        return self._fault(path)

    async def _answer(self, response: Response) -> Response:
        if self.slow:
            await asyncio.sleep(self.slow.pop(0))
        return response


class FakeHubSpot(Outage):
    def __init__(self, companies=("9876543210",), contacts=("501",), custom=("cs_playbook_key",),
                 company_props=("cs_risk_band", "cs_risk_score", "cs_health_score", "cs_play_phase")):
        super().__init__()
        self.objects: dict[str, dict[str, dict]] = {"tasks": {}, "emails": {},
                                                    "companies": {c: {} for c in companies},
                                                    "contacts": {c: {} for c in contacts}}
        self.associations: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
        self.created_at: dict[tuple[str, str], float] = {}
        self.custom = set(custom)
        self.company_props = set(company_props)
        self.search_lag = 0.0
        self._ids = itertools.count(70_000_000_001)

    def allowed(self, object_type: str) -> set[str]:
        base = {"tasks": HS_TASK_PROPS, "emails": HS_EMAIL_PROPS, "companies": self.company_props | {"name"},
                "contacts": {"email"}}[object_type]
        return base | (self.custom if object_type in ("tasks", "emails") else set())

    def _invalid(self, object_type: str, props: dict) -> JSONResponse | None:
        allowed = self.allowed(object_type)
        for name, value in props.items():
            if name not in allowed:
                return _hs_error(400, "VALIDATION_ERROR", f'Property values were not valid: [{{"isValid":false,'
                                 f'"message":"Property \\"{name}\\" does not exist","error":"PROPERTY_DOESNT_EXIST",'
                                 f'"name":"{name}"}}]')
            if name in HS_ENUMS and value not in HS_ENUMS[name]:
                return _hs_error(400, "VALIDATION_ERROR", f'Property values were not valid: [{{"isValid":false,'
                                 f'"message":"{value} was not one of the allowed options","error":"INVALID_OPTION",'
                                 f'"name":"{name}"}}]')
        return None

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def guard(request: Request, call_next):
            self._seen(request)
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                return _hs_error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found.")
            down = self._down(request.url.path)
            if down is not None:
                return down
            return await call_next(request)

        @app.post("/crm/v3/objects/{object_type}/search")
        async def search(object_type: str, request: Request):
            body = json.loads(await request.body())
            filters = body["filterGroups"][0]["filters"]
            now = time.monotonic()
            found = [(oid, o) for oid, o in self.objects.get(object_type, {}).items()
                     if now - self.created_at.get((object_type, oid), 0) >= self.search_lag
                     and all(f["operator"] == "EQ" and o.get(f["propertyName"]) == f["value"] for f in filters)]
            return {"total": len(found), "results": [_hs_object(oid, o) for oid, o in found[:body.get("limit", 10)]]}

        @app.post("/crm/v3/objects/{object_type}")
        async def create(object_type: str, request: Request):
            if object_type not in ("tasks", "emails"):
                return _hs_error(404, "OBJECT_NOT_FOUND", "Unknown object type")
            body = json.loads(await request.body())
            props = body.get("properties") or {}
            if (bad := self._invalid(object_type, props)) is not None:
                return bad
            if "hs_timestamp" not in props:
                return _hs_error(400, "VALIDATION_ERROR", "Property values were not valid: hs_timestamp is required")
            for a in body.get("associations") or []:
                to = str(a["to"]["id"])
                if to not in self.objects["companies"] and to not in self.objects["contacts"]:
                    return _hs_error(400, "VALIDATION_ERROR", f"One or more associations are invalid: {to}")
            oid = str(next(self._ids))
            self.objects[object_type][oid] = dict(props)
            self.created_at[(object_type, oid)] = time.monotonic()
            self.associations[(object_type, oid)] = [
                (str(a["to"]["id"]), a["types"][0]["associationCategory"], a["types"][0]["associationTypeId"])
                for a in body.get("associations") or []]
            if not await self._gate(request):
                return Response(status_code=499)
            return await self._answer(JSONResponse(_hs_object(oid, props), status_code=201))

        @app.patch("/crm/v3/objects/{object_type}/{object_id}")
        async def update(object_type: str, object_id: str, request: Request):
            store = self.objects.get(object_type, {})
            if object_id not in store:
                return _hs_error(404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.")
            props = json.loads(await request.body()).get("properties") or {}
            if (bad := self._invalid(object_type, props)) is not None:
                return bad
            store[object_id].update(props)
            return _hs_object(object_id, store[object_id])

        return app


def _hs_object(oid: str, props: dict) -> dict:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return {"id": oid, "properties": {**props, "hs_object_id": oid}, "createdAt": now, "updatedAt": now,
            "archived": False}


def _hs_error(status: int, category: str, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message, "correlationId": "3b2f5d1e-8e0c-4d3f-9b0e-1c2d3e4f5a6b",
                         "category": category}, status_code=status)


def hs_rate_limited(retry_after: int = 1) -> Fault:
    return Fault(429, {"Retry-After": str(retry_after)}, {
        "status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT",
        "correlationId": "c0ffee00-0000-4000-8000-000000000000", "policyName": "SECONDLY"})


class FakeSalesforce(Outage):
    def __init__(self, accounts=("0015g00000XyZ12AAB",), contacts=("0035g00000AbCdEAAZ",),
                 external_id="CS_Playbook_Key__c",
                 account_fields=("CS_Risk_Band__c", "CS_Risk_Score__c", "CS_Health_Score__c", "CS_Play_Phase__c")):
        super().__init__()
        self.accounts: dict[str, dict] = {a: {} for a in accounts}
        self.contacts = set(contacts)
        self.tasks: dict[str, dict] = {}
        self.external_id = external_id
        self.account_fields = set(account_fields) | {"Name"}
        self._ids = itertools.count(1)

    def by_key(self, value: str) -> tuple[str, dict] | None:
        return next(((tid, t) for tid, t in self.tasks.items() if t.get(self.external_id) == value), None)

    def _task_invalid(self, fields: dict) -> JSONResponse | None:
        for name, value in fields.items():
            if name not in SF_TASK_FIELDS:
                return _sf_error(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type Task")
            if name == "Status" and value not in SF_STATUS:
                return _sf_error(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", f"Status: bad value for restricted "
                                 f"picklist field: {value}")
        if "WhatId" in fields and fields["WhatId"] not in self.accounts:
            return _sf_error(400, "FIELD_INTEGRITY_EXCEPTION", "Related To ID: id value of incorrect type")
        if "WhoId" in fields and fields["WhoId"] not in self.contacts:
            return _sf_error(400, "FIELD_INTEGRITY_EXCEPTION", "Name ID: id value of incorrect type")
        return None

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def guard(request: Request, call_next):
            self._seen(request)
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                return _sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
            down = self._down(request.url.path)
            if down is not None:
                return down
            return await call_next(request)

        @app.patch("/services/data/{version}/sobjects/Task/{field}/{value}")
        async def upsert(version: str, field: str, value: str, request: Request):
            if field != self.external_id:
                return _sf_error(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: "
                                 f"{field}")
            fields = json.loads(await request.body())
            if (bad := self._task_invalid(fields)) is not None:
                return bad
            existing = self.by_key(value)
            if existing:
                existing[1].update(fields)
                return JSONResponse({"id": existing[0], "success": True, "errors": [], "created": False})
            tid = salesforce_id(f"00T5g{next(self._ids):010d}")  # 18 characters, as the API answers
            self.tasks[tid] = {**fields, self.external_id: value}
            if not await self._gate(request):
                return Response(status_code=499)
            return await self._answer(JSONResponse({"id": tid, "success": True, "errors": [], "created": True},
                                                   status_code=201))

        @app.get("/services/data/{version}/sobjects/Task/{field}/{value}")
        async def read(version: str, field: str, value: str):
            found = self.by_key(value)
            if found is None:
                return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")
            return {"attributes": {"type": "Task"}, "Id": found[0]}

        @app.patch("/services/data/{version}/sobjects/{sobject}/{record_id}")
        async def update(version: str, sobject: str, record_id: str, request: Request):
            fields = json.loads(await request.body())
            if sobject == "Task":
                if record_id not in self.tasks:
                    return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")
                if (bad := self._task_invalid(fields)) is not None:
                    return bad
                self.tasks[record_id].update(fields)
                return Response(status_code=204)
            if sobject == "Account":
                if record_id not in self.accounts:
                    return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")
                for name in fields:
                    if name not in self.account_fields:
                        return _sf_error(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type Account")
                self.accounts[record_id].update(fields)
                return Response(status_code=204)
            return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")

        return app


def _sf_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse([{"message": message, "errorCode": code, "fields": []}], status_code=status)


def sf_limit_exceeded() -> Fault:
    return Fault(403, {}, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
