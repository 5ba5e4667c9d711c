"""The runner's HTTP client: TLS, stale connections, cancellation, redirects, proxies."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from eval_runner import run, transport
from localkube.mockmodel import MockModel, Reply, answer_from
from tests.runner.support import TLS, TLS_DIR, environment, journal, qa_dataset, questions, run_with


@pytest.mark.parametrize(
    "verify",
    [str(TLS_DIR / "cert.pem"), "false"],
    ids=["with the service's CA bundle", "with verification off"],
)
def test_an_https_service(tmp_path, verify):
    answers = questions(6)
    with MockModel(answer_from(answers), tls=TLS) as model:
        assert model.url.startswith("https://")
        env = environment(
            model.url,
            qa_dataset(tmp_path / "set.jsonl", 6),
            tmp_path / "out",
            EVAL_TLS_VERIFY=verify,
        )
        assert run_with(env)["exact_match"] == 1.0
    assert len({a.client_port for a in model.arrivals}) <= 4


def test_the_ca_bundle_the_operator_mounts_is_trusted(tmp_path):
    # tls.caConfigMap: the operator sets EVAL_CA_BUNDLE (and SSL_CERT_FILE) to the file.
    with MockModel(answer_from(questions(2)), tls=TLS) as model:
        env = environment(
            model.url,
            qa_dataset(tmp_path / "set.jsonl", 2),
            tmp_path / "out",
            EVAL_CA_BUNDLE=str(TLS_DIR / "cert.pem"),
        )
        assert run_with(env)["exact_match"] == 1.0


def test_a_missing_ca_bundle_is_named(tmp_path, capsys):
    env = environment(
        "https://127.0.0.1:9/v1/chat/completions",
        qa_dataset(tmp_path / "set.jsonl", 2),
        tmp_path / "out",
        EVAL_CA_BUNDLE=str(tmp_path / "nowhere.crt"),
    )
    assert run.main(environ=env) != 0
    assert "EVAL_CA_BUNDLE=" in capsys.readouterr().err


def test_an_https_service_with_an_unknown_certificate_is_refused(tmp_path, capsys):
    with MockModel(answer_from(questions(2)), tls=TLS) as model:
        env = environment(model.url, qa_dataset(tmp_path / "set.jsonl", 2), tmp_path / "out")
        started = time.monotonic()
        assert run.main(environ=env) == 1
        assert time.monotonic() - started < 1, "no waiting for a certificate to change"
    err = capsys.readouterr().err
    assert "presented a certificate that is not trusted" in err
    assert "CERTIFICATE_VERIFY_FAILED" in err and "EVAL_TLS_VERIFY" in err
    assert model.arrivals == []


async def post(client, url, text="q01"):
    body = {"messages": [{"role": "user", "content": text}]}
    async with client.post(url, json=body) as response:
        return response.status, await response.json()


def test_a_connection_the_service_closed_while_idle_is_not_reused():
    async def main(url):
        async with transport.http_client(2, 5, True, url) as client:
            assert (await post(client, url))[0] == 200
            await asyncio.sleep(0.3)  # the service drops the idle connection after 0.05 s
            assert (await post(client, url))[0] == 200

    with MockModel(answer_from(questions(1)), idle_timeout=0.05) as model:
        asyncio.run(main(model.url))
    first, second = model.arrivals
    assert first.client_port != second.client_port


def test_a_cancelled_request_gives_its_connection_slot_back():
    async def main(url):
        async with transport.http_client(1, 5, True, url) as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await post(client, url, "slow")
            started = time.monotonic()
            async with asyncio.timeout(2):
                assert (await post(client, url, "fast"))[1]["choices"]
            return time.monotonic() - started

    def behave(key, attempt):
        return Reply("x", delay=1.0 if key == "slow" else 0.0)

    with MockModel(behave) as model:
        assert asyncio.run(main(model.url)) < 0.5, "the one slot was free again at once"


def test_a_redirect_is_not_followed(tmp_path):
    # httpx's behaviour, kept: a service that redirects a POST is misconfigured, and the
    # sample's error says so instead of the body being re-sent elsewhere (or as a GET).
    def behave(key, attempt):
        if key == "q01":
            return Reply(status=307, headers={"Location": "/v1/other"})
        return Reply("a02")

    output = tmp_path / "out"
    with MockModel(behave) as model:
        env = environment(
            model.url, qa_dataset(tmp_path / "set.jsonl", 2), output, EVAL_MAX_ERROR_RATE="1"
        )
        assert run_with(env)["errors"] == 1
    assert model.attempts["q01"] == 1 and len(model.arrivals) == 2
    reviews = {r["id"]: r for r in journal(output / "reviews.jsonl")}
    assert reviews["q01"]["error"].startswith("HTTP 307")


def clear_proxies(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_requests_go_through_the_proxy_the_environment_names(tmp_path, monkeypatch):
    # The test service is the proxy: a forward proxy gets each request in absolute form,
    # and the service's own host name does not resolve, so only the proxy can answer.
    clear_proxies(monkeypatch)
    url = "http://model.invalid:8000/v1/chat/completions"
    with MockModel(answer_from(questions(3))) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base)
        env = environment(url, qa_dataset(tmp_path / "set.jsonl", 3), tmp_path / "out")
        assert run_with(env)["exact_match"] == 1.0
    assert len(proxy.arrivals) == 3
    assert {a.headers["Host"] for a in proxy.arrivals} == {"model.invalid:8000"}


def test_no_proxy_exempts_the_service(tmp_path, monkeypatch):
    clear_proxies(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with MockModel(answer_from(questions(2))) as model:
        env = environment(model.url, qa_dataset(tmp_path / "set.jsonl", 2), tmp_path / "out")
        assert run_with(env)["exact_match"] == 1.0


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({}, "http://model:8000/v1/chat/completions", None),
        ({"HTTP_PROXY": "http://proxy:3128"}, "http://model:8000/v1", "http://proxy:3128"),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://model:8000/v1", None),
        ({"ALL_PROXY": "http://proxy:3128"}, "https://model/v1", "http://proxy:3128"),
        ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "model"}, "http://model:8000/v1", None),
    ],
    ids=[
        "no proxy in the environment",
        "a proxy for the service's scheme",
        "a proxy for the other scheme only",
        "a proxy for every scheme",
        "a service exempted by NO_PROXY",
    ],
)
def test_a_proxy_in_the_environment_is_honoured(monkeypatch, env, url, expected):
    clear_proxies(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert transport.proxy_for(url) == expected


def test_the_auth_header_is_in_no_error_message():
    async def main(url):
        async with transport.http_client(1, 5, True, url) as client:
            client.headers["Authorization"] = "Bearer never-shown"
            await post(client, url)

    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        asyncio.run(main("http://127.0.0.1:9/v1/chat/completions"))
    assert "never-shown" not in str(caught.value)
