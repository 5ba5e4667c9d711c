"""Evaluates N samples through evalscope's own request path.

Run with the evalscope venv's python: `python evalscope_driver.py URL CONCURRENCY SAMPLES`.
This is `evalscope eval --eval-type openai_api` (run_task) on a local general_qa set of N
samples with eval_batch_size = CONCURRENCY: evalscope then predicts and scores the samples
in a thread pool of that size, each thread calling the OpenAI SDK's synchronous client.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from evalscope import TaskConfig, run_task
from evalscope.benchmarks.general_qa_vqa_metrics import calculate_metric_score


def main() -> None:
    url, concurrency, samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # The first Rouge score imports jieba and rouge_chinese (~1.5 s, every worker waiting on
    # the import): start-up, not throughput, so it is done before the first request.
    calculate_metric_score("Rouge", "42", "42")

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        data.mkdir()
        (data / "set.jsonl").write_text(
            "".join(json.dumps({"query": f"q{i}", "response": "42"}) + "\n" for i in range(samples))
        )
        config = TaskConfig(
            model="bench",
            api_url=url.removesuffix("/chat/completions"),
            api_key="bench",
            eval_type="openai_api",
            datasets=["general_qa"],
            # Rouge, as hack/fixtures/evalscope/record.sh: BLEU needs NLTK's data online.
            dataset_args={
                "general_qa": {
                    "local_path": str(data),
                    "subset_list": ["set"],
                    "metric_list": ["Rouge"],
                }
            },
            eval_batch_size=concurrency,
            work_dir=str(Path(folder) / "out"),
        )
        report = run_task(config)["general_qa"]
    done = report.execution_summary.succeeded
    assert done == samples, report.execution_summary
    print(f"answers={done}")


if __name__ == "__main__":
    main()
