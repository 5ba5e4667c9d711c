"""Tables for reading the environment: defaults, aliases, precedence, and what errors say."""

from __future__ import annotations

import pytest

from eval_runner import config
from eval_runner.errors import ConfigError

BASE = {
    "EVAL_DATASET": "builtin:arithmetic",
    "EVAL_INFERENCE_URL": "http://m:8000/v1/chat/completions",
}


def read(**env):
    return config.from_env({**BASE, **env})


def test_defaults_follow_the_product():
    c = read()
    assert c.concurrency == 24
    assert c.retry.retries == 0
    assert c.wait_for_model == 3600
    assert c.scorers == ("exact_match",)
    assert c.output_dir.as_posix() == "/opt/ml/output"
    assert c.model is not None and c.model.api == "chat"
    assert c.model.header_key == "Authorization" and c.model.header_value is None
    assert c.generation.body() == {}


@pytest.mark.parametrize(
    ("env", "attribute", "expected"),
    [
        ({"EVAL_TEMPERATURE": "0.2"}, "temperature", 0.2),
        ({"temperature": "0"}, "temperature", 0.0),
        ({"EVAL_TEMPERATURE": "0.7", "temperature": "0"}, "temperature", 0.7),
        ({"max_tokens": "64"}, "max_tokens", 64),
        ({"EVAL_TOP_K": "-1"}, "top_k", -1),
        ({"top_p": "0.9"}, "top_p", 0.9),
        ({"repetition_penalty": "1.1"}, "repetition_penalty", 1.1),
        ({"EVAL_SEED": "7"}, "seed", 7),
        ({"EVAL_STOP": "###"}, "stop", ("###",)),
        ({"stop": "\n\n"}, "stop", ("\n\n",)),
        ({"stop": '["\\n\\n", "Q:"]'}, "stop", ("\n\n", "Q:")),
    ],
    ids=[
        "an EVAL_ name sets a parameter",
        "the lower-case name that spec.parameters sets works too",
        "the EVAL_ name wins over the lower-case one",
        "max_tokens is a whole number",
        "top_k may be -1, as vLLM reads it",
        "top_p",
        "repetition_penalty",
        "seed",
        "one stop string as is",
        "a stop string of newlines is kept",
        "several stop strings as a JSON list",
    ],
)
def test_generation_parameters(env, attribute, expected):
    assert getattr(read(**env).generation, attribute) == expected


def test_prompts_keep_their_spaces_and_newlines():
    c = read(EVAL_PROMPT_TEMPLATE="Q: {query}\nA: ", EVAL_SYSTEM_PROMPT=" Be brief.\n")
    assert (c.prompt_template, c.system_prompt) == ("Q: {query}\nA: ", " Be brief.\n")


def test_generation_body_sends_only_what_is_set_plus_extra():
    c = read(EVAL_TEMPERATURE="0", EVAL_EXTRA_BODY='{"chat_template_kwargs": {"thinking": false}}')
    assert c.generation.body() == {"temperature": 0.0, "chat_template_kwargs": {"thinking": False}}


@pytest.mark.parametrize(
    ("url", "api", "expected"),
    [
        ("http://m/v1/chat/completions", None, "chat"),
        ("http://m/v1/completions", None, "completions"),
        ("http://m/v1/completions/", None, "completions"),
        ("http://m/generate", None, "chat"),
        ("http://m/v1/chat/completions", "completions", "completions"),
    ],
    ids=[
        "a chat completions path is chat",
        "a completions path without chat is the legacy API",
        "a trailing slash does not matter",
        "an unknown path defaults to chat",
        "EVAL_API overrides the path",
    ],
)
def test_the_api_follows_the_url_or_eval_api(url, api, expected):
    env = {"EVAL_INFERENCE_URL": url}
    if api:
        env["EVAL_API"] = api
    c = read(**env)
    assert c.model is not None and c.model.api == expected


def test_scorers_are_a_comma_separated_list():
    c = read(EVAL_SCORER="exact_match, Multiple-Choice,numeric,exact_match")
    assert c.scorers == ("exact_match", "multiple_choice", "numeric")


def test_the_judge_has_its_own_service_and_knobs():
    c = read(
        EVAL_SCORER="llm_judge",
        EVAL_JUDGE_URL="http://judge/v1/chat/completions",
        EVAL_JUDGE_AUTHORIZATION_HEADER_VALUE="Bearer j",
        EVAL_JUDGE_CONCURRENCY="3",
        EVAL_JUDGE_RETRIES="5",
    )
    assert c.judge is not None
    assert c.judge.endpoint.header_value == "Bearer j"
    assert (c.judge.concurrency, c.judge.retry.retries) == (3, 5)
    assert "Bearer j" not in repr(c), "secrets stay out of reprs and logs"


def test_credentials_in_a_url_are_not_shown():
    c = read(EVAL_INFERENCE_URL="https://user:pw@m.example:8443/v1/chat/completions?key=s")
    assert c.model is not None
    assert c.model.display_url == "https://m.example:8443/v1/chat/completions"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EVAL_DATASET": ""}, "EVAL_DATASET is not set"),
        ({"MAX_CONCURRENCY": "many"}, "MAX_CONCURRENCY='many' is not a whole number"),
        ({"MAX_CONCURRENCY": "0"}, "MAX_CONCURRENCY='0' must be at least 1"),
        ({"MAX_RETRY_PER_QUERY": "-1"}, "MAX_RETRY_PER_QUERY='-1' must be at least 0"),
        ({"EVAL_TEMPERATURE": "hot"}, "EVAL_TEMPERATURE='hot' is not a number"),
        ({"temperature": "nan"}, "temperature='nan' must be a finite number"),
        ({"EVAL_REQUEST_TIMEOUT": "0"}, "EVAL_REQUEST_TIMEOUT='0' must be greater than 0"),
        ({"EVAL_SCORER": "bleu"}, "unknown scorer bleu"),
        ({"EVAL_SCORER": "regex"}, "EVAL_SCORER_REGEX is not set"),
        ({"EVAL_SCORER": "regex", "EVAL_SCORER_REGEX": "("}, "not a valid pattern"),
        ({"EVAL_SCORER": "llm_judge"}, "EVAL_JUDGE_URL is not set"),
        ({"EVAL_INFERENCE_URL": "m:8000/v1"}, "is not an http(s) URL"),
        ({"EVAL_API": "responses"}, "EVAL_API='responses' must be chat or completions"),
        ({"EVAL_MODE": "both"}, "EVAL_MODE='both'"),
        ({"EVAL_STOP": "[1, 2]"}, "must be a JSON list of strings"),
        ({"EVAL_EXTRA_BODY": "[1]"}, "EVAL_EXTRA_BODY='[1]' must be a JSON object"),
        ({"EVAL_PROMPT_TEMPLATE": "Answer:"}, "must contain {query}"),
        ({"EVAL_TLS_VERIFY": "/no/such/ca.pem"}, "no such CA bundle file"),
    ],
    ids=[
        "no dataset",
        "a concurrency that is no number",
        "a concurrency of zero",
        "negative retries",
        "a temperature that is no number",
        "a lower-case parameter is checked as well",
        "a zero timeout",
        "an unknown scorer",
        "the regex scorer without a pattern",
        "a regex that does not compile",
        "the judge without a service",
        "a URL without a scheme",
        "an unknown API",
        "an unknown mode",
        "stop strings that are not strings",
        "an extra body that is not an object",
        "a template without the query",
        "a CA bundle that does not exist",
    ],
)
def test_mistakes_name_the_variable(env, message):
    with pytest.raises(ConfigError) as error:
        read(**env)
    assert message in str(error.value)
