"""End to end: the runner image as an EvalTask's task, against a mock model service.

The image's entry point is `python -m eval_runner`, so the task gives no command, only
`args: ["run"]`, as a user would. The expected
scores follow from the builtin dataset and the mock's deterministic answer rule.
"""

from __future__ import annotations

import pytest

from eval_runner import config, samples
from localkube import realnode
from localkube.mockmodel import MockModel
from tests.e2e.support import model, namespace

pytestmark = pytest.mark.e2e
TOKEN = "Bearer e2e-runner-token"


@pytest.fixture
def api(cluster, api_client):
    with namespace(api_client, TOKEN) as the_api:
        yield the_api


def runner_task(name: str, dataset: str, scorers: str, primary: str | dict, **env: str) -> dict:
    """`primary`: the primaryMetric, or metricWeights (metric -> weight); `env`: more
    variables for the task."""
    rule = {"metricWeights": primary} if isinstance(primary, dict) else {"primaryMetric": primary}
    return {
        "name": name,
        "image": "eval-operator/runner",
        "version": "0.1.0",
        "args": ["run"],
        "env": [
            {"name": "EVAL_DATASET", "value": f"builtin:{dataset}"},
            {"name": "EVAL_SCORER", "value": scorers},
            *({"name": k, "value": v} for k, v in env.items()),
        ],
        **rule,
        "timeoutSeconds": 120,
    }


def test_the_runner_image_scores_a_model_through_the_operator(api):
    rows = samples.load("builtin:arithmetic", config.Fields())
    answers = {s.query: s.answers[0] for s in rows if s.query}
    with MockModel.answering(
        "m1", answers, accuracy=0.6, token=TOKEN, backlog=64, host=realnode.NODE_IP
    ) as mock:
        right = sum(mock.answer(s.query or "") == s.answers[0] for s in rows)
        api.create_evaltask(
            "runner",
            {
                "models": [model("m1", mock.url)],
                "tasks": [
                    # The second process as well, in the image, with the auth header.
                    runner_task(
                        "arithmetic",
                        "arithmetic",
                        "exact_match,numeric",
                        "exact_match",
                        EVAL_HTTP_PROCESS="true",
                    ),
                    runner_task(
                        "graded",
                        "qa-predictions",
                        "exact_match,contains",
                        {"exact_match": 1, "contains": 3},
                    ),
                ],
            },
        )
        status = api.wait_phase("runner", ("Succeeded", "Failed"))
    assert status["phase"] == "Succeeded", status
    expected = round(right / len(rows), 6)
    assert 0.3 < expected < 0.9, "the mock answers some questions right, not all"
    arithmetic = api.run("runner", "m1", "arithmetic")["metrics"]
    assert arithmetic["exact_match"] == arithmetic["numeric"] == expected
    assert (arithmetic["samples"], arithmetic["errors"]) == (len(rows), 0)
    assert arithmetic["prompt_tokens"] == 10 * len(rows)
    assert 0 < arithmetic["latency_p95_seconds"] < 5
    # Evaluation only: the rows carry the answers; the model is not called.
    graded = api.run("runner", "m1", "graded")["metrics"]
    assert (graded["exact_match"], graded["contains"], graded["samples"]) == (0.4, 0.666667, 30)
    assert "latency_mean_seconds" not in graded
    assert (mock.requests, mock.unauthorized) == (len(rows), 0)
    # graded's score: its metricWeights' weighted mean.
    assert api.run("runner", "m1", "graded")["score"] == pytest.approx((0.4 + 3 * 0.666667) / 4)
    assert status["leaderboard"] == [
        {"model": "m1", "score": pytest.approx((expected + 0.6000002) / 2), "rank": 1, "tasks": 2}
    ]
