"""eval_runner: the code that runs inside evaluation Jobs.

`run` evaluates an OpenAI-compatible model service on a dataset and writes metrics.json
(runner-image/README.md); `collect` reads the task's metrics.json and hands the
validated, compressed result to the operator through the pod's termination message.
"""

__version__ = "0.1.0"
