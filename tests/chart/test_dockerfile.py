"""operator/Dockerfile, which the chart's Deployment runs: no Docker engine here to build it,
so its promises are read from the file: multi-stage, slim, non-root, the right entry point.
"""

from __future__ import annotations

import json
import re

from localkube.cluster import ROOT

DOCKERFILE = ROOT / "operator" / "Dockerfile"


def stages() -> list[list[str]]:
    """The instructions of each stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    result: list[list[str]] = []
    for instruction in instructions:
        if instruction.startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def test_a_builder_makes_the_wheel_and_the_final_stage_only_installs_it():
    builder, final = stages()
    # Both stages build FROM the BASE argument, a public slim Python image by default.
    assert re.search(r"^ARG BASE=python:\S+-slim\S*$", DOCKERFILE.read_text(), re.M)
    assert builder[0] == "FROM ${BASE} AS builder"
    assert any(i.startswith("RUN pip wheel") for i in builder)
    assert final[0] == "FROM ${BASE}"
    install = " ".join(i for i in final if i.startswith("RUN"))
    assert "from=builder" in install and "--no-index" in install
    assert not re.search(r"apt-get|build-essential|gcc|COPY \. ", " ".join(final))


def test_it_runs_as_a_numeric_non_root_user_with_the_operators_entry_point():
    final = stages()[-1]
    [user] = [i for i in final if i.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    [entrypoint] = [i for i in final if i.startswith("ENTRYPOINT ")]
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["python", "-m", "eval_operator"]
    # The chart's pod runs as that user.
    values = (ROOT / "charts" / "eval-operator" / "values.yaml").read_text()
    assert f"runAsUser: {uid}" in values
