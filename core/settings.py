"""Configuration from the environment (and an optional `.env`).

Every knob that differs between a laptop and production lives here, so
scaling out is configuration: point TEMPORAL_ADDRESS at a cluster or
Temporal Cloud, DATABASE_URL at managed PostgreSQL, SMTP_* at a relay.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_tls_cert: Path | None = Field(None, description="client certificate (mTLS)")
    temporal_tls_key: Path | None = Field(None, description="client private key (mTLS)")
    temporal_tls_ca: Path | None = Field(None, description="server root CA, if not a public one")
    temporal_api_key: SecretStr | None = Field(None, description="Temporal Cloud API key")
    temporal_ui_url: str = "http://localhost:8233"
    task_queue: str = "cs-playbooks"
    # Off only where the server cannot index our attributes: the Java
    # time-skipping test server knows a fixed list of test-only names.
    search_attributes: bool = True

    # None means the embedded PostgreSQL under DATA_DIR/pg, started by ./run.sh
    database_url: str | None = None
    database_name: str = "playbooks"
    db_pool_max: int = 10
    # No caller waits for ever: a connection not free within this many seconds is an error (the HTTP
    # service answers 503 with Retry-After), and PostgreSQL cancels a statement running longer.
    db_acquire_timeout_seconds: float = Field(5.0, gt=0)
    db_statement_timeout_seconds: float = Field(30.0, gt=0)
    # Plays a worker keeps in memory between their turns (the SDK's default: 1000). It bounds the
    # worker's memory (about 0.4 MB per cached play, bench/RESULTS.md); a smaller cache costs a
    # replay from history when an evicted play wakes.
    workflow_cache_size: int = Field(1000, ge=0)
    # Run plays in the SDK's workflow sandbox (every module passed through; its runtime checks on the
    # clock, randomness and I/O stay). false: no sandbox; measured, it saves no memory worth having
    # (bench/RESULTS.md), and only the replay tests of tests/histories/ would guard determinism.
    workflow_sandbox: bool = True

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 30.0
    # SMTP sessions a worker keeps open to the relay, and e-mails a survey batch has in flight at once:
    # each e-mail waits on PostgreSQL and the relay in turn, so more in flight keeps a worker busy
    # when those answer slowly (bench/README.md).
    smtp_sessions: int = Field(16, ge=1, le=100)
    email_batch_concurrency: int = Field(24, ge=1, le=200)
    mail_from: str = "Customer Success <success@tai.example>"

    # Prometheus endpoints (host:port; off when unset): the Temporal SDK's metrics and the
    # product's counters (core/metrics.py). ./run.sh sets them; one address per process.
    worker_metrics_address: str | None = None
    http_metrics_address: str | None = None
    # Mail that comes back (issue 17): one SMTP listener takes bounces (VERP return paths
    # bounce+<token>@INBOUND_MAIL_DOMAIN), feedback reports and customer replies
    # (Reply-To reply+<token>@...). In production the domain's MX points at the listener.
    inbound_smtp_host: str = "127.0.0.1"
    inbound_smtp_port: int = 2526
    inbound_mail_domain: str = "reply.tai.example"
    inbound_max_bytes: int = Field(10_000_000, ge=10_000)
    # Unsubscribe links are signed with this secret (HMAC-SHA256); the default only suits the local demo.
    email_link_secret: SecretStr = SecretStr("local-demo-email-secret")
    # At most this many customer e-mails per contact per rolling 7 days, across all plays (0: no cap).
    # Transactional mail always goes (and counts); lifecycle mail comes before survey mail; what is
    # over is deferred, never dropped. The busiest week of the shipped playbooks (onboarding's
    # go-live week) sends a sponsor 6.
    email_weekly_cap: int = Field(8, ge=0)
    # A soft bounce (4xx) is tried again after 15 min, 1 h, 4 h, 12 h, then given up after this many.
    email_soft_bounce_attempts: int = Field(5, ge=1, le=20)

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # Host headers the HTTP service answers (DNS rebinding defence); the host of PUBLIC_BASE_URL is
    # added. Comma-separated in the environment, `*` for any (not for a reachable service).
    allowed_hosts: Annotated[list[str], NoDecode] = ["127.0.0.1", "localhost", "::1"]
    # The CRM signs each webhook with this secret (HubSpot signature v3: the
    # app's client secret). The default only suits the local demo.
    crm_webhook_secret: SecretStr = SecretStr("local-demo-secret")
    crm_webhook_max_age_seconds: int = 300
    crm_webhook_max_bytes: int = 1_000_000
    # Vendor webhooks (README "CRM and help-desk webhooks"). HubSpot signs with CRM_WEBHOOK_SECRET above (the
    # app's client secret); which of its signature versions are taken (v1 and v2 carry no timestamp).
    hubspot_signature_versions: str = Field("v1,v2,v3", pattern=r"^(v[123])(,v[123])*$")
    # Salesforce Outbound Messages are not signed: the endpoint URL carries this secret
    # (/webhooks/salesforce/<secret>), and the message must name a configured OrganizationId.
    salesforce_outbound_secret: SecretStr | None = None
    # Zendesk signs each webhook (HMAC-SHA256) with the webhook's signing secret.
    zendesk_webhook_secret: SecretStr | None = None
    zendesk_webhook_max_age_seconds: int = 300
    # A vendor delivery is acted on for at most this long before the answer (HubSpot gives 5 s);
    # the rest goes on in the background. The sweeper takes up what is due every sweep_seconds.
    webhook_act_seconds: float = Field(3.0, ge=0)
    webhook_sweep_seconds: float = Field(5.0, gt=0)
    # An event being acted on is claimed for this long; after, another process may take it up.
    webhook_claim_seconds: float = Field(60.0, gt=0)
    webhook_max_json_depth: int = Field(32, ge=4)
    # CRM lookups when a webhook lacks data (which company a deal belongs to): off unless a token
    # is set. HubSpot: a private app's access token; Salesforce: an OAuth access token and the
    # org's instance URL (https://<domain>.my.salesforce.com).
    hubspot_access_token: SecretStr | None = None
    hubspot_api_url: str = "https://api.hubapi.com"
    salesforce_access_token: SecretStr | None = None
    salesforce_instance_url: str | None = None
    salesforce_api_version: str = Field("v62.0", pattern=r"^v\d{2,3}\.\d$")
    crm_lookup_timeout_seconds: float = Field(10.0, gt=0)
    crm_lookup_attempts: int = Field(4, ge=1, le=10)
    # A 429's Retry-After longer than this gives up for now (the event waits and is tried again).
    crm_lookup_max_wait_seconds: float = Field(30.0, ge=0)
    # Chat, CRM write-back and outbound webhooks (README "Slack, Teams, CRM write-back and outbound
    # webhooks"): all off until configured. Where messages go is content (playbooks/notifications.yaml);
    # the secrets are here. CHAT_WEBHOOK_URLS: a JSON object, destination name -> the Slack or Teams
    # incoming-webhook URL (its path is the secret). SLACK_BOT_TOKEN: a bot token (xoxb-...) for
    # chat.postMessage with the chat:write scope (channels:history too, so a retry after a crash
    # can find a message already posted). OUTBOUND_WEBHOOK_SECRETS: subscription name -> its signing
    # secret (whsec_ + base64, Standard Webhooks). CRM_WRITE_BACK: the CRM connections written to
    # (comma-separated, e.g. "hubspot,salesforce"), with the tokens of the lookups above.
    chat_webhook_urls: dict[str, SecretStr] = {}
    slack_bot_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api"
    outbound_webhook_secrets: dict[str, SecretStr] = {}
    crm_write_back: str = Field("", pattern=r"^([a-z][a-z0-9_:-]{0,40}(,[a-z][a-z0-9_:-]{0,40})*)?$")
    # Every delivery (chat message, CRM write, webhook) is retried with exponential back-off from
    # delivery_retry_initial_seconds up to delivery_retry_max_seconds between tries (a 429's
    # Retry-After wins), until it has tried for the kind's give-up time; then it is marked failed
    # and can be replayed from the console or `csplay deliveries replay`.
    delivery_timeout_seconds: float = Field(10.0, gt=0)
    delivery_retry_initial_seconds: float = Field(5.0, gt=0)
    delivery_retry_max_seconds: float = Field(1800.0, gt=0)
    chat_give_up_hours: float = Field(24.0, gt=0)
    webhook_give_up_hours: float = Field(24.0, gt=0)
    crm_give_up_hours: float = Field(168.0, gt=0)
    # HubSpot's search index lags a create by a few seconds: after an attempt whose answer was lost,
    # the search that prevents a second record waits until this long after that attempt.
    crm_search_settle_seconds: float = Field(15.0, ge=0)
    # The relay that turns play events into deliveries polls this often (and wakes on NOTIFY).
    notice_poll_seconds: float = Field(2.0, gt=0)
    # Survey links are signed with this secret (HMAC-SHA256); the default only suits the local demo.
    nps_link_secret: SecretStr = SecretStr("local-demo-nps-secret")
    # The URL the CRM calls, as it signs it (behind a proxy the service sees
    # another one); None: the URL of the request as received.
    public_base_url: str | None = None

    @property
    def survey_base_url(self) -> str:
        """Where survey links point: the public URL, else the local HTTP service."""
        return (self.public_base_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    @property
    def write_back_connections(self) -> set[str]:
        """The CRM connections CRM_WRITE_BACK names (empty: no write-back)."""
        return {c for c in self.crm_write_back.split(",") if c}

    # Web console login sessions; the cookie is Secure when the public URL is https.
    console_session_hours: int = 12
    # Login throttling (starter/security/throttle.py), counted over a sliding window of
    # `console_lockout_minutes`: failures of one e-mail from one client (or one trusted browser),
    # of one client whatever the e-mail, and of one e-mail from untrusted clients.
    console_max_failed_logins: int = 5
    console_lockout_minutes: int = 15
    login_max_failures_per_ip: int = 30
    login_max_failures_per_account: int = 20
    # Logins hash passwords on worker threads; more waiting than this is answered 503.
    login_max_waiting: int = 16
    # Optional single sign-on (OpenID Connect, authorization code flow with PKCE). A person must
    # already be a console user (matched by verified e-mail); their role comes from there.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid email profile"
    oidc_button_label: str = "Log in with single sign-on"

    # Request bodies (bytes) and JSON depth, every route (starter/security/limits.py); the CRM
    # webhook keeps crm_webhook_max_bytes. A body not received within body_timeout_seconds is 408.
    http_max_body_bytes: int = Field(65_536, gt=0)
    survey_max_body_bytes: int = Field(16_384, gt=0)
    console_max_body_bytes: int = Field(262_144, gt=0)
    http_max_json_depth: int = Field(32, gt=0)
    body_timeout_seconds: float = Field(15.0, gt=0)
    # Requests served at once per kind (starter/security/overload.py); one that finds no free place
    # within overload_wait_seconds is answered 503 with Retry-After. /healthz is never queued.
    max_inflight_webhooks: int = Field(4, gt=0)
    max_inflight_requests: int = Field(32, gt=0)
    overload_wait_seconds: float = Field(2.0, ge=0)
    overload_retry_after_seconds: int = Field(5, gt=0)

    @property
    def console_secure_cookie(self) -> bool:
        return (self.public_base_url or "").startswith("https://")

    # CRM imports uploaded in the console: the request's size limit, and how long an upload that
    # was never confirmed is kept (under DATA_DIR/imports) before it is deleted.
    import_upload_max_mb: int = Field(100, ge=1, le=2048)
    import_upload_ttl_minutes: int = Field(60, ge=1)

    @property
    def https_public(self) -> bool:
        """True when the service is published over https (cookies Secure, HSTS sent)."""
        return (self.public_base_url or "").startswith("https://")

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _hosts_from_text(cls, value):
        if isinstance(value, str):
            if value.strip().startswith("["):
                import json

                return json.loads(value)
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    data_dir: Path = PROJECT_ROOT / ".data"
    playbooks_dir: Path = PROJECT_ROOT / "playbooks"
    # The organisation profile the product runs (playbooks/profiles/<name>/, README "Organisation
    # profiles"): its tiers, priorities, support regions and the content files it has of its own.
    profile: str = Field("tai", pattern=r"^[a-z][a-z0-9_]{0,62}$")
    log_level: str = "INFO"
    log_format: str = Field("json", description="json, or console for humans")

    @property
    def temporal_tls_enabled(self) -> bool:
        return bool(self.temporal_tls_cert or self.temporal_tls_ca or self.temporal_api_key)


@lru_cache
def get_settings() -> Settings:
    return Settings()
