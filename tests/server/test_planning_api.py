"""GET /homellm/hardware and /homellm/plan on a real server: the same figures as the CLI's --json."""

from __future__ import annotations

import httpx
import pytest
from conftest import ServerProcess

PLAN_KEYS = {"weights_bytes", "kv_cache_bytes", "total_bytes", "fits", "decode_tps", "prefill_tps", "devices",
             "placement", "speed_by_depth", "warnings", "efficiency_source"}


def get(server: ServerProcess, path: str, **params: object) -> httpx.Response:
    return httpx.get(f"{server.base_url}{path}", params=params, timeout=30)


def test_hardware_lists_this_machines_host(server: ServerProcess):
    body = get(server, "/homellm/hardware").json()
    host = body["devices"][-1]
    assert host["kind"] == "cpu" and host["memory_bytes"] == body["ram_total_bytes"] > 0
    assert host["bandwidth_gbs"] > 0 and host["efficiency_source"] == "published"
    assert body["cpu"]["logical_cores"] >= 1


def test_plan_of_the_builtin_model_on_this_machine(server: ServerProcess):
    body = get(server, "/homellm/plan", model="smollm2:135m").json()
    assert PLAN_KEYS <= set(body)
    assert body["fits"] and body["placement"] == {"gpu_layers": 0, "cpu_moe_layers": 0, "ctx": 4096, "kv_type": "F16", "parallel": 1}
    assert body["quant"] == "Q4_1" and body["weights_bytes"] == 96_576_768
    assert [s["ctx"] for s in body["speed_by_depth"]] == [0, 4096]


def test_plan_for_described_hardware(server: ServerProcess):
    body = get(server, "/homellm/plan", model="deepseek-r1:671b", quant="Q4_K_M", gpu="RTX 4090", ram=768).json()
    assert body["fits"] and abs(body["weights_bytes"] / 1e9 - 404) < 20
    assert body["placement"]["cpu_moe_layers"] > 0 and body["devices"][0]["device"] == "RTX 4090"


@pytest.mark.parametrize("params, field", [
    ({"model": "llama3.1:8b", "gpu": "RTX 9999"}, "gpu"),
    ({"model": "llama3.1:8b", "ctx": 0}, "ctx"),
    ({"model": "llama3.1:8b", "quant": "Q9_X"}, "quant"),
    ({"model": "llama3.1:8b", "ram": -1}, "ram"),
])
def test_bad_plan_requests_are_400s_naming_the_field(server: ServerProcess, params: dict, field: str):
    response = get(server, "/homellm/plan", **params)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == field


def test_plan_never_reads_a_path(server: ServerProcess, builtin_path):
    response = get(server, "/homellm/plan", model=str(builtin_path))
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_model_name"


def test_unknown_model_is_a_404(server: ServerProcess):
    response = get(server, "/homellm/plan", model="llama3.1:9b")
    assert response.status_code == 404 and "llama3.1:8b" in response.json()["error"]["message"]
