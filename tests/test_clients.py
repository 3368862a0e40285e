"""What a client needs to reach a server, and the operator's own clients: Azure OpenAI's request
shape, a proxy from the environment, extra headers and query parameters, and an ``AsyncOpenAI``
handed in per role, all against the simulated server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from openai import AsyncAzureOpenAI, AsyncOpenAI

from langgraph_feedit import ConfigError, EndpointError, RoleConfig, Trace, create_feedit_graph
from langgraph_feedit.endpoints import aclose_endpoints, get_endpoint
from langgraph_feedit.errors import REDACTED, redact
from langgraph_feedit.runs import Operator
from langgraph_feedit.testing import Fault, SimServer

from .helpers import sim_config

CONVERSATION = [{"role": "user", "content": "Explain CRDTs."}]
QUESTION = {"messages": [("user", "Explain CRDTs.")]}


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=23) as server:
        yield server


def root(sim: SimServer) -> str:
    return sim.base_url.removesuffix("/v1")


# -- Azure OpenAI -------------------------------------------------------------------------------


@pytest.mark.parametrize("deployment", ["dep-1", None])
async def test_an_azure_role_sends_azure_shaped_requests(
    sim: SimServer, deployment: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_TEST_KEY", "azure-secret-key-123")
    rc = RoleConfig(
        base_url=root(sim),
        api_key_env="AZURE_TEST_KEY",
        api_version="2024-10-21",
        azure_deployment=deployment,
        max_retries=0,
    )
    try:
        result = await get_endpoint(rc, role="draft").chat(CONVERSATION, model="gpt-4o-dep")
    finally:
        await aclose_endpoints()
    assert result.texts[0]
    request = sim.requests[-1]
    # Without a deployment, the model names it (Azure's own client does the same).
    assert request.path == f"/openai/deployments/{deployment or 'gpt-4o-dep'}/chat/completions"
    assert request.query == {"api-version": "2024-10-21"}
    assert request.headers["api-key"] == "***"  # the key, in Azure's header
    assert "authorization" not in request.headers


# -- a proxy from the environment -----------------------------------------------------------------


class ForwardingProxy:
    """A plain HTTP forwarding proxy on 127.0.0.1: each request (absolute-form, as a client sends
    one to a proxy) is sent on to its server over a connection of its own, and noted."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ")
                self.seen.append(f"{method} {target}")
                length = 0
                kept = []
                for line in lines[1:]:
                    if not line:
                        continue
                    name = line.split(":", 1)[0].lower()
                    if name == "content-length":
                        length = int(line.split(":", 1)[1])
                    if name not in ("connection", "proxy-connection", "keep-alive"):
                        kept.append(line)
                body = await reader.readexactly(length)
                rest = target.split("://", 1)[1]
                hostport, _, path = rest.partition("/")
                host, _, port = hostport.partition(":")
                up_reader, up_writer = await asyncio.open_connection(host, int(port or 80))
                request = [f"{method} /{path} {version}", *kept, "Connection: close", "", ""]
                up_writer.write("\r\n".join(request).encode("latin-1") + body)
                await up_writer.drain()
                # The server closes after its reply (Connection: close): relay it to the end.
                while chunk := await up_reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
                up_writer.close()
                break  # the reply said Connection: close; the client opens another
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
async def test_a_proxy_named_by_the_environment_sees_the_calls(
    sim: SimServer, http_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    proxy = ForwardingProxy()
    async with proxy as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("http_proxy", proxy_url)
        rc = RoleConfig(base_url=sim.base_url, max_retries=0, http_client=http_client)
        try:
            result = await get_endpoint(rc).chat(CONVERSATION, model="m")
            await get_endpoint(rc).chat(CONVERSATION, model="m", on_token=_ignore)
        finally:
            await aclose_endpoints()
    assert result.texts[0] and sim.call_count == 2
    assert proxy.seen == [f"POST {sim.base_url}/chat/completions"] * 2


async def _ignore(piece: str) -> None:
    pass


# -- headers and query parameters ----------------------------------------------------------------


async def test_custom_headers_and_query_parameters_arrive(
    sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_TEST_KEY", "gw-secret-value-789")
    rc = RoleConfig(
        base_url=sim.base_url,
        headers={"X-Tenant": "team-a"},
        header_env={"X-Gateway-Key": "GATEWAY_TEST_KEY"},
        query={"route": "eu"},
        max_retries=0,
    )
    try:
        await get_endpoint(rc, role="draft").chat(CONVERSATION, model="m")
    finally:
        await aclose_endpoints()
    request = sim.requests[-1]
    assert request.headers["x-tenant"] == "team-a"
    assert request.headers["x-gateway-key"] == "gw-secret-value-789"
    assert request.query == {"route": "eu"}
    # A header's value from the environment is a secret like a key: redacted from errors.
    assert redact("echo gw-secret-value-789") == f"echo {REDACTED}"


def test_header_values_never_live_in_files() -> None:
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        RoleConfig(header_env={"X-Gateway-Key": "sk-live-inline-key"})


async def test_an_unset_header_variable_names_the_variable(sim: SimServer) -> None:
    rc = RoleConfig(base_url=sim.base_url, header_env={"X-Key": "FEEDIT_TEST_UNSET_VAR"})
    with pytest.raises(ConfigError, match="FEEDIT_TEST_UNSET_VAR"):
        get_endpoint(rc, role="draft")
    await aclose_endpoints()


# -- the operator's own clients ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def own_client(server: SimServer, **kw: Any) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(
        base_url=server.base_url,
        api_key="sk-mine-0123456789",
        default_headers={"X-Mine": "yes"},
        max_retries=5,
        **kw,
    )
    try:
        yield client
    finally:
        await client.close()


async def test_a_client_handed_in_is_used_as_given_for_its_role(sim: SimServer) -> None:
    with SimServer(seed=24) as mine:
        # Every role's configuration names ``sim``; the draft role's client goes to ``mine``.
        config = sim_config(sim.base_url, width={"drafts": 2, "critiques": 1, "edits": 1})
        async with own_client(mine) as client:
            graph = create_feedit_graph(config, clients={"draft": client}).compile()
            out = await graph.ainvoke(QUESTION)
            assert not client.is_closed()  # the operator's: never closed here
        trace = Trace.model_validate(out["trace"])
    drafts = [r for r in mine.requests if r.path == "/v1/chat/completions"]
    assert len(drafts) == 2 and mine.call_count == 2
    assert all(r.headers.get("x-mine") == "yes" for r in drafts)
    assert not any(r.headers.get("x-mine") for r in sim.requests)
    assert sim.call_count == trace.usage["total"]["calls"] - 2
    # Nothing of the client reaches the run's output, trace or state.
    assert "AsyncOpenAI" not in str(out) and "sk-mine" not in str(out)
    await aclose_endpoints()


async def test_the_package_retries_a_client_handed_in_its_own_retries_stay_off(
    sim: SimServer,
) -> None:
    sim.set_faults([Fault("500", rate=1.0)])
    rc = RoleConfig(max_retries=1, backoff=0.01)
    async with own_client(sim) as client:
        with pytest.raises(EndpointError) as info:
            await get_endpoint(rc, role="draft", client=client).chat(CONVERSATION, model="m")
    # One retry by the package's policy, none of the client's own five.
    assert sim.call_count == 2 and info.value.status == 500
    assert info.value.endpoint.startswith(sim.base_url)  # named by its base URL only
    await aclose_endpoints()


async def test_a_key_the_server_echoes_from_a_client_handed_in_is_redacted(
    sim: SimServer,
) -> None:
    key = "sk-operator-own-key-4455667788"
    sim.set_faults([Fault("401", rate=1.0)])
    async with AsyncOpenAI(base_url=sim.base_url, api_key=key) as client:
        with pytest.raises(EndpointError) as info:
            await get_endpoint(RoleConfig(), role="draft", client=client).chat(
                CONVERSATION, model="m"
            )
    err = info.value
    assert err.status == 401
    for text in (str(err), err.body or "", str(err.__cause__)):
        assert key not in text
    await aclose_endpoints()


def test_a_client_factory_serves_each_event_loop(sim: SimServer) -> None:
    made: list[AsyncOpenAI] = []

    def factory() -> AsyncOpenAI:
        made.append(AsyncOpenAI(base_url=sim.base_url, api_key="sk-factory-key"))
        return made[-1]

    config = sim_config("http://127.0.0.1:9/v1", width={"drafts": 2, "critiques": 0})
    graph = create_feedit_graph(config, clients={"default": factory}).compile()
    out = graph.invoke(QUESTION)
    assert out["messages"][-1].content
    out = asyncio.run(graph.ainvoke(QUESTION))  # another event loop
    assert out["messages"][-1].content
    # Two drafts (each its own sample), two judges and the judge endpoint's probe, once per
    # event loop (the endpoint, and what it was found to support, belongs to one loop).
    assert sim.call_count == 2 * (2 + 2 + 1)
    # One client made for its base URL when the graph was built, then one per event loop the
    # calls ran on (a sync invoke's async nodes may each get a loop of their own).
    assert len(made) >= 3


async def test_the_cache_key_follows_the_clients_base_url_not_the_object(sim: SimServer) -> None:
    config = sim_config(sim.base_url)
    async with own_client(sim) as first, own_client(sim) as second:
        a = Operator(config, None, None, clients={"draft": first})
        b = Operator(config, None, None, clients={"draft": second})
    plain = Operator(config, None, None)
    conversation = [{"role": "user", "content": "q"}]
    digest = {
        name: op.start(op.config, conversation).spec["endpoints"]
        for name, op in {"a": a, "b": b, "plain": plain}.items()
    }
    assert digest["a"] == digest["b"]  # two runs with the same client: the same cache key
    assert digest["a"]["draft"] != digest["plain"]["draft"]  # where calls go is in it
    assert digest["a"]["judge"] == digest["plain"]["judge"]


@pytest.mark.parametrize(
    ("clients", "match"),
    [({"drafter": None}, "no role"), ({"draft": "http://x"}, "AsyncOpenAI")],
)
def test_what_is_no_role_or_no_client_is_refused(clients: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_feedit_graph(sim_config("http://127.0.0.1:9/v1"), clients=clients)


async def test_an_azure_client_handed_in_is_used_as_given(sim: SimServer) -> None:
    async with AsyncAzureOpenAI(
        azure_endpoint=root(sim), api_version="2025-01-01", api_key="azure-own-key-000111"
    ) as client:
        result = await get_endpoint(RoleConfig(), client=client).chat(CONVERSATION, model="dep")
    assert result.texts[0]
    request = sim.requests[-1]
    assert request.path == "/openai/deployments/dep/chat/completions"
    assert request.query == {"api-version": "2025-01-01"} and request.headers["api-key"] == "***"
    await aclose_endpoints()
