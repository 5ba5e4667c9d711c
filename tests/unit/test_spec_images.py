"""A task's image reference: a tag or digest in `image`, or `version`, never both."""

from __future__ import annotations

import pytest

from eval_operator import crd, spec

DIGEST = "sha256:" + "a" * 64
UNSET = object()


def parse(image, version=UNSET):
    task = {"name": "t1", "image": image}
    if version is not UNSET:
        task["version"] = version
    return spec.parse_spec({"models": [{"name": "m1", "url": "http://m/v1"}], "tasks": [task]})


@pytest.mark.parametrize(
    ("image", "version", "ref"),
    [
        pytest.param("repo/evals", UNSET, "repo/evals:latest", id="an image alone runs latest"),
        pytest.param("repo/evals", "v1", "repo/evals:v1", id="a version is the image's tag"),
        pytest.param("repo/evals", DIGEST, f"repo/evals@{DIGEST}", id="a digest version uses @"),
        pytest.param("repo/evals:v2", UNSET, "repo/evals:v2", id="a tag in image is kept"),
        pytest.param(
            f"repo/evals@{DIGEST}", UNSET, f"repo/evals@{DIGEST}", id="a digest in image is kept"
        ),
        pytest.param(
            f"repo/evals:v2@{DIGEST}",
            UNSET,
            f"repo/evals:v2@{DIGEST}",
            id="a tag and digest in image are kept",
        ),
        pytest.param(
            "localhost:5000/evals",
            UNSET,
            "localhost:5000/evals:latest",
            id="a registry port is no tag",
        ),
        pytest.param(
            "localhost:5000/evals", "v1", "localhost:5000/evals:v1", id="a port with a version"
        ),
        pytest.param(
            "localhost:5000/evals:v3",
            UNSET,
            "localhost:5000/evals:v3",
            id="a port and a tag in image are kept",
        ),
    ],
)
def test_the_image_reference(image, version, ref):
    assert parse(image, version).tasks[0].image_ref == ref


@pytest.mark.parametrize(
    ("image", "version"),
    [
        pytest.param("repo/evals:v2", "v1", id="a tag in image and a version are refused"),
        pytest.param(
            "repo/evals:v2", "latest", id="a tag in image and an explicit latest are refused"
        ),
        pytest.param(
            f"repo/evals@{DIGEST}", "v1", id="a digest in image and a version are refused"
        ),
        pytest.param(
            "localhost:5000/evals:v2", "v1", id="a tag after a registry port and a version"
        ),
    ],
)
def test_a_tag_in_image_and_a_version_name_the_field(image, version):
    with pytest.raises(spec.SpecInvalid) as e:
        parse(image, version)
    [problem] = e.value.problems
    assert (problem.field, problem.reason) == ("spec.tasks[0].version", "ImageTagConflict")
    assert "image" in problem.message and "version" in problem.message


def test_the_crd_refuses_a_tag_in_image_with_a_version():
    task = crd.build("evaltask")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]["properties"]["tasks"]["items"]
    rules = task["x-kubernetes-validations"]
    assert any("self.version" in r["rule"] and "self.image" in r["rule"] for r in rules), rules
