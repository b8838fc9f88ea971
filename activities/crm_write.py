"""Writing to the CRM: plays' tasks, e-mails sent, and our values on the account (HubSpot CRM v3,
Salesforce REST), once each whatever happens to the worker or the CRM.

HubSpot (HUBSPOT_ACCESS_TOKEN, a private app with crm.objects.companies/contacts read and write):
- a task: `POST /crm/v3/objects/tasks` with hs_timestamp (due), hs_task_subject, hs_task_body,
  hs_task_status NOT_STARTED, hs_task_priority (P0/P1 HIGH, P2 MEDIUM, P3 LOW), hs_task_type
  TODO, hubspot_owner_id (the CSM's HubSpot owner id from playbooks/crm/team.yaml, when known)
  and the idempotency property, associated with the company (HUBSPOT_DEFINED type 192);
  completed or cancelled: `PATCH /crm/v3/objects/tasks/{id}` hs_task_status COMPLETED / DEFERRED;
- an e-mail sent: `POST /crm/v3/objects/emails` (hs_timestamp, hs_email_direction EMAIL,
  hs_email_status SENT, hs_email_subject, hs_email_text, hs_email_headers), associated with the
  contacts (198) and the company (186);
- the account's values: `PATCH /crm/v3/objects/companies/{id}` with the mapped properties.
A create never happens twice: a retry after an attempt whose answer was lost (or a 5xx, which
may hide a create) first searches (`POST /crm/v3/objects/{type}/search`, EQ on the idempotency
property), waiting CRM_SEARCH_SETTLE_SECONDS after that attempt for HubSpot's index to catch
up; a 409 naming an existing id (a unique idempotency property) counts as found.

Salesforce (SALESFORCE_ACCESS_TOKEN at SALESFORCE_INSTANCE_URL, /services/data/<version>):
- a task: an upsert by the External ID field (`PATCH /sobjects/Task/<field>/<key>`: 201 created,
  200 or 204 already there) with Subject, Description, ActivityDate, Status Not Started,
  Priority (P0/P1 High, P2 Normal, P3 Low), WhatId (the Account), OwnerId (team.yaml); completed
  or cancelled: `PATCH /sobjects/Task/<id>` Status Completed / Deferred;
- an e-mail sent: an upserted Task with TaskSubtype Email, Status Completed, WhoId (the first
  recipient who is a Contact), WhatId;
- the account's values: `PATCH /sobjects/Account/<id>` (204).
Salesforce errors are lists of {errorCode, message}: UNABLE_TO_LOCK_ROW is retried, 403
REQUEST_LIMIT_EXCEEDED (the org's API limit) is retried after 15 minutes, an expired session
(401) slowly, other 4xx are refusals with Salesforce's words.

Both: 429 (its Retry-After) and 5xx are retried; a CRM outage delays, never loses.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from urllib.parse import quote

import httpx

from activities.delivery_http import SETUP_RETRY_SECONDS, Refused, Retry, Sent, call, common_retry, excerpt

HS_PRIORITY = {"P0": "HIGH", "P1": "HIGH", "P2": "MEDIUM", "P3": "LOW"}
SF_PRIORITY = {"P0": "High", "P1": "High", "P2": "Normal", "P3": "Low"}
HS_STATUS = {"completed": "COMPLETED", "cancelled": "DEFERRED"}
SF_STATUS = {"completed": "Completed", "cancelled": "Deferred"}
# HubSpot's default association types (HUBSPOT_DEFINED).
TASK_TO_COMPANY, EMAIL_TO_CONTACT, EMAIL_TO_COMPANY = 192, 198, 186
LIMIT_RETRY_SECONDS = 900.0


def record_key(our_key: str) -> str:
    """The idempotency value stored on the CRM record: short, URL-safe, the same on every retry."""
    return "cs-" + hashlib.sha256(our_key.encode()).hexdigest()[:40]


def _iso(value) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _date(value) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.date().isoformat()


def _json_body(response: httpx.Response) -> object:
    """The answer's JSON, or {} when it has no body or one that is not JSON (a proxy's HTML page)."""
    try:
        return response.json() if response.content else {}
    except ValueError:
        return {}


class HubSpotWriter:
    def __init__(self, http: httpx.AsyncClient, api_url: str, token: str, idempotency_property: str):
        self.http, self.api, self.prop = http, api_url.rstrip("/"), idempotency_property
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    async def _req(self, method: str, path: str, what: str, **kw) -> tuple[int, dict]:
        response = await call(self.http, method, f"{self.api}{path}", f"HubSpot {what}", headers=self.headers, **kw)
        common_retry(response, f"HubSpot {what}")
        code = response.status_code
        body = _json_body(response)
        message = str(body.get("message") or excerpt(response)) if isinstance(body, dict) else excerpt(response)
        if code in (200, 201, 204):
            return code, body if isinstance(body, dict) else {}
        if code in (401, 403):
            raise Retry(f"HubSpot {what}: {code} {message} (check HUBSPOT_ACCESS_TOKEN and its scopes)", code,
                        SETUP_RETRY_SECONDS, ours=True)
        if code == 409:
            return code, body if isinstance(body, dict) else {}
        raise Refused(f"HubSpot {what}: {code} {message}", code)

    async def search(self, object_type: str, key: str) -> str | None:
        """The id of the record carrying this idempotency value, or None."""
        _, body = await self._req("POST", f"/crm/v3/objects/{object_type}/search", f"{object_type} search", json={
            "filterGroups": [{"filters": [{"propertyName": self.prop, "operator": "EQ", "value": key}]}],
            "properties": [self.prop], "limit": 1})
        results = body.get("results") or []
        return str(results[0]["id"]) if results else None

    async def _create(self, object_type: str, key: str, body: dict, look_first: bool) -> Sent:
        if look_first:
            found = await self.search(object_type, key)
            if found:
                return Sent(remote_id=found, status_code=200, found=True, detail=f"already in HubSpot ({object_type})")
        code, answer = await self._req("POST", f"/crm/v3/objects/{object_type}", f"{object_type} create", json=body)
        if code == 409:  # a unique idempotency property: the record exists
            existing = re.search(r"Existing ID:\s*(\d+)", str(answer.get("message") or ""))
            if existing:
                return Sent(remote_id=existing.group(1), status_code=409, found=True, detail="already in HubSpot")
            raise Refused(f"HubSpot {object_type} create: 409 {answer.get('message')}", 409)
        return Sent(remote_id=str(answer.get("id")), status_code=code, detail=f"created {object_type}")

    async def create_task(self, p: dict, look_first: bool) -> Sent:
        props = {"hs_timestamp": _iso(p["due_at"]), "hs_task_subject": p["subject"][:500],
                 "hs_task_body": p.get("body") or "", "hs_task_status": "NOT_STARTED",
                 "hs_task_priority": HS_PRIORITY.get(p.get("priority") or "P2", "MEDIUM"), "hs_task_type": "TODO",
                 self.prop: p["key"]}
        if p.get("owner"):
            props["hubspot_owner_id"] = p["owner"]
        body = {"properties": props, "associations": [{"to": {"id": p["company_id"]}, "types": [
            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_COMPANY}]}]}
        return await self._create("tasks", p["key"], body, look_first)

    async def set_task_status(self, crm_id: str, status: str) -> Sent:
        code, _ = await self._req("PATCH", f"/crm/v3/objects/tasks/{quote(crm_id, safe='')}", "task update",
                                  json={"properties": {"hs_task_status": HS_STATUS[status]}})
        return Sent(remote_id=crm_id, status_code=code, detail=f"task {HS_STATUS[status]}")

    async def log_email(self, p: dict, look_first: bool) -> Sent:
        headers = {"from": {"email": p["from"]}, "to": [{"email": a} for a in p["to"]],
                   "cc": [{"email": a} for a in p.get("cc") or []]}
        props = {"hs_timestamp": _iso(p["sent_at"]), "hs_email_direction": "EMAIL", "hs_email_status": "SENT",
                 "hs_email_subject": p["subject"][:500], "hs_email_text": p.get("text") or "",
                 "hs_email_headers": json.dumps(headers), self.prop: p["key"]}
        associations = [{"to": {"id": c}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                                     "associationTypeId": EMAIL_TO_CONTACT}]} for c in p["contact_ids"]]
        associations.append({"to": {"id": p["company_id"]}, "types": [
            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": EMAIL_TO_COMPANY}]})
        return await self._create("emails", p["key"], {"properties": props, "associations": associations}, look_first)

    async def update_account(self, company_id: str, values: dict[str, str]) -> Sent:
        code, _ = await self._req("PATCH", f"/crm/v3/objects/companies/{quote(company_id, safe='')}",
                                  "company update", json={"properties": values})
        return Sent(remote_id=company_id, status_code=code, detail="company properties written")


class SalesforceWriter:
    def __init__(self, http: httpx.AsyncClient, instance_url: str, version: str, token: str, external_id_field: str):
        self.http, self.field = http, external_id_field
        self.base = f"{instance_url.rstrip('/')}/services/data/{version}"
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    async def _req(self, method: str, path: str, what: str, **kw) -> tuple[int, object]:
        response = await call(self.http, method, f"{self.base}{path}", f"Salesforce {what}", headers=self.headers, **kw)
        common_retry(response, f"Salesforce {what}")
        code = response.status_code
        body = _json_body(response)
        if code in (200, 201, 204):
            return code, body
        errors = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        error_code, message = str(first.get("errorCode") or ""), str(first.get("message") or excerpt(response))
        said = f"Salesforce {what}: {code} {error_code} {message}".replace("  ", " ")
        if error_code == "UNABLE_TO_LOCK_ROW":
            raise Retry(said, code)
        if code == 403 and error_code == "REQUEST_LIMIT_EXCEEDED":
            raise Retry(said + " (the org's API request limit)", code, LIMIT_RETRY_SECONDS, ours=True)
        if code in (401, 403):
            raise Retry(said + " (check SALESFORCE_ACCESS_TOKEN and the user's permissions)", code,
                        SETUP_RETRY_SECONDS, ours=True)
        raise Refused(said, code)

    async def _upsert_task(self, key: str, fields: dict) -> Sent:
        path = f"/sobjects/Task/{quote(self.field, safe='')}/{quote(key, safe='')}"
        code, body = await self._req("PATCH", path, "Task upsert", json=fields)
        crm_id = body.get("id") if isinstance(body, dict) else None
        if not crm_id:  # 204 (older API versions): read the Id back by the external id
            _, found = await self._req("GET", path, "Task read", params={"fields": "Id"})
            crm_id = found.get("Id") if isinstance(found, dict) else None
        created = code == 201 or (isinstance(body, dict) and body.get("created") is True)
        return Sent(remote_id=str(crm_id), status_code=code, found=not created,
                    detail="created Task" if created else "Task already in Salesforce (upserted)")

    async def create_task(self, p: dict, look_first: bool = False) -> Sent:
        fields = {"Subject": p["subject"][:255], "Description": (p.get("body") or "")[:32000],
                  "ActivityDate": _date(p["due_at"]), "Status": "Not Started",
                  "Priority": SF_PRIORITY.get(p.get("priority") or "P2", "Normal"), "WhatId": p["company_id"]}
        if p.get("owner"):
            fields["OwnerId"] = p["owner"]
        return await self._upsert_task(p["key"], fields)

    async def set_task_status(self, crm_id: str, status: str) -> Sent:
        code, _ = await self._req("PATCH", f"/sobjects/Task/{quote(crm_id, safe='')}", "Task update",
                                  json={"Status": SF_STATUS[status]})
        return Sent(remote_id=crm_id, status_code=code, detail=f"Task {SF_STATUS[status]}")

    async def log_email(self, p: dict, look_first: bool = False) -> Sent:
        lines = [f"From: {p['from']}", f"To: {', '.join(p['to'])}"]
        if p.get("cc"):
            lines.append(f"Cc: {', '.join(p['cc'])}")
        fields = {"Subject": f"Email: {p['subject']}"[:255], "TaskSubtype": "Email", "Status": "Completed",
                  "ActivityDate": _date(p["sent_at"]), "WhatId": p["company_id"],
                  "Description": ("\n".join(lines) + "\n\n" + (p.get("text") or ""))[:32000]}
        if p["contact_ids"]:
            fields["WhoId"] = p["contact_ids"][0]
        return await self._upsert_task(p["key"], fields)

    async def update_account(self, account_id: str, values: dict[str, object]) -> Sent:
        code, _ = await self._req("PATCH", f"/sobjects/Account/{quote(account_id, safe='')}", "Account update",
                                  json=values)
        return Sent(remote_id=account_id, status_code=code, detail="Account fields written")
