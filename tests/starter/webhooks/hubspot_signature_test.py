"""HubSpot's request signatures: HubSpot's published vectors for v1, v2 and v3, the v3 URI rule
(only some escapes decoded before signing), and each version accepted or refused over HTTP."""

from __future__ import annotations

import json

import pytest

from starter.adapters.hubspot_signature import sign, sign_v1, sign_v2, v3_uri
from tests.starter.webhooks.vendors import REAL, hs, hubspot_headers

VECTORS = json.loads((REAL / "hubspot" / "webhooks" / "signature_vectors_official.json").read_text())


def test_hubspots_official_vectors():
    v1, v2, v3 = VECTORS["v1"], VECTORS["v2_get_no_body"], VECTORS["v3"]
    assert sign_v1(v1["secret"], v1["body"].encode()) == v1["expected"]
    assert sign_v2(v2["secret"], v2["method"], v2["uri"], b"") == v2["expected"]
    assert sign(v3["secret"], v3["method"], v3["uri"], v3["body"].encode(), v3["timestamp"]) == v3["expected"]


@pytest.mark.parametrize(("sent", "signed"), [
    ("https://example.com/webhooks/hubspot?redirect=https%3A%2F%2Fa.example%2Fx%40y",
     "https://example.com/webhooks/hubspot?redirect=https://a.example/x@y"),
    ("https://example.com/h?q=%21%24%27%28%29%2a%2c%3b%3f", "https://example.com/h?q=!$'()*,;?"),
    # Every other escape stays as sent (a space, a percent sign, a non-ASCII letter).
    ("https://example.com/h?name=M%C3%BCller%20%26%20S%C3%B6hne&p=100%25",
     "https://example.com/h?name=M%C3%BCller%20%26%20S%C3%B6hne&p=100%25"),
    ("https://example.com/plain", "https://example.com/plain"),
])
def test_the_v3_uri_rule(sent, signed):
    assert v3_uri(sent) == signed


DELIVERY = [hs("contact.creation", 51237718823, changeFlag="CREATED")]
BODY = json.dumps(DELIVERY).encode()
QUERY_URL = "/webhooks/hubspot?tenant=acme%3Aeu&back=https%3A%2F%2Fapp.example%2Fhs%40x&space=a%20b"


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
async def test_each_signature_version_is_accepted_on_a_url_with_escapes(env, http, pool, version):
    uri = "http://test" + QUERY_URL
    response = await http.post(QUERY_URL, content=BODY, headers=hubspot_headers(BODY, version=version, uri=uri))
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["outcome"] == "waiting: contact 51237718823: its company is not known yet"


async def test_a_signature_over_the_raw_url_is_refused(env, http, pool):
    # What the product used to check, and what HubSpot never sends: the escapes not decoded.
    from starter.adapters.hubspot_signature import SIGNATURE, TIMESTAMP
    import base64
    import hashlib
    import hmac
    import time

    timestamp = str(int(time.time() * 1000))
    raw = b"POST" + ("http://test" + QUERY_URL).encode() + BODY + timestamp.encode()
    wrong = base64.b64encode(hmac.new(b"local-demo-secret", raw, hashlib.sha256).digest()).decode()
    response = await http.post(QUERY_URL, content=BODY, headers={SIGNATURE: wrong, TIMESTAMP: timestamp})
    assert response.status_code == 401 and response.json()["detail"] == "bad signature"
    assert await pool.fetchval("SELECT count(*) FROM crm_events") == 0


async def test_public_base_url_is_the_url_hubspot_signed(env, http, pool, settings):
    settings.public_base_url = "https://cs.example.com/"
    try:
        uri = "https://cs.example.com" + QUERY_URL
        response = await http.post(QUERY_URL, content=BODY, headers=hubspot_headers(BODY, uri=uri))
        assert response.status_code == 200, response.text
    finally:
        settings.public_base_url = None


async def test_versions_can_be_limited_to_v3(env, http, pool, settings):
    settings.hubspot_signature_versions = "v3"
    try:
        response = await http.post("/webhooks/hubspot", content=BODY, headers=hubspot_headers(BODY, version="v1"))
        assert response.status_code == 401
        assert "signature v1 is not accepted here" in response.json()["detail"]
    finally:
        settings.hubspot_signature_versions = "v1,v2,v3"
