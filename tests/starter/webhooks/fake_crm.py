"""A local stand-in for HubSpot's and Salesforce's REST APIs, following their documented read
endpoints, for the CRM lookups (starter/lookups.py):

- HubSpot `GET /crm/v3/objects/{type}/{id}?properties=a,b` -> {id, properties, createdAt,
  updatedAt, archived}; `GET /crm/v4/objects/{type}/{id}/associations/{toType}` -> {results:
  [{toObjectId, associationTypes: [{category, typeId, label}]}]}; 404 with HubSpot's error body.
- Salesforce `GET /services/data/vXX.X/sobjects/{SObject}/{id}?fields=A,B` -> {attributes, Id,
  fields...}; 404 `[{"errorCode": "NOT_FOUND", ...}]`.
- A bearer token is required (401 otherwise). `faults` is a queue of answers served before the
  real ones (429 with Retry-After, 5xx, a slow answer), and every request is recorded.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.conftest import free_port

TOKEN = "test-crm-token"


@dataclass
class Fault:
    status: int = 503
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class FakeCrm:
    hubspot: dict[tuple[str, str], dict] = field(default_factory=dict)       # (type, id) -> properties
    associations: dict[tuple[str, str], list[tuple[str, bool]]] = field(default_factory=dict)
    salesforce: dict[tuple[str, str], dict] = field(default_factory=dict)    # (SObject, id) -> fields
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[float, str, str]] = field(default_factory=list)    # (time, path, query)
    url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def guard(request: Request, call_next):
            self.requests.append((time.monotonic(), request.url.path, request.url.query))
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                return JSONResponse({"status": "error", "message": "Authentication credentials not found.",
                                     "category": "INVALID_AUTHENTICATION"}, status_code=401)
            if self.faults:
                fault = self.faults.pop(0)
                await asyncio.sleep(fault.delay)
                return JSONResponse({"status": "error", "message": "injected"}, status_code=fault.status,
                                    headers=fault.headers)
            return await call_next(request)

        @app.get("/crm/v3/objects/{object_type}/{object_id}")
        async def hubspot_object(object_type: str, object_id: str, properties: str = ""):
            found = self.hubspot.get((object_type, object_id))
            if found is None:
                return JSONResponse({"status": "error", "message": "Object not found.  objectId are usually numeric.",
                                     "category": "OBJECT_NOT_FOUND"}, status_code=404)
            wanted = [p for p in properties.split(",") if p]
            props = {p: found.get(p) for p in wanted} if wanted else dict(found)
            props["hs_object_id"] = object_id
            return {"id": object_id, "properties": props, "createdAt": "2025-06-02T14:03:11.482Z",
                    "updatedAt": "2025-06-02T14:23:11.000Z", "archived": False}

        @app.get("/crm/v4/objects/{object_type}/{object_id}/associations/{to_type}")
        async def hubspot_associations(object_type: str, object_id: str, to_type: str):
            found = self.associations.get((object_type, object_id), [])
            return {"results": [{"toObjectId": int(to), "associationTypes": [
                {"category": "HUBSPOT_DEFINED", "typeId": 5 if primary else 341, "label": "Primary" if primary else None}]}
                for to, primary in found]}

        @app.get("/services/data/{version}/sobjects/{sobject}/{record_id}")
        async def salesforce_record(version: str, sobject: str, record_id: str, fields: str = ""):
            found = self.salesforce.get((sobject, record_id))
            if found is None:
                return JSONResponse([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
                                    status_code=404)
            wanted = [f for f in fields.split(",") if f]
            record = {f: found.get(f) for f in wanted} if wanted else dict(found)
            return {"attributes": {"type": sobject, "url": f"/services/data/{version}/sobjects/{sobject}/{record_id}"},
                    **record, "Id": record_id}

        return app


async def serve(fake: FakeCrm):
    """Start the fake on a free port of 127.0.0.1; returns the server (stop with `stop`)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    fake.url = f"http://127.0.0.1:{port}"
    return server, task


async def stop(server, task) -> None:
    server.should_exit = True
    await task
