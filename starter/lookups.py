"""Asking the CRM what a webhook did not say (which company a deal belongs to, a company's name).

A small client for the documented read endpoints, off unless a token is configured:

- HubSpot (HUBSPOT_ACCESS_TOKEN, base HUBSPOT_API_URL): `GET /crm/v3/objects/{type}/{id}?properties=...`
  (an object's properties) and `GET /crm/v4/objects/{type}/{id}/associations/{toType}` (its
  associations; label "Primary" marks the primary company).
- Salesforce REST (SALESFORCE_ACCESS_TOKEN, SALESFORCE_INSTANCE_URL): `GET
  /services/data/{SALESFORCE_API_VERSION}/sobjects/{SObject}/{id}?fields=...`.

Every call has a timeout (CRM_LOOKUP_TIMEOUT_SECONDS) and is tried up to CRM_LOOKUP_ATTEMPTS times:
a timeout, a connection error or a 5xx backs off exponentially (0.5 s, 1 s, 2 s, ... with jitter);
a 429 waits its `Retry-After` (seconds or an HTTP date), unless that is longer than
CRM_LOOKUP_MAX_WAIT_SECONDS. A 404 is an answer (None: the CRM has no such record); another 4xx
(a bad token, a missing scope) is `LookupFailed` at once, not retried. What gives up raises
`LookupFailed`: the caller keeps the event waiting and tries again later. The token is never logged.
"""

from __future__ import annotations

import asyncio
import random
from urllib.parse import quote

import httpx

from activities.delivery_http import retry_after_seconds
from core.logs import get_logger
from core.settings import Settings

log = get_logger("lookups")


class LookupFailed(Exception):
    """The CRM did not answer usefully (after the retries): the reason, without the token."""


class CrmLookups:
    """The lookups this configuration allows; `enabled(source)` says which."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self.transport = transport

    def enabled(self, source: str) -> bool:
        s = self.settings
        if source == "hubspot":
            return bool(s.hubspot_access_token and s.hubspot_access_token.get_secret_value())
        if source == "salesforce":
            return bool(s.salesforce_access_token and s.salesforce_access_token.get_secret_value()
                        and s.salesforce_instance_url)
        return False

    async def _get(self, url: str, token: str, params: dict | None = None) -> dict | None:
        s = self.settings
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        delay = 0.5
        last = ""
        async with httpx.AsyncClient(timeout=s.crm_lookup_timeout_seconds, transport=self.transport) as http:
            for attempt in range(1, s.crm_lookup_attempts + 1):
                wait = delay * (1 + random.random() / 2)
                try:
                    response = await http.get(url, params=params, headers=headers)
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    last = f"{type(exc).__name__} calling {httpx.URL(url).host}"
                else:
                    if response.status_code == 200:
                        try:
                            return response.json()
                        except ValueError:
                            raise LookupFailed(f"{httpx.URL(url).path}: the answer is not JSON") from None
                    if response.status_code == 404:
                        return None
                    if response.status_code == 429:
                        after = retry_after_seconds(response.headers.get("Retry-After"))
                        if after is not None and after > s.crm_lookup_max_wait_seconds:
                            raise LookupFailed(f"rate limited: Retry-After {after:.0f} s is longer than "
                                               f"{s.crm_lookup_max_wait_seconds:.0f} s")
                        wait = after if after is not None else wait
                        last = "429 Too Many Requests"
                    elif response.status_code >= 500:
                        last = f"{response.status_code} from {httpx.URL(url).host}"
                    else:
                        raise LookupFailed(f"{httpx.URL(url).path}: {response.status_code} "
                                           f"{response.reason_phrase} (check the token and its scopes)")
                log.info("lookup.retry", url=str(httpx.URL(url).copy_with(query=None)), attempt=attempt, reason=last,
                         wait_seconds=round(wait, 2))
                if attempt < s.crm_lookup_attempts:
                    await asyncio.sleep(wait)
                    delay *= 2
        raise LookupFailed(f"gave up after {s.crm_lookup_attempts} attempts: {last}")

    # -- HubSpot ----------------------------------------------------------------------------
    async def hubspot_object(self, object_type: str, object_id: str,
                             properties: list[str]) -> dict[str, str | None] | None:
        """An object's properties (strings, as HubSpot keeps them), or None when there is none.
        `object_type`: companies, contacts, deals, tickets."""
        url = f"{self.settings.hubspot_api_url.rstrip('/')}/crm/v3/objects/{object_type}/{quote(object_id, safe='')}"
        token = self.settings.hubspot_access_token.get_secret_value()
        data = await self._get(url, token, {"properties": ",".join(sorted(set(properties))), "archived": "false"})
        if data is None:
            return None
        props = data.get("properties")
        if not isinstance(props, dict):
            raise LookupFailed(f"{object_type}/{object_id}: the answer has no properties")
        return {str(k): (None if v is None else str(v)) for k, v in props.items()}

    async def hubspot_associations(self, object_type: str, object_id: str, to_type: str) -> list[tuple[str, bool]]:
        """(id, primary?) of the `to_type` objects associated with the object, primary first
        (v4 associations; follows `paging.next.after`, at most 10 pages)."""
        base = f"{self.settings.hubspot_api_url.rstrip('/')}/crm/v4/objects/{object_type}/{quote(object_id, safe='')}"
        token = self.settings.hubspot_access_token.get_secret_value()
        found: list[tuple[str, bool]] = []
        after = None
        for _ in range(10):
            params = {"limit": "500", **({"after": after} if after else {})}
            data = await self._get(f"{base}/associations/{to_type}", token, params)
            if data is None:
                return []
            for r in data.get("results") or []:
                types = r.get("associationTypes") or []
                primary = any(str(t.get("label") or "").lower() == "primary" for t in types)
                found.append((str(r.get("toObjectId")), primary))
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        return sorted(found, key=lambda f: not f[1])

    # -- Salesforce ---------------------------------------------------------------------------
    async def salesforce_record(self, sobject: str, record_id: str, fields: list[str]) -> dict[str, str | None] | None:
        """A record's fields as text (as an Outbound Message would carry them), or None."""
        s = self.settings
        url = (f"{s.salesforce_instance_url.rstrip('/')}/services/data/{s.salesforce_api_version}/sobjects/"
               f"{quote(sobject, safe='')}/{quote(record_id, safe='')}")
        data = await self._get(url, s.salesforce_access_token.get_secret_value(),
                               {"fields": ",".join(sorted(set(fields)))})
        if data is None:
            return None
        out: dict[str, str | None] = {}
        for k, v in data.items():
            if k == "attributes" or isinstance(v, (dict, list)):
                continue
            out[str(k)] = None if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
        return out
