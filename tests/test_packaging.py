"""The environment descriptions agree, and CI runs what the README promises."""

from __future__ import annotations

import re
import tomllib

import yaml

from harness import ROOT


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins(requirements) -> dict[str, str]:
    pins = {}
    for req in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([\w.+]+)", req.strip())
        assert match, f"{req!r} is not pinned with =="
        pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_environment_yml_pins_what_pyproject_pins():
    project = _pyproject()["project"]
    expected = _pins(project["dependencies"] + project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section, "the image must install the course's own packages"
    assert _pins([p for p in pip_section if p != "-e ."]) == expected


def test_torch_is_pinned_to_the_cpu_build_on_disk():
    assert _pins(_pyproject()["project"]["dependencies"])["torch"] == "2.13.0"


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:sh|bash)\n(.+?)\n```", setup, flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    install, tests = commands
    assert install == "./setup", install
    script = (ROOT / "setup").read_text()
    for step in (
        "apt-get install",
        "bubblewrap",
        "chromium",
        "pip install",
        "-e '.[test]'",
        "configurable-http-proxy",
        "autograder demo",
    ):
        assert step in script, f"./setup does not {step}"
    assert "pytest" in tests


def test_ci_runs_the_readme_commands_and_nothing_more():
    ci = (ROOT / ".ci" / "run").read_text()
    steps = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    # The shell's strict mode and moving to the repository root are no set-up of their own.
    steps = [s for s in steps if not s.startswith(("set -", "cd "))]
    assert steps == _readme_commands()


def test_the_package_says_what_it_is_and_under_which_licence():
    project = _pyproject()["project"]
    version = project["version"]
    assert project["license"] == "MIT AND CC-BY-4.0" and project["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text()
    assert (
        "MIT License" in licence
        and "CC BY 4.0" in licence
        and f"SPDX-License-Identifier: {project['license']}" in licence
    )
    assert project["authors"] and project["classifiers"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["version"] == version
    assert citation["license"] == project["license"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(version)} \(\d{{4}}-\d\d-\d\d\)$", changelog, re.M), (
        "no CHANGELOG entry for this version"
    )
    assert citation["date-released"] in changelog, "CITATION.cff and CHANGELOG.md disagree on the release date"
