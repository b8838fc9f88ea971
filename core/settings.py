"""Configuration from the environment (and an optional `.env`).

Every knob that differs between a laptop and production lives here, so
scaling out is configuration: point TEMPORAL_ADDRESS at a cluster or
Temporal Cloud, DATABASE_URL at managed PostgreSQL, SMTP_* at a relay.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_tls_cert: Path | None = Field(None, description="client certificate (mTLS)")
    temporal_tls_key: Path | None = Field(None, description="client private key (mTLS)")
    temporal_tls_ca: Path | None = Field(None, description="server root CA, if not a public one")
    temporal_api_key: str | None = Field(None, description="Temporal Cloud API key")
    temporal_ui_url: str = "http://localhost:8233"
    task_queue: str = "cs-playbooks"
    # Off only where the server cannot index our attributes: the Java
    # time-skipping test server knows a fixed list of test-only names.
    search_attributes: bool = True

    # None means the embedded PostgreSQL under DATA_DIR/pg, started by ./run.sh
    database_url: str | None = None
    database_name: str = "playbooks"
    db_pool_max: int = 10
    # Plays a worker keeps in memory between their turns (the SDK's default: 1000). It bounds the
    # worker's memory (about 0.4 MB per cached play, bench/RESULTS.md); a smaller cache costs a
    # replay from history when an evicted play wakes.
    workflow_cache_size: int = Field(1000, ge=0)

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 30.0
    # SMTP sessions a worker keeps open to the relay, and e-mails a survey batch has in flight at once:
    # each e-mail waits on PostgreSQL and the relay in turn, so more in flight keeps a worker busy
    # when those answer slowly (bench/README.md).
    smtp_sessions: int = Field(16, ge=1, le=100)
    email_batch_concurrency: int = Field(24, ge=1, le=200)
    mail_from: str = "Customer Success <success@tai.example>"

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
    # The CRM signs each webhook with this secret (HubSpot signature v3: the
    # app's client secret). The default only suits the local demo.
    crm_webhook_secret: SecretStr = SecretStr("local-demo-secret")
    crm_webhook_max_age_seconds: int = 300
    crm_webhook_max_bytes: int = 1_000_000
    # Survey links are signed with this secret (HMAC-SHA256); the default only suits the local demo.
    nps_link_secret: SecretStr = SecretStr("local-demo-nps-secret")
    # The URL the CRM calls, as it signs it (behind a proxy the service sees
    # another one); None: the URL of the request as received.
    public_base_url: str | None = None

    @property
    def survey_base_url(self) -> str:
        """Where survey links point: the public URL, else the local HTTP service."""
        return (self.public_base_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    # Web console login sessions; the cookie is Secure when the public URL is https.
    console_session_hours: int = 12
    console_max_failed_logins: int = 5
    console_lockout_minutes: int = 15

    @property
    def console_secure_cookie(self) -> bool:
        return (self.public_base_url or "").startswith("https://")

    data_dir: Path = PROJECT_ROOT / ".data"
    playbooks_dir: Path = PROJECT_ROOT / "playbooks"
    log_level: str = "INFO"
    log_format: str = Field("json", description="json, or console for humans")

    @property
    def temporal_tls_enabled(self) -> bool:
        return bool(self.temporal_tls_cert or self.temporal_tls_ca or self.temporal_api_key)


@lru_cache
def get_settings() -> Settings:
    return Settings()
