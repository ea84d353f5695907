"""The playground on a PDP that decides with a real OPA server (PDP_ENGINE=opa): OPA's
answer comes from that server (its own eval timer), the embedded wasm engine's beside it."""

import requests

from tests.conftest import SHIPPED_POLICIES, start_pdp


def test_playground_on_the_opa_engine_shows_the_server_and_wasm(opa_server, redis_server, jwt_secret, token):
    pdp = start_pdp(
        {
            "JWT_SECRET_KEY": jwt_secret,
            "REDIS_URL": redis_server.redis_url,
            "POLICY_DIR": str(SHIPPED_POLICIES),
            "PDP_ENGINE": "opa",
            "OPA_URL": opa_server.url,
            "OPA_TIMEOUT_MS": "2000",
        },
        workers=1,
    )
    try:
        admin = {"Authorization": "Bearer " + token()}
        url = pdp.url + "/ui/api/playground"
        samples = requests.get(url + "/samples", headers=admin, timeout=5).json()["samples"]
        for name, allow in (("user GET /api/v1/sessions", True), ("anonymous GET /api/v1/meta/health", True)):
            doc = requests.post(url, json={"input": samples[name]}, headers=admin, timeout=60).json()
            assert doc["ok"] and doc["engine"] == "opa" and doc["agree"] is True, doc
            opa, wasm = doc["engines"]["opa"], doc["engines"]["wasm"]
            assert opa["via"].startswith("OPA server") and opa["eval_ms"] > 0 and opa["round_trip_ms"] > 0
            assert wasm["ok"] and wasm["via"].startswith("embedded wasm") and wasm["decision"]["allow"] is allow
            # The rules come from the serving OPA's evaluation of the whole data document.
            assert "gateway.decision" in doc["rules"] and "OPA server" in doc["rules_note"]
        # A draft is never pushed to the serving OPA: opa eval answers for it.
        draft = 'package gateway\n\ndecision := {"allow": false, "status": 451, "reason": "draft says no"}\n'
        doc = requests.post(
            url,
            json={"input": samples["user GET /api/v1/sessions"], "draft": {"gateway/decision.rego": draft}},
            headers=admin,
            timeout=60,
        ).json()
        assert doc["ok"] and doc["agree"] is True and doc["engines"]["opa"]["via"].startswith("opa eval")
        assert doc["engines"]["opa"]["decision"]["status"] == 451
        served = requests.post(
            url, json={"input": samples["user GET /api/v1/sessions"]}, headers=admin, timeout=60
        ).json()
        assert served["engines"]["opa"]["decision"]["allow"] is True
    finally:
        pdp.stop()
