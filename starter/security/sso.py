"""Optional single sign-on: OpenID Connect Core 1.0, authorization code flow with PKCE (RFC 7636).

Configured by OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET (the redirect URI to register at
the identity provider is <PUBLIC_BASE_URL>/console/sso/callback). The provider's endpoints and
keys come from its discovery document (OpenID Connect Discovery 1.0), cached for an hour.

`begin` stores a login under way (state, nonce, PKCE verifier) keyed by a random cookie, so the
callback is accepted only in the browser that started it, once, within 10 minutes. `finish`
exchanges the code, checks the ID token's signature against the provider's keys (joserfc, the
JOSE library authlib builds on), its issuer, audience, expiry and nonce, and returns the e-mail
address, which must be verified by the provider. Who that person is here (an enabled console
user, and their role) is the caller's business: SSO never creates users.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import asyncpg
import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from core.settings import Settings

LOGIN_MINUTES = 10
HTTP_SECONDS = 10.0
_discovery: dict[str, tuple[float, "Provider"]] = {}


class SsoRefused(Exception):
    """The single sign-on did not prove who this is; the message is safe to show."""


@dataclass(frozen=True)
class Provider:
    """The identity provider's endpoints, from its discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def provider(settings: Settings) -> Provider:
    """The issuer's discovery document, cached for an hour. SsoRefused if it cannot be read."""
    issuer = (settings.oidc_issuer or "").rstrip("/")
    cached = _discovery.get(issuer)
    if cached and time.monotonic() - cached[0] < 3600:
        return cached[1]
    try:
        async with httpx.AsyncClient(timeout=HTTP_SECONDS) as client:
            response = await client.get(f"{issuer}/.well-known/openid-configuration")
            response.raise_for_status()
            doc = response.json()
        found = Provider(issuer=str(doc["issuer"]).rstrip("/"), authorization_endpoint=doc["authorization_endpoint"],
                         token_endpoint=doc["token_endpoint"], jwks_uri=doc["jwks_uri"],
                         userinfo_endpoint=doc.get("userinfo_endpoint"))
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise SsoRefused(f"the identity provider did not answer ({type(exc).__name__}); try again later") from None
    if found.issuer != issuer:
        raise SsoRefused("the identity provider names another issuer than OIDC_ISSUER")
    _discovery[issuer] = (time.monotonic(), found)
    return found


async def begin(pool: asyncpg.Pool, settings: Settings, redirect_uri: str, next_path: str) -> tuple[str, str]:
    """Start a login: (the cookie value binding it to this browser, the URL to send the browser to)."""
    idp = await provider(settings)
    cookie, state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(4))
    await pool.execute("DELETE FROM sso_logins WHERE created_at < now() - make_interval(mins => $1)", LOGIN_MINUTES)
    await pool.execute(
        "INSERT INTO sso_logins (cookie_hash, state, nonce, code_verifier, next_path) VALUES ($1, $2, $3, $4, $5)",
        _digest(cookie), state, nonce, verifier, next_path,
    )
    query = urlencode({
        "response_type": "code", "client_id": settings.oidc_client_id, "redirect_uri": redirect_uri,
        "scope": settings.oidc_scopes, "state": state, "nonce": nonce,
        "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256",
    })
    return cookie, f"{idp.authorization_endpoint}?{query}"


async def finish(pool: asyncpg.Pool, settings: Settings, cookie: str | None, state: str, code: str,
                 redirect_uri: str) -> tuple[str, str]:
    """Complete a login: (the verified e-mail address, lower-cased; the page to go to). Raises
    SsoRefused for a missing or stale login, a state mismatch, a refused code or a bad ID token."""
    if not cookie or not state or not code:
        raise SsoRefused("this sign-on did not start here or has expired; start again")
    row = await pool.fetchrow(
        "DELETE FROM sso_logins WHERE cookie_hash = $1 AND created_at > now() - make_interval(mins => $2)"
        " RETURNING state, nonce, code_verifier, next_path", _digest(cookie[:200]), LOGIN_MINUTES,
    )
    if row is None or not hmac.compare_digest(row["state"].encode(), state[:200].encode()):
        raise SsoRefused("this sign-on did not start here or has expired; start again")
    idp = await provider(settings)
    secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else ""
    try:
        async with httpx.AsyncClient(timeout=HTTP_SECONDS) as client:
            answer = await client.post(idp.token_endpoint, auth=(settings.oidc_client_id or "", secret), data={
                "grant_type": "authorization_code", "code": code[:2000], "redirect_uri": redirect_uri,
                "code_verifier": row["code_verifier"]})
            if answer.status_code != 200:
                raise SsoRefused(f"the identity provider refused the sign-on ({answer.status_code})")
            tokens = answer.json()
            keys = KeySet.import_key_set((await client.get(idp.jwks_uri)).raise_for_status().json())
            claims = _checked_claims(tokens["id_token"], keys, idp.issuer, settings.oidc_client_id or "", row["nonce"])
            if "email" not in claims and idp.userinfo_endpoint and tokens.get("access_token"):
                info = (await client.get(idp.userinfo_endpoint, headers={
                    "Authorization": f"Bearer {tokens['access_token']}"})).raise_for_status().json()
                if info.get("sub") == claims.get("sub"):
                    claims = {**info, **claims}
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise SsoRefused(f"the sign-on could not be completed ({type(exc).__name__}); try again") from None
    email = str(claims.get("email") or "").strip().lower()
    if not email or claims.get("email_verified") is not True:
        raise SsoRefused("the identity provider did not vouch for an e-mail address (email_verified)")
    return email, row["next_path"]


def _checked_claims(id_token: str, keys: KeySet, issuer: str, client_id: str, nonce: str) -> dict:
    """The ID token's claims, after its signature, iss, aud, exp and nonce (OIDC Core 3.1.3.7)."""
    try:
        token = jwt.decode(id_token, keys, algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"])
        jwt.JWTClaimsRegistry(
            leeway=60, iss={"essential": True, "value": issuer}, aud={"essential": True, "value": client_id},
            exp={"essential": True}, nonce={"essential": True, "value": nonce}, sub={"essential": True},
        ).validate(token.claims)
    except (JoseError, ValueError) as exc:
        raise SsoRefused(f"the identity provider's ID token was not accepted ({type(exc).__name__})") from None
    return dict(token.claims)
