"""Sends N chat requests through lm-evaluation-harness's own request path.

Run with the lm-eval venv's python: `python lm_eval_driver.py URL CONCURRENCY SAMPLES`.
The model is built as lm-eval's evaluator builds it (the registry's `local-chat-completions`,
from a model_args dict), the requests are the Instances a generate_until task with
--apply_chat_template hands it, and they go through `generate_until`, the method the
evaluator calls. With num_concurrent > 1 that sends them all at once over aiohttp, bounded
by a semaphore and a connection limit of num_concurrent.
"""

from __future__ import annotations

import sys

from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model


def main() -> None:
    url, concurrency, samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    lm = get_model("local-chat-completions").create_from_arg_obj(
        {
            "base_url": url,
            "model": "bench",
            "num_concurrent": concurrency,
            "tokenizer_backend": None,
        }
    )
    # As a task's construct_requests builds them: (context, gen_kwargs) per document.
    requests = [
        Instance(
            request_type="generate_until",
            doc={"question": f"q{i}", "answer": "42"},
            arguments=(
                lm.apply_chat_template([{"role": "user", "content": f"q{i}"}]),
                {"until": ["\n"], "max_gen_toks": 32},
            ),
            idx=0,
            metadata=("bench", i, 1),
        )
        for i in range(samples)
    ]
    answers = lm.generate_until(requests)
    assert len(answers) == samples and set(answers) == {"42"}, answers[:5]
    print(f"answers={len(answers)}")


if __name__ == "__main__":
    main()
