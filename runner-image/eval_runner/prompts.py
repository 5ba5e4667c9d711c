"""Request bodies: a sample and the generation parameters into the JSON a service expects.

Chat rows keep their messages as they are (the dataset author chose them); a query row
becomes one user message, after EVAL_PROMPT_TEMPLATE if one is set, and EVAL_SYSTEM_PROMPT
goes first when the conversation has no system message of its own. The legacy completions
API takes one prompt string, so a conversation is rendered as `role: content` lines ending
with `assistant:`.
"""

from __future__ import annotations

from typing import Any

from eval_runner.config import Config, Endpoint
from eval_runner.samples import Message, Sample


def messages(sample: Sample, system_prompt: str | None, template: str | None) -> list[Message]:
    if sample.messages is not None:
        out = [dict(m) for m in sample.messages]
    else:
        query = sample.query or ""
        content = template.replace("{query}", query) if template else query
        out = [{"role": "user", "content": content}]
    if system_prompt and not any(m["role"] == "system" for m in out):
        out.insert(0, {"role": "system", "content": system_prompt})
    return out


def prompt(sample: Sample, system_prompt: str | None, template: str | None) -> str:
    if sample.messages is None and not system_prompt:
        query = sample.query or ""
        return template.replace("{query}", query) if template else query
    lines = [f"{m['role']}: {m['content']}" for m in messages(sample, system_prompt, template)]
    return "\n".join([*lines, "assistant:"])


def request_body(sample: Sample, config: Config, endpoint: Endpoint) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if endpoint.model:
        body["model"] = endpoint.model
    if endpoint.api == "chat":
        body["messages"] = messages(sample, config.system_prompt, config.prompt_template)
    else:
        body["prompt"] = prompt(sample, config.system_prompt, config.prompt_template)
    body.update(config.generation.body())
    return body


def judge_body(prompt_text: str, endpoint: Endpoint) -> dict[str, Any]:
    """The judge grades deterministically: temperature 0."""
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": prompt_text}],
        "temperature": 0,
    }
    if endpoint.model:
        body["model"] = endpoint.model
    return body
