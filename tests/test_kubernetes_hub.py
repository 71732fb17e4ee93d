"""values.yaml's hub for real, on this machine: students' servers from the students' image, graded outside.

No cluster runs here, so what Kubernetes would run is played by containers (``e2e_support/kubernetes_hub.py``):
the chart's JupyterHub (``versions.env``) spawns each student's server from the students' image with
DockerSpawner, as values.yaml sets a pod up (its image, volumes, role layers and per-person uid); the
grader's pod is the grader's image run with course-service.yaml's user, environment, volumes and init
containers, and docker's default confinement (what a "restricted" namespace allows: no unmasked /proc).

One scenario, in steps: the grader's pod releases 04_practice; ada fetches, answers and submits from her
server; bert submits his own and then one in ada's name from his terminal; the pod collects (ada's own
counts, bert's forgery is refused); the submissions are graded outside the cluster (this machine, as
docs/instructor.md's "Grading outside the cluster" does it on a VM) and the feedback goes back through the
pod to each student. About a minute.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import requests

from autograder import notebook as nbu
from autograder.commands.collect import derived_uid
from e2e_support.hub import feedback_score, find_proxy, ok_json
from e2e_support.kubernetes_hub import KubernetesHub, chart_jupyterhub
from practice import practice_answer_sources, practice_letters, practice_questions, wrong_letters

ROOT = Path(__file__).resolve().parents[1]
COURSE, A = "lora-qlora", "04_practice"
NB = f"{A}.ipynb"
ADA, BERT = "ada", "bert"
AUTOGRADER = Path(sys.executable).parent / "autograder"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tmp_path_factory, images, docker):
    if chart_jupyterhub() is None or find_proxy() is None:
        pytest.fail("the chart's JupyterHub (.e2e/hub) or the proxy (.e2e/node) is missing: run ./setup")
    h = KubernetesHub(
        tmp_path_factory.mktemp("k8s-hub"),
        instructors=[],
        students=[ADA, BERT],
        docker=docker,
        grader_image=images.tags()["grader"],
        service=images.service_pod(),
    )
    try:
        try:
            h.init_pod()
            h.start()
            for user in (ADA, BERT):
                h.spawn(user)
            for user in (ADA, BERT):
                h.wait_ready(user)
        except Exception as exc:
            raise AssertionError(f"the hub did not come up: {exc}\n--- end of {h.log} ---\n{h.log_tail()}") from exc
        yield h
    finally:
        h.stop()
        leftover = subprocess.run(
            [docker, "ps", "-aq", "--filter", f"name={h.tag_value[:8]}"], capture_output=True, text=True
        ).stdout.split()
        if leftover:
            subprocess.run([docker, "rm", "-f", *leftover], capture_output=True)
        assert not leftover, f"servers' containers left after the hub stopped: {leftover}"


def api(h, method: str, user: str, path: str, **kw):
    """``user``'s own server's API, as their browser calls it."""
    return ok_json(h.request(method, f"/user/{user}{path}", h.token(user), **kw), f"{user}: {method} {path}")


def answer_and_save(h, user: str, sources: dict[str, str]) -> None:
    url = f"/api/contents/{COURSE}/{A}/{NB}"
    nb = nbformat.from_dict(api(h, "GET", user, url)["content"])
    for cell in nb.cells:
        cell.source = sources.get(nbu.cell_id(cell), cell.source)
    api(h, "PUT", user, url, json={"type": "notebook", "format": "json", "content": nb})


def test_the_chart_s_hub_serves_the_students_image_at_its_own_version(hub, images):
    want = images.versions()["JUPYTERHUB_VERSION"]
    assert requests.get(f"{hub.base}/hub/api/", timeout=30).json()["version"] == want
    server = hub.in_server(ADA, "jupyterhub-singleuser", "--version")
    assert server.stdout.strip() == want, server
    # Each person's server runs as their own uid, as values.yaml's 30-per-user-uid.py gives it.
    for user in (ADA, BERT):
        assert hub.in_server(user, "id", "-u").stdout.strip() == str(derived_uid(user))


def test_a_student_fetches_answers_and_submits(hub):
    released = hub.grader("nbgrader", "release_assignment", A)
    assert released.returncode == 0, released.stderr[-2000:]
    for user in (ADA, BERT):
        listing = api(hub, "GET", user, "/assignments", params={"course_id": COURSE})["value"]
        assert [(a["assignment_id"], a["status"]) for a in listing] == [(A, "released")]
        api(hub, "POST", user, "/assignments/fetch", data={"course_id": COURSE, "assignment_id": A})
        fetched = hub.homes / user / COURSE / A / NB
        assert fetched.stat().st_uid == derived_uid(user), "the fetched copy belongs to the student's own uid"
    answer_and_save(hub, ADA, practice_answer_sources(practice_letters()))
    answer_and_save(hub, BERT, practice_answer_sources(lambda n: wrong_letters(n)[0]))
    for user in (ADA, BERT):
        body = api(hub, "POST", user, "/assignments/submit", data={"course_id": COURSE, "assignment_id": A})
        submitted = [s["student_id"] for a in body["value"] if a["status"] == "submitted" for s in a["submissions"]]
        assert submitted == [user]
    hub.state["submitted"] = True


def test_a_submission_in_another_students_name_is_refused_at_collect(hub):
    if not hub.state.get("submitted"):
        pytest.fail("needs the earlier step: the students' own submissions")
    # bert, in his own terminal: the exchange takes it (nbgrader's plain exchange cannot say no) ...
    forged = hub.in_server(BERT, "nbgrader", "submit", A, "--student", ADA)
    assert forged.returncode == 0, forged.stderr[-2000:]
    # ... and the grader's collect refuses it: ada's own submission counts, not bert's newer one.
    collected = hub.grader("nbgrader", "collect", A)
    assert collected.returncode == 0, collected.stderr[-2000:]
    refused = [line for line in collected.stderr.splitlines() if "Refused" in line]
    assert len(refused) == 1 and "claims to be 'ada'" in refused[0], collected.stderr[-2000:]
    assert f"made by uid {derived_uid(BERT)}, not by the student's uid {derived_uid(ADA)}" in refused[0]
    for user, letters in ((ADA, practice_letters()), (BERT, lambda n: wrong_letters(n)[0])):
        got = nbformat.read(hub.course_dir / "submitted" / user / A / NB, as_version=4)
        sources = {nbu.cell_id(c): c.source for c in got.cells}
        assert all(sources[k] == v for k, v in practice_answer_sources(letters).items()), f"{user}'s did not arrive"
    hub.state["collected"] = True


def test_graded_outside_the_cluster_the_feedback_reaches_each_student(hub, tmp_path):
    """docs/instructor.md's way for a cluster whose Pod Security forbids the grading sandbox: copy the
    submissions out of the pod, grade on a machine with the course (here: this one), copy the results back
    and release the feedback from the pod."""
    if not hub.state.get("collected"):
        pytest.fail("needs the earlier step: the collect")
    vm = tmp_path / "lora-qlora"  # the machine's clone of the course
    vm.mkdir()
    shutil.copy2(ROOT / "nbgrader_config.py", vm)
    for folder in ("source", "release"):
        shutil.copytree(ROOT / folder / A, vm / folder / A)
    # kubectl cp <pod>:/home/jovyan/lora-qlora/{submitted,gradebook.db} .
    shutil.copytree(hub.course_dir / "submitted", vm / "submitted")
    shutil.copy2(hub.course_dir / "gradebook.db", vm)
    for command in ("grade", "feedback"):
        done = subprocess.run([str(AUTOGRADER), command, A], cwd=vm, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"autograder {command}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    # kubectl cp gradebook.db autograded feedback <pod>:/home/jovyan/lora-qlora/ (as the pod's user)
    for name in ("autograded", "feedback"):
        shutil.copytree(vm / name, hub.course_dir / name, dirs_exist_ok=True)
    shutil.copy2(vm / "gradebook.db", hub.course_dir / "gradebook.db")
    subprocess.run(["chown", "-R", "1000:100", str(hub.course_dir)], check=True)
    released = hub.grader("nbgrader", "release_feedback", A)
    assert released.returncode == 0, released.stderr[-2000:]

    total = sum(q.points for q in practice_questions().values())
    for user, expected in ((ADA, total), (BERT, 0)):
        api(hub, "POST", user, "/assignments/fetch_feedback", data={"course_id": COURSE, "assignment_id": A})
        pages = list((hub.homes / user / COURSE / A / "feedback").rglob(f"{A}.html"))
        assert len(pages) == 1, f"{user} got {pages}"
        assert feedback_score(pages[0].read_text()) == (expected, total), user
