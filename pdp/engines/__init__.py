"""Policy engines behind one interface, chosen by PDP_ENGINE (opal-client's policy_store model)."""

from __future__ import annotations


def make_engine(settings):
    """Returns the engine PDP_ENGINE names, not yet loaded."""
    if settings.engine == "opa":
        from .opa_server import OpaServerEngine

        return OpaServerEngine(
            settings.opa_url, timeout_s=settings.opa_timeout_ms / 1000, push=settings.opa_push_policies
        )
    from .wasm import WasmEngine

    return WasmEngine(settings.opa_binary)
