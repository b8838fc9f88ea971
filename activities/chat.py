"""Posting to Slack and Microsoft Teams, as their documentation says each answers.

- Slack incoming webhook (POST the message to the webhook URL): `200 ok` is posted; 400
  `invalid_payload` / `invalid_blocks` / `no_text`, 403 `action_prohibited`, 404
  `channel_not_found` / `no_service`, 410 `channel_is_archived` are refusals; 429 (with
  `Retry-After`) and 5xx are retried. Slack keeps no idempotency key for webhooks: a worker that
  dies after Slack accepted a message and before the row is marked delivered posts it once more
  on the retry (the same window as the e-mail outbox's; README says so).
- Slack Web API `chat.postMessage` (bot token): HTTP 200 with `{"ok": true, "ts": ...}` or
  `{"ok": false, "error": ...}`; 429 with `Retry-After` when rate limited. Errors that no retry
  fixes (`channel_not_found`, `not_in_channel`, `is_archived`, `invalid_blocks`, `msg_too_long`,
  ...) are refusals; token problems (`invalid_auth`, `token_revoked`, `missing_scope`, ...) are
  retried slowly, so that fixing the token delivers; `ratelimited`, `internal_error`,
  `fatal_error`, `service_unavailable`, `request_timeout` are retried. Every message carries its
  delivery key in Slack message metadata, so a retry after an attempt whose answer was lost
  first reads the channel's recent history (`conversations.history`, `include_all_metadata`)
  and finds a message already posted instead of posting it twice.
- Teams incoming webhook (Office 365 connector) answers `200` with body `1`; it is known to answer
  200 with an error text when Teams throttles it ("Microsoft Teams endpoint returned HTTP error
  429"): retried. A Workflows webhook ("When a Teams webhook request is received") answers 202.
  400 (a bad card), 404 / 410 (the webhook was removed) and 413 (too large) are refusals; 429
  with `Retry-After` and 5xx are retried. No idempotency either: the same window as Slack's
  incoming webhooks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx

from activities.delivery_http import (
    SETUP_RETRY_SECONDS, Refused, Retry, Sent, call, common_retry, excerpt, retry_after_seconds,
)

SLACK_REFUSED = {"channel_not_found", "not_in_channel", "is_archived", "msg_too_long", "no_text", "invalid_blocks",
                 "invalid_blocks_format", "invalid_arguments", "invalid_metadata_format", "invalid_metadata_schema",
                 "restricted_action", "restricted_action_read_only_channel", "restricted_action_thread_only_channel",
                 "restricted_action_non_threadable_channel", "too_many_attachments", "cannot_reply_to_message",
                 "duplicate_channel_not_found", "channel_type_not_supported", "messages_tab_disabled",
                 "invalid_channel", "message_limit_exceeded", "slack_connect_file_link_sharing_blocked",
                 "team_access_not_granted", "as_user_not_supported", "invalid_auth_for_user"}
SLACK_SETUP = {"not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired", "no_permission",
               "missing_scope", "org_login_required", "ekm_access_denied", "not_allowed_token_type",
               "access_denied", "team_not_found", "app_missing_action_url"}
SLACK_WEBHOOK_REFUSED = {400, 403, 404, 410}
METADATA_EVENT = "cs_playbook_notice"


async def post_slack_webhook(http: httpx.AsyncClient, url: str, body: dict) -> Sent:
    """POST a message to a Slack incoming webhook; raises Retry or Refused."""
    response = await call(http, "POST", url, "Slack incoming webhook", json=body)
    common_retry(response, "Slack incoming webhook")
    text = excerpt(response)
    if response.status_code == 200:
        return Sent(status_code=200, detail=text)
    if response.status_code in SLACK_WEBHOOK_REFUSED:
        raise Refused(f"Slack refused the message: {response.status_code} {text}", response.status_code)
    raise Retry(f"Slack incoming webhook: unexpected {response.status_code} {text}", response.status_code)


class SlackApi:
    """chat.postMessage and, after a lost answer, conversations.history (Slack Web API)."""

    def __init__(self, http: httpx.AsyncClient, api_url: str, token: str):
        self.http, self.api = http, api_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}

    async def _api(self, method: str, http_method: str, **kw) -> dict:
        response = await call(self.http, http_method, f"{self.api}/{method}", f"Slack {method}",
                              headers=self.headers, **kw)
        common_retry(response, f"Slack {method}")
        if response.status_code != 200:
            raise Retry(f"Slack {method}: unexpected {response.status_code} {excerpt(response)}",
                        response.status_code)
        try:
            answer = response.json()
        except ValueError:
            raise Retry(f"Slack {method}: the answer is not JSON", 200) from None
        if answer.get("ok"):
            return answer
        error = str(answer.get("error") or "unknown_error")
        if error == "ratelimited":
            raise Retry(f"Slack {method}: ratelimited", 200, retry_after_seconds(response.headers.get("Retry-After")))
        if error in SLACK_SETUP:
            raise Retry(f"Slack {method}: {error} (check SLACK_BOT_TOKEN and its scopes)", 200,
                        SETUP_RETRY_SECONDS, ours=True)
        if error in SLACK_REFUSED:
            raise Refused(f"Slack {method}: {error}", 200)
        raise Retry(f"Slack {method}: {error}", 200)

    async def find(self, channel: str, key: str, since: datetime) -> str | None:
        """The ts of a message carrying this delivery key in the channel since `since` (pages of 200,
        at most 5), or None."""
        oldest = f"{(since - timedelta(minutes=2)).timestamp():.6f}"
        cursor = None
        for _ in range(5):
            params = {"channel": channel, "oldest": oldest, "inclusive": "true", "limit": "200",
                      "include_all_metadata": "true", **({"cursor": cursor} if cursor else {})}
            answer = await self._api("conversations.history", "GET", params=params)
            for m in answer.get("messages") or []:
                meta = m.get("metadata") or {}
                if meta.get("event_type") == METADATA_EVENT and (meta.get("event_payload") or {}).get("key") == key:
                    return str(m.get("ts"))
            cursor = ((answer.get("response_metadata") or {}).get("next_cursor")) or None
            if not answer.get("has_more") or not cursor:
                return None
        return None

    async def post(self, body: dict, key: str, maybe_sent_since: datetime | None) -> Sent:
        """Post once: after an attempt whose answer was lost (`maybe_sent_since`: when it started),
        look for it first."""
        if maybe_sent_since is not None:
            ts = await self.find(body["channel"], key, maybe_sent_since)
            if ts:
                return Sent(remote_id=ts, status_code=200, found=True,
                            detail="already posted (found by its metadata in the channel's history)")
        message = {**body, "metadata": {"event_type": METADATA_EVENT, "event_payload": {"key": key}}}
        answer = await self._api("chat.postMessage", "POST", json=message)
        return Sent(remote_id=str(answer.get("ts")), status_code=200, detail=f"posted in {answer.get('channel')}")


async def post_teams(http: httpx.AsyncClient, url: str, body: dict) -> Sent:
    """POST an Adaptive Card message to a Teams incoming webhook or Workflows URL."""
    response = await call(http, "POST", url, "Teams webhook", json=body)
    common_retry(response, "Teams webhook")
    text = excerpt(response)
    code = response.status_code
    if code in (200, 202):
        if code == 200 and text not in ("", "1") and ("error" in text.lower() or "429" in text):
            # The connector's quirk: Teams throttled or failed behind a 200.
            raise Retry(f"Teams webhook: 200 with an error: {text}", code,
                        retry_after_seconds(response.headers.get("Retry-After")))
        return Sent(status_code=code, detail=text or "accepted")
    if code in (400, 401, 403, 404, 410, 413):
        raise Refused(f"Teams refused the message: {code} {text}", code)
    raise Retry(f"Teams webhook: unexpected {code} {text}", code)
