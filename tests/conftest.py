"""Fixtures and hooks every test file shares; the importable helpers are in ``harness.py``.

Kept light: nothing here imports the grader until a fixture that needs it runs, so
``pytest -m "not slow"`` and the files that never grade stay quick to start.
"""

from __future__ import annotations

import pytest


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``case`` in a ``MistakeTests`` class: one test per (mistake, cell) of its table, id ``mistake-cell``.

    A pair the table lists as ``untaught`` (the cell fails, but with a bare exception instead of a
    teaching message) is a strict xfail: it turns red the day the message appears, so the mark goes.
    """
    table = getattr(metafunc.cls, "table", None)
    if table is None or "case" not in metafunc.fixturenames:
        return
    metafunc.parametrize("case", table.params())


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses a table's grades runs students' code in sandboxed kernels: it is slow, marked or not."""
    for item in items:
        grading = {"table_grades", "threaded_grades"} & set(getattr(item, "fixturenames", ()))
        if grading and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The whole nbgrader runs the selected tests will need (one per assignment, see
    ``harness.pipeline``) begin in the background now, in the order the tests will ask for them."""
    tables = []
    for item in session.items:
        cls, module = getattr(item, "cls", None), getattr(item, "module", None)
        if getattr(item, "originalname", "") == "test_the_whole_pipeline_gives_the_seams_verdicts" and cls:
            tables.append(cls.table)
        elif module is not None and module.__name__ == "test_checks":
            tables += list(module.TABLES.values())
    if tables:
        from harness import start_pipelines

        start_pipelines(tables)


def pytest_sessionfinish(session: pytest.Session) -> None:
    import sys

    harness = sys.modules.get("harness")
    if harness is not None:
        harness.stop_pipelines()


@pytest.fixture(scope="class")
def table_grades(request: pytest.FixtureRequest):
    """The class's ``table`` judged once per session through the judge's seam, with one math thread:
    ``{student id: Graded}``, the right-differently student included."""
    return request.cls.table.graded()[1]


@pytest.fixture(scope="class", params=["1", "2"], ids=lambda n: f"OMP_NUM_THREADS={n}")
def threaded_grades(request: pytest.FixtureRequest):
    """``(table, grades)``: the class's ``table`` judged with ``OMP_NUM_THREADS`` at 1 and at 2 (the sandbox
    passes it to the kernel); at 1, the whole table's grades, which name its students."""
    return request.cls.table.graded(request.param)


@pytest.fixture(scope="session")
def sandbox_ready() -> None:
    """Fails (never skips) the tests that use it when the grading sandbox cannot run: run ./setup."""
    from harness import require_sandbox

    require_sandbox()


@pytest.fixture(scope="session")
def images():
    """``deploy/kubernetes/images.py``, the images' build-context rule, build and scan (a script, not a
    package module: loaded from its file)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes" / "images.py"
    spec = importlib.util.spec_from_file_location("images", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def docker(images) -> str:
    """The docker client, with both images built from this working tree and tagged as the deployment
    names them (seconds when ./setup built them from the same files: BuildKit's cache). Fails, never
    skips, where no docker daemon answers: ./setup installs and starts one."""
    import subprocess

    docker = images.docker_cli()
    try:
        images.build(wheels=images._find_links())
    except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        pytest.fail(f"the images did not build ({exc}); ./setup starts a docker daemon and builds them once")
    return docker
