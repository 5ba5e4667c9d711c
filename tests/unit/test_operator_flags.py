"""The operator's flags: --job-ttl, its environment variable and its default."""

from __future__ import annotations

import pytest

from eval_operator import __main__ as cli
from eval_operator import constants


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        pytest.param([], {}, 86400, id="by default a finished Job stays a day"),
        pytest.param(["--job-ttl=3600"], {}, 3600, id="the flag sets it"),
        pytest.param([], {"EVAL_OPERATOR_JOB_TTL": "600"}, 600, id="the environment sets it"),
        pytest.param(
            ["--job-ttl=60"], {"EVAL_OPERATOR_JOB_TTL": "600"}, 60, id="the flag wins over it"
        ),
        pytest.param(["--job-ttl=0"], {}, 0, id="zero keeps Jobs until their EvalTask goes"),
    ],
)
def test_job_ttl(monkeypatch, argv, env, expected):
    monkeypatch.delenv("EVAL_OPERATOR_JOB_TTL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.parse_args(argv).job_ttl == expected
    assert constants.DEFAULT_JOB_TTL_SECONDS == 86400


@pytest.mark.parametrize(
    "value",
    [pytest.param("-1", id="a negative TTL is refused"), pytest.param("1d", id="so is a word")],
)
def test_a_job_ttl_that_is_no_number_of_seconds_is_refused(monkeypatch, capsys, value):
    monkeypatch.delenv("EVAL_OPERATOR_JOB_TTL", raising=False)
    with pytest.raises(SystemExit):
        cli.parse_args([f"--job-ttl={value}"])
    assert "--job-ttl" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        pytest.param("EVAL_OPERATOR_WORKERS", "4", "workers", 4, id="workers"),
        pytest.param("EVAL_OPERATOR_START_TIMEOUT", "1.5", "start_timeout", 1.5, id="a float"),
        pytest.param("EVAL_OPERATOR_LEADER_ELECT", "off", "leader_elect", False, id="a flag"),
        pytest.param("EVAL_OPERATOR_LOG_LEVEL", "debug", "log_level", "DEBUG", id="a choice"),
        pytest.param("EVAL_OPERATOR_RUNNER_IMAGE", "r:1", "runner_image", "r:1", id="a string"),
    ],
)
def test_every_flag_reads_its_environment_variable(
    monkeypatch, variable, value, attribute, expected
):
    monkeypatch.setenv(variable, value)
    assert getattr(cli.parse_args([]), attribute) == expected


def test_a_bad_environment_value_is_refused_naming_its_flag(monkeypatch, capsys):
    monkeypatch.setenv("EVAL_OPERATOR_WORKERS", "many")
    with pytest.raises(SystemExit):
        cli.parse_args([])
    assert "--workers" in capsys.readouterr().err
