"""Safe defaults of `homellm serve`: key, Host allow-list, loopback bind, body limit, CORS."""

import json
import subprocess

import httpx
import openai
import pytest
from conftest import HOMELLM, ServerProcess, generation_timeout

from homellm.errors import UnsafeBindError
from homellm.server.security import AccessPolicy, check_bind, is_loopback

KEY = "test-key-5f2d"
FRANCE = [{"role": "user", "content": "Name the capital of France."}]


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    proc = ServerProcess(["--api-key", KEY, "--allowed-host", "homellm.lan"],
                         tmp_path_factory.mktemp("keyed")).wait_ready()
    yield proc
    proc.stop()


def test_right_key_is_served(keyed_server):
    done = keyed_server.client(api_key=KEY).chat.completions.create(
        model="smollm2:135m", messages=FRANCE, temperature=0)
    assert "Paris" in done.choices[0].message.content


def test_wrong_key_is_401(keyed_server):
    with pytest.raises(openai.AuthenticationError) as info:
        keyed_server.client(api_key="wrong").models.list()
    assert info.value.body["code"] == "invalid_api_key"


def test_missing_key_is_401_on_every_route_but_health(keyed_server):
    for method, path in [("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                         ("POST", "/v1/completions"), ("GET", "/v1/nowhere")]:
        response = httpx.request(method, f"{keyed_server.base_url}{path}", json={})
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{keyed_server.base_url}/health").status_code == 200


# Every dialect's routes, with the error shape its clients parse: (method, path, where the message is).
DIALECT_ROUTES = [
    ("POST", "/v1/responses", ("error", "message")), ("GET", "/v1/responses/resp_x", ("error", "message")),
    ("POST", "/v1/messages", ("error", "message")), ("POST", "/v1/messages/count_tokens", ("error", "message")),
    ("POST", "/api/chat", ("error",)), ("POST", "/api/generate", ("error",)), ("POST", "/api/embed", ("error",)),
    ("GET", "/api/tags", ("error",)), ("POST", "/api/show", ("error",)), ("GET", "/api/ps", ("error",)),
    ("POST", "/api/pull", ("error",)), ("DELETE", "/api/delete", ("error",)), ("POST", "/api/copy", ("error",)),
    ("GET", "/api/version", ("error",)), ("GET", "/homellm/ps", ("error", "message")),
]


def _message_at(body: dict, where: tuple[str, ...]) -> str:
    for key in where:
        body = body[key]
    return body  # type: ignore[return-value]


@pytest.mark.parametrize(("method", "path", "where"), DIALECT_ROUTES)
def test_every_dialects_routes_need_the_key_and_a_known_host(keyed_server, server, method, path, where):
    response = httpx.request(method, f"{keyed_server.base_url}{path}", json={})
    assert response.status_code == 401, path
    assert "key" in _message_at(response.json(), where).lower()
    if path.startswith("/v1/messages"):
        assert response.json()["error"]["type"] == "authentication_error"
    foreign = httpx.request(method, f"{server.base_url}{path}", json={}, headers={"Host": "evil.example.com"})
    assert foreign.status_code == 403, path
    assert _message_at(foreign.json(), where)


def test_key_from_environment_is_required(tmp_path):
    proc = ServerProcess([], tmp_path, env={"HOMELLM_API_KEY": KEY}).wait_ready()
    try:
        assert httpx.get(f"{proc.base_url}/v1/models").status_code == 401
        ok = httpx.get(f"{proc.base_url}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200
    finally:
        proc.stop()


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:8435", "localhost.evil.com", "10.0.0.5"])
def test_unknown_host_header_is_403(server, host):
    response = httpx.get(f"{server.base_url}/v1/models", headers={"Host": host})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "host_not_allowed"


def test_unknown_host_is_refused_before_the_key_is_checked(keyed_server):
    response = httpx.get(f"{keyed_server.base_url}/health", headers={"Host": "rebind.attacker.net"})
    assert response.status_code == 403


@pytest.mark.parametrize("host", ["localhost", "localhost:9", "127.0.0.1:1", "[::1]:8435", "homellm.lan"])
def test_local_and_named_hosts_are_allowed(keyed_server, host):
    response = httpx.get(f"{keyed_server.base_url}/health", headers={"Host": host})
    assert response.status_code == 200


def test_open_bind_without_key_exits_at_once(tmp_path):
    result = subprocess.run([HOMELLM, "serve", "--host", "0.0.0.0", "--port", "1"], capture_output=True,
                            text=True, timeout=generation_timeout(0), env={"HOMELLM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "API key" in result.stderr and "HOMELLM_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_body_over_the_limit_is_413(server):
    huge = {"messages": [{"role": "user", "content": "x" * (9 * 1024 * 1024)}]}
    response = httpx.post(f"{server.base_url}/v1/chat/completions", json=huge, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_chunked_body_over_the_limit_is_413(server):
    def chunks():
        for _ in range(10):
            yield b"x" * (1024 * 1024)

    response = httpx.post(f"{server.base_url}/v1/chat/completions", content=chunks(),
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 413


def test_cors_is_off_by_default(server):
    response = httpx.options(f"{server.base_url}/v1/models", headers={
        "Origin": "https://example.com", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in response.headers
    got = httpx.get(f"{server.base_url}/v1/models", headers={"Origin": "https://example.com"})
    assert "access-control-allow-origin" not in got.headers


def test_cors_origin_flag_allows_that_origin_only(tmp_path):
    proc = ServerProcess(["--cors-origin", "https://app.example"], tmp_path).wait_ready()
    try:
        allowed = httpx.options(f"{proc.base_url}/v1/models", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"})
        assert allowed.status_code == 200  # what OpenAI's JS client asks for
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.get(f"{proc.base_url}/v1/models", headers={"Origin": "https://other.example"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        proc.stop()


def test_requests_from_other_sites_pages_are_refused_before_they_act(server):
    # A web page can send a "simple" POST (text/plain, no preflight) to localhost; Ollama's routes read
    # any body as JSON, so without the Origin check it could copy, pull or generate on the user's machine.
    copy = {"source": "smollm2:135m", "destination": "planted"}
    response = httpx.post(f"{server.base_url}/api/copy", content=json.dumps(copy),
                          headers={"Origin": "https://evil.example", "Content-Type": "text/plain"})
    assert response.status_code == 403
    assert "evil.example" in response.json()["error"]  # Ollama's shape
    chat = httpx.post(f"{server.base_url}/v1/chat/completions", json={"messages": FRANCE},
                      headers={"Origin": "null"})
    assert chat.status_code == 403
    assert chat.json()["error"]["code"] == "origin_not_allowed"
    names = [m["name"] for m in httpx.get(f"{server.base_url}/api/tags").json()["models"]]
    assert not any(name.startswith("planted") for name in names)


def test_pages_of_this_machine_and_clients_without_origin_are_served(server):
    for origin in (server.base_url, "http://localhost:3000", "http://[::1]:5173", None):
        headers = {"Origin": origin} if origin else {}
        assert httpx.get(f"{server.base_url}/v1/models", headers=headers).status_code == 200, origin


def test_origin_check_follows_the_hosts_and_cors_origins():
    policy = AccessPolicy(allowed_hosts=("box.lan",), cors_origins=("https://app.example",))
    assert policy.origin_allowed("https://app.example")
    assert policy.origin_allowed("http://box.lan:8080")
    assert policy.origin_allowed("http://sub.localhost")
    assert policy.origin_allowed("vscode-webview://1a2b3c")  # an editor extension's own page
    for origin in ("https://app.example.evil.com", "null", "file://", "http://localhost.evil.com", ""):
        assert not policy.origin_allowed(origin), origin


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.com")


def test_open_bind_needs_a_key_but_loopback_does_not():
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "k")
    with pytest.raises(UnsafeBindError):
        check_bind("::", None)


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "[::]"])
def test_any_interface_bind_accepts_ip_literals_but_not_names(bind):
    policy = AccessPolicy(bind_host=bind, api_key="k")
    assert policy.host_allowed("192.168.1.20:8435") and policy.host_allowed("[fe80::1]:8435")
    assert not policy.host_allowed("attacker.example:8435")


def test_allowed_host_may_be_given_with_a_port():
    policy = AccessPolicy(allowed_hosts=("box.lan:8435", "[fd00::5]"))
    assert policy.host_allowed("box.lan:8435") and policy.host_allowed("box.lan")
    assert policy.host_allowed("[fd00::5]:8435")
    assert not policy.host_allowed("other.lan:8435")


def test_key_check_is_exact():
    policy = AccessPolicy(api_key="secret")
    assert policy.key_ok("Bearer secret") and policy.key_ok("bearer secret")
    assert not policy.key_ok("Bearer secret2") and not policy.key_ok("secret") and not policy.key_ok(None)


def test_key_may_come_as_x_api_key_as_anthropic_clients_send_it():
    policy = AccessPolicy(api_key="secret")
    assert policy.key_ok(None, "secret") and policy.key_ok("Bearer wrong", "secret")
    assert not policy.key_ok(None, "secret2") and not policy.key_ok(None, "") and not policy.key_ok(None, None)
