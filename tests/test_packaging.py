"""Packaging: the licence ships, test tools are an extra, and no other distribution
provides the project's top-level package names."""
from __future__ import annotations

import tomllib
from importlib import metadata

from tests.conftest import REPO

PACKAGES = ("zoo", "converters", "bench")


def _providers(package: str) -> set[str]:
    names = set()
    for dist in metadata.distributions():
        top = (dist.read_text("top_level.txt") or "").split()
        files = {str(f).split("/")[0] for f in dist.files or []}
        if package in top or package in files:
            names.add(dist.metadata["Name"])
    return names


def test_no_other_distribution_provides_our_packages():
    for package in PACKAGES:
        assert _providers(package) <= {"modelzoo"}, (package, _providers(package))


def test_licence_and_dev_extra():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert "Apache License" in (REPO / "LICENSE").read_text()[:200]
    assert not any(d.startswith("pytest") for d in project["dependencies"])
    assert any(d.startswith("pytest") for d in project["optional-dependencies"]["dev"])


def test_ray_is_an_extra_the_dev_extra_includes():
    """`--executor ray` needs Ray (~240 MB installed): the `cluster` extra, not a plain
    install; `dev` has it so the executor tests run a real local cluster."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert not any(d.startswith("ray") for d in project["dependencies"])
    assert any(d.startswith("ray") for d in extras["cluster"])
    assert any(d.startswith("ray") for d in extras["dev"])
