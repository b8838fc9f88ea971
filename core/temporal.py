"""One way to reach Temporal: local dev server, a cluster, or Temporal Cloud."""

from __future__ import annotations

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter

from core.settings import Settings

# Registered on the dev server at start (`--search-attribute`) and by
# `ensure_search_attributes` elsewhere; the UI filters plays by these.
SEARCH_ATTRIBUTES = {
    "AccountId": "Keyword",
    "Playbook": "Keyword",
    "Phase": "Keyword",
    "RiskBand": "Keyword",
    "CsmEmail": "Keyword",
    "NextActionAt": "Datetime",
}


def _tls(settings: Settings) -> TLSConfig | bool:
    if not settings.temporal_tls_enabled:
        return False
    read = lambda p: p.read_bytes() if p else None  # noqa: E731
    return TLSConfig(
        server_root_ca_cert=read(settings.temporal_tls_ca),
        client_cert=read(settings.temporal_tls_cert),
        client_private_key=read(settings.temporal_tls_key),
    )


async def connect(settings: Settings) -> Client:
    """A client on the process's default runtime (core/telemetry.install_runtime sets it), with
    the tracing interceptor when tracing is on."""
    from core.telemetry import tracing_interceptors

    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        tls=_tls(settings),
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
        data_converter=pydantic_data_converter,
        interceptors=tracing_interceptors(),
    )


async def ensure_search_attributes(client: Client, namespace: str = "default") -> list[str]:
    """Register the product's search attributes where missing (a self-hosted cluster).

    The dev server started by ./run.sh registers them with `--search-attribute`.
    Returns the names added now.
    """
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    known = set(existing.custom_attributes) | set(existing.system_attributes)
    missing = {
        name: getattr(IndexedValueType, f"INDEXED_VALUE_TYPE_{kind.upper()}")
        for name, kind in SEARCH_ATTRIBUTES.items()
        if name not in known
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)
