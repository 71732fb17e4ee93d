"""The deployments carry what the course needs, and the Kubernetes one agrees with the single-machine one.

deploy/kubernetes/values.yaml (Zero to JupyterHub), its Dockerfile and manifests are read as
data; deploy/jupyterhub/jupyterhub_config.py and its nbgrader layers are executed against a
plain traitlets ``Config``, as JupyterHub and nbgrader would load them.
"""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from traitlets.config import Config

# Not harness.ROOT: importing the harness loads nbgrader and the grader, seconds for nothing here.
ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
HUB = ROOT / "deploy" / "jupyterhub"
HUB_CONFIG = HUB / "jupyterhub_config.py"
COURSE_ID = "lora-qlora"
# Where the Dockerfile copies deploy/jupyterhub/config inside the image.
IMAGE_LAYERS = "/etc/jupyter/lora-qlora"


def _yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _values() -> dict:
    return yaml.safe_load((K8S / "values.yaml").read_text())


def _profiles() -> list[dict]:
    return _values()["singleuser"]["profileList"]


def _gpu_profile() -> dict:
    gpu = [
        p for p in _profiles() if "nvidia.com/gpu" in p.get("kubespawner_override", {}).get("extra_resource_limits", {})
    ]
    assert len(gpu) == 1, "exactly one profile asks for a GPU"
    return gpu[0]


def _exec_config(path: Path, env: dict[str, str] | None = None, monkeypatch=None) -> Config:
    """Load a traitlets config file the way Jupyter does: ``c`` and ``get_config`` in its globals."""
    if monkeypatch is not None:
        for name in list(os.environ):
            if name.startswith(("COURSE_", "NBGRADER_", "JUPYTER_CONFIG")):
                monkeypatch.delenv(name)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
    c = Config()
    exec(compile(path.read_text(), str(path), "exec"), {"c": c, "get_config": lambda: c, "__file__": str(path)})
    return c


def _hub_exchange_root(monkeypatch) -> str:
    """The exchange root deploy/jupyterhub's nbgrader layers use by default."""
    common = HUB / "config" / "common" / "nbgrader_config.py"
    assert common.exists(), "deploy/jupyterhub/config/common/nbgrader_config.py sets the exchange"
    c = _exec_config(common, monkeypatch=monkeypatch)
    assert c.Exchange.path_includes_course is True
    assert c.CourseDirectory.course_id == COURSE_ID
    return c.Exchange.root


def _extra_config(name: str) -> str:
    return _values()["hub"]["extraConfig"][name]


def _host_path(image_path: str) -> Path:
    """A path under the image's config layers, as a path of the repository."""
    assert image_path.startswith(IMAGE_LAYERS + "/"), image_path
    return HUB / "config" / image_path[len(IMAGE_LAYERS) + 1 :]


# --- the image ---------------------------------------------------------------------------


def _dockerfile(image: str = "grader") -> str:
    return (K8S / f"Dockerfile.{image}").read_text()


def test_students_and_the_course_service_run_their_own_images():
    image = _values()["singleuser"]["image"]
    assert image["name"] and "/" in image["name"], "a registry path the cluster can pull"
    assert isinstance(image["tag"], str) and image["tag"], "a quoted tag (YAML would make 0.10 a float)"
    assert image["name"].endswith("-students"), "students' pods run the image without solutions"
    docs = _yaml_docs(K8S / "course-service.yaml")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    grader = image["name"].removesuffix("-students") + f"-grader:{image['tag']}"
    for container in spec["containers"] + spec["initContainers"]:
        assert container["image"] == grader, "the formgrader runs the grader's image, at the students' tag"


def test_the_students_build_context_holds_no_solution_and_no_hidden_test(tmp_path, images):
    rule = images
    names = rule.assemble(tmp_path / "students")
    assert rule.leaks(tmp_path / "students") == []
    assert {f"release/{a}/{a}.ipynb" for a in ("01_lora_basics", "05_qlora_lab")} <= set(names)
    assert "autograder/compare.py" in names and not any(n.startswith(("source/", "tests/")) for n in names)
    # Every COPY of the students' Dockerfile finds its source in that context.
    for src in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", _dockerfile("students"), flags=re.M):
        for path in src.split():
            assert (tmp_path / "students" / path).exists(), f"COPY {path}: not in the students' context"
    # The scan finds what the allow-list must never take: the source notebooks, or a marker anywhere.
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl").write_bytes(b"PK")
    with_wheel = rule.assemble(tmp_path / "with-wheel", wheels=tmp_path / "wheels")
    assert with_wheel[-1] == "wheels/torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl"
    assert (tmp_path / "with-wheel" / with_wheel[-1]).read_bytes() == b"PK" and (tmp_path / "students/wheels").is_dir()
    rule.assemble(tmp_path / "bad", allowed=(*rule.STUDENTS, "source/04_practice"))
    assert any(line.startswith("source/04_practice/") for line in rule.leaks(tmp_path / "bad"))
    (tmp_path / "students" / "course" / "notes.py").write_text("### BEGIN HIDDEN TESTS\n")
    assert rule.leaks(tmp_path / "students") == ["course/notes.py: contains 'BEGIN HIDDEN TESTS'"]


def test_both_images_speak_the_chart_s_jupyterhub(images):
    versions = images.versions()
    assert versions["JUPYTERHUB_VERSION"].split(".")[0] == "5", "z2jh 4.x ships JupyterHub 5"
    for image in ("students", "grader"):
        arg = re.search(r"^ARG JUPYTERHUB_VERSION=(\S+)$", _dockerfile(image), flags=re.M)
        assert arg and arg.group(1) == versions["JUPYTERHUB_VERSION"], image
    assert '"jupyterhub==${JUPYTERHUB_VERSION}"' in _dockerfile("students")
    assert "assert jupyterhub.__version__ == sys.argv[1]" in _dockerfile("grader"), "the grader checks its base"
    chart = versions["Z2JH_CHART"]
    assert f"--version {chart} --values deploy/kubernetes/values.yaml" in (K8S / "values.yaml").read_text()
    assert f"--version {chart} --values deploy/kubernetes/values.yaml" in (ROOT / "docs" / "instructor.md").read_text()


def test_the_images_install_environment_yml_s_pins_without_the_editable_install():
    text = _dockerfile("students")
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, flags=re.M) and "useradd --create-home --uid 1000" in text
    match = re.search(r"sed -n '([^']+)' /opt/lora-qlora/environment\.yml\s*\\?\s*\| grep -v '([^']+)' > (\S+)", text)
    assert match, "environment.yml's pins, less the editable install and the hub's JupyterHub, are the image's"
    script, dropped, pins = match.groups()
    kept = subprocess.run(
        ["sed", "-n", script, str(ROOT / "environment.yml")], capture_output=True, text=True, check=True
    )
    kept = [line for line in kept.stdout.splitlines() if not re.match(dropped, line)]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert kept == [p for p in pip if p != "-e ." and not p.startswith("jupyterhub==")]
    assert "torch==2.13.0" in kept and "nbgrader==0.9.6" in kept
    assert re.search(rf"pip install [^\n]*-r {re.escape(pins)} \"jupyterhub==\$\{{JUPYTERHUB_VERSION\}}\"", text)
    grader = _dockerfile("grader")
    assert re.search(r"^FROM \$\{STUDENTS_IMAGE\}$", grader, flags=re.M), "the grader grades in the students' packages"
    assert re.search(r"pip install [^\n]*--no-deps [^\n]*/tmp/lora-qlora", grader)
    assert "bubblewrap" in grader and "bubblewrap" not in _dockerfile("students"), "the sandbox is the grader's"


def test_dockerfile_copies_only_what_exists_and_keeps_grading_output_out():
    for src, dest in re.findall(r"^COPY (?:--\S+ )*(\S+) (\S+)$", _dockerfile(), flags=re.M):
        assert (ROOT / src).exists(), f"COPY {src}: no such path in the repository"
        if src == "deploy/jupyterhub/config":
            assert dest == IMAGE_LAYERS
    ignored = (K8S / "Dockerfile.grader.dockerignore").read_text().split()
    for path in (".venv", ".git", "submitted", "autograded", "feedback", "gradebook.db"):
        assert path in ignored, f"{path} must not go into the image"


def test_image_bakes_the_gpu_labs_model_into_its_hub_cache():
    from course.gpu_study import DEFAULT_MODEL

    text = _dockerfile("students")
    home = re.search(r"^ENV HF_HOME=(\S+)", text, flags=re.M)
    assert home, "the Hugging Face cache must live at a fixed place in the image"
    bake = re.search(r"python -c \"(.+?snapshot_download\(sys.argv\[1\].+?)\" \"\$\{GPU_MODEL\}\"", text)
    assert bake, "the lab's GPU model is downloaded into the cache at build time"
    assert re.search(r"^ARG GPU_MODEL=(\S+)$", text, flags=re.M).group(1) == DEFAULT_MODEL
    assert text.index("ENV HF_HOME") < bake.start() < text.index("ENV HF_HUB_OFFLINE=1")
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", DEFAULT_MODEL)
    assert "snapshot_download" not in _dockerfile("grader"), "the grader inherits the students' cache"


def test_each_image_defaults_to_its_own_layers():
    for image, first in (("students", "/students"), ("grader", "/grader")):
        env = re.search(r"^ENV JUPYTER_CONFIG_PATH=(\S+)", _dockerfile(image), flags=re.M)
        assert env, image
        layers = env.group(1).split(":")
        assert layers[0].endswith(first) and layers[-1].endswith("/common"), image
        for layer in layers:
            assert _host_path(layer).is_dir(), layer


# --- profiles ----------------------------------------------------------------------------


def test_default_profile_is_cpu_only():
    defaults = [p for p in _profiles() if p.get("default")]
    assert len(defaults) == 1, "exactly one default profile"
    override = defaults[0].get("kubespawner_override", {})
    assert "nvidia.com/gpu" not in override.get("extra_resource_limits", {})
    assert "nvidia.com/gpu" not in _values()["singleuser"].get("extraResource", {}).get("limits", {})


def test_gpu_profile_asks_for_one_gpu_and_memory_backed_shm():
    override = _gpu_profile()["kubespawner_override"]
    assert override["extra_resource_limits"]["nvidia.com/gpu"] == "1"  # a quoted quantity
    volumes = list(override["volumes"].values())
    mounts = list(override["volume_mounts"].values())
    shm = [m for m in mounts if m["mountPath"] == "/dev/shm"]
    assert len(shm) == 1
    volume = next(v for v in volumes if v["name"] == shm[0]["name"])
    assert volume["emptyDir"]["medium"] == "Memory"


class _FakeSpawner:
    """KubeSpawner's rule for kubespawner_override (``_apply_overrides``, 7.x): a dict merges
    into a dict-valued setting, key by key; anything else replaces the setting."""

    def __init__(self, config: Config):
        self.volumes = config.KubeSpawner.volumes
        self.volume_mounts = config.KubeSpawner.volume_mounts

    def apply(self, override: dict):
        for key in ("volumes", "volume_mounts"):
            value, current = override.get(key), getattr(self, key)
            if value is None:
                continue
            if isinstance(value, dict) and isinstance(current, dict):
                current.update(value)
            else:
                setattr(self, key, value)

    @staticmethod
    def listed(items):
        return [items[k] for k in sorted(items)] if isinstance(items, dict) else list(items)


def test_gpu_profile_adds_shm_without_losing_home_and_exchange():
    """The chart builds volume *lists*; the values' extraConfig keys them so the profile merges."""
    storage = _values()["singleuser"]["storage"]
    c = Config()
    # What the chart's jupyterhub_config.py sets before extraConfig runs.
    c.KubeSpawner.volumes = [
        {"name": "volume-{user_server}", "persistentVolumeClaim": {"claimName": "claim-{user_server}"}}
    ]
    c.KubeSpawner.volumes.extend(storage["extraVolumes"])
    c.KubeSpawner.volume_mounts = [{"name": "volume-{user_server}", "mountPath": storage["homeMountPath"]}]
    c.KubeSpawner.volume_mounts.extend(storage["extraVolumeMounts"])
    exec(compile(_extra_config("10-volumes-as-dicts.py"), "10-volumes-as-dicts.py", "exec"), {"c": c})

    spawner = _FakeSpawner(c)
    spawner.apply(_gpu_profile()["kubespawner_override"])
    mounts = {m["mountPath"]: m["name"] for m in spawner.listed(spawner.volume_mounts)}
    names = {v["name"] for v in spawner.listed(spawner.volumes)}
    assert {"/home/jovyan", "/srv/nbgrader/exchange", "/dev/shm"} <= set(mounts)
    assert set(mounts.values()) <= names, "every mount has its volume"


# --- exchange, formgrader service, groups -----------------------------------------------


def test_exchange_volume_is_mounted_at_the_hubs_exchange_root(monkeypatch):
    root = _hub_exchange_root(monkeypatch)
    singleuser = _values()["singleuser"]
    assert singleuser["extraEnv"]["NBGRADER_EXCHANGE_ROOT"] == root
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in singleuser["storage"]["extraVolumes"]
        if "persistentVolumeClaim" in v
    }
    mount = next(m for m in singleuser["storage"]["extraVolumeMounts"] if m["mountPath"] == root)
    claim = claims[mount["name"]]

    pvc = _yaml_docs(K8S / "exchange-pvc.yaml")[0]
    assert pvc["kind"] == "PersistentVolumeClaim" and pvc["metadata"]["name"] == claim
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "pods on many nodes share it"

    # The formgrader mounts the same claim at the same path, and is told so.
    deployment = next(d for d in _yaml_docs(K8S / "course-service.yaml") if d["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    volume = next(v["name"] for v in spec["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim)
    container = spec["containers"][0]
    assert {"name": volume, "mountPath": root} in container["volumeMounts"]
    assert {"name": "NBGRADER_EXCHANGE_ROOT", "value": root} in container["env"]


def _service_env() -> dict:
    deployment = next(d for d in _yaml_docs(K8S / "course-service.yaml") if d["kind"] == "Deployment")
    return {
        e["name"]: e.get("value", e.get("valueFrom"))
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def test_formgrader_service_is_registered_and_wired():
    services = _values()["hub"]["services"]
    assert list(services) == [COURSE_ID], "nbgrader's course list finds /services/<course id>"
    env = _service_env()
    assert env["JUPYTERHUB_SERVICE_NAME"] == COURSE_ID
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == f"/services/{COURSE_ID}/"
    assert env["JUPYTERHUB_CLIENT_ID"] == f"service-{COURSE_ID}"
    assert env["JUPYTERHUB_API_TOKEN"]["secretKeyRef"] == {"name": "hub", "key": f"hub.services.{COURSE_ID}.apiToken"}
    # The hub's URL for the service is the k8s Service in front of the pod.
    service = next(d for d in _yaml_docs(K8S / "course-service.yaml") if d["kind"] == "Service")
    port = service["spec"]["ports"][0]["port"]
    assert services[COURSE_ID]["url"] == f"http://{service['metadata']['name']}:{port}"
    assert env["JUPYTERHUB_SERVICE_URL"].startswith(f"http://0.0.0.0:{port}/")
    for layer in env["JUPYTER_CONFIG_PATH"].split(":"):
        assert _host_path(layer).is_dir(), layer
    assert env["JUPYTER_CONFIG_PATH"].split(":")[0].endswith("/grader")


def test_groups_and_roles_separate_instructors_from_students():
    hub = _values()["hub"]
    groups = hub["config"]["JupyterHub"]["load_groups"]
    assert {"instructors", "students", f"formgrade-{COURSE_ID}"} <= set(groups)
    assert set(groups["instructors"]["users"]) <= set(groups[f"formgrade-{COURSE_ID}"]["users"])
    assert not set(groups["students"]["users"]) & set(groups[f"formgrade-{COURSE_ID}"]["users"])
    granting = [r for r in hub["loadRoles"].values() if f"access:services!service={COURSE_ID}" in r.get("scopes", [])]
    assert granting and all(r.get("groups") == [f"formgrade-{COURSE_ID}"] and not r.get("users") for r in granting)


def test_pre_spawn_hook_gives_each_role_its_layers():
    c = Config()
    exec(compile(_extra_config("20-course-roles.py"), "20-course-roles.py", "exec"), {"c": c})
    hook = c.KubeSpawner.pre_spawn_hook

    def layers(*groups):
        spawner = SimpleNamespace(
            user=SimpleNamespace(groups=[SimpleNamespace(name=g) for g in groups]), environment={}
        )
        hook(spawner)
        return spawner.environment["JUPYTER_CONFIG_PATH"].split(":")

    student, instructor = layers("students"), layers("instructors", f"formgrade-{COURSE_ID}")
    assert student[0].endswith("/students") and instructor[0].endswith("/instructors")
    for layer in student + instructor:
        assert _host_path(layer).is_dir(), layer


def _per_user_uid(names: list[str]) -> dict:
    """values.yaml's 30-per-user-uid.py run against a hub whose database holds ``names``."""
    c, namespace = Config(), {}
    namespace["c"] = c
    exec(compile(_extra_config("30-per-user-uid.py"), "30-per-user-uid.py", "exec"), namespace)
    assert c.KubeSpawner.uid is namespace["per_user_uid"] and c.KubeSpawner.gid == _values()["singleuser"]["fsGid"]
    db = SimpleNamespace(query=lambda column: [(n,) for n in names])
    namespace["spawn"] = lambda name: c.KubeSpawner.uid(SimpleNamespace(user=SimpleNamespace(name=name, db=db)))
    return namespace


def test_each_person_s_pod_runs_as_the_uid_the_grader_s_collect_expects():
    from autograder.commands.collect import derived_uid

    names = ["ada", "bert", "Ada", "student-17", "ünï", "x" * 200]
    hub = _per_user_uid(names)
    assert [hub["spawn"](n) for n in names] == [derived_uid(n) for n in names]
    # Two names that hash alike would let each submit as the other: the second one's server never starts.
    hub["derived_uid"] = lambda name: 4242
    with pytest.raises(RuntimeError, match="ada and bert would share uid 4242"):
        hub["spawn"]("ada")
    assert _per_user_uid(["ada"])["spawn"]("ada") == derived_uid("ada")


def test_the_course_service_collects_by_derived_uids(monkeypatch):
    """course-service.yaml tells the course's collect (nbgrader_config.py) to expect values.yaml's uids."""
    from autograder.commands.collect import CheckedCollect

    env = _service_env()
    assert env["COURSE_STUDENT_UIDS"] == "derived"
    c = _exec_config(ROOT / "nbgrader_config.py", {"COURSE_STUDENT_UIDS": env["COURSE_STUDENT_UIDS"]}, monkeypatch)
    assert c.ExchangeFactory.collect is CheckedCollect and c.CheckedCollect.student_uids == "derived"
    # Elsewhere (the one-server hub, a VM) students are Unix accounts.
    assert _exec_config(ROOT / "nbgrader_config.py", {}, monkeypatch).CheckedCollect.student_uids == "accounts"


def test_idle_servers_are_culled():
    cull = _values()["cull"]
    assert cull["enabled"] is True
    assert isinstance(cull["timeout"], int) and 0 < cull["timeout"] <= 4 * 3600
    assert isinstance(cull["every"], int) and 0 < cull["every"] <= cull["timeout"]


# --- the single-machine hub (deploy/jupyterhub) ------------------------------------------


def test_single_machine_hub_has_the_course_service_groups_and_exchange(monkeypatch):
    c = _exec_config(HUB_CONFIG, monkeypatch=monkeypatch)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert COURSE_ID in services
    service = services[COURSE_ID]
    assert service.get("url") and service.get("command"), "a hub-managed formgrader service"
    groups = c.JupyterHub.load_groups
    assert {"instructors", "students", f"formgrade-{COURSE_ID}"} <= set(groups)
    assert f"access:services!service={COURSE_ID}" in {s for r in c.JupyterHub.load_roles for s in r.get("scopes", [])}
    # Same exchange on both deployments.
    exchange = _hub_exchange_root(monkeypatch)
    assert exchange == "/srv/nbgrader/exchange"
    assert service["environment"]["NBGRADER_EXCHANGE_ROOT"] == exchange
    assert _values()["singleuser"]["extraEnv"]["NBGRADER_EXCHANGE_ROOT"] == exchange


def test_kubernetes_mirrors_the_single_machine_groups(monkeypatch):
    c = _exec_config(HUB_CONFIG, monkeypatch=monkeypatch)
    assert set(_values()["hub"]["config"]["JupyterHub"]["load_groups"]) == set(c.JupyterHub.load_groups)
    k8s_roles = {frozenset(r["scopes"]) for r in _values()["hub"]["loadRoles"].values()}
    assert k8s_roles == {frozenset(r["scopes"]) for r in c.JupyterHub.load_roles}, "the same roles, scope for scope"


# --- the guides ----------------------------------------------------------------------------


def test_instructor_guide_points_at_real_files_and_a_valid_site_file():
    text = (ROOT / "docs" / "instructor.md").read_text()
    paths = set(re.findall(r"\b(deploy/[\w./-]+\w)", text))
    assert {
        "deploy/kubernetes/values.yaml",
        "deploy/kubernetes/exchange-pvc.yaml",
        "deploy/kubernetes/course-service.yaml",
        "deploy/kubernetes/Dockerfile.students",
        "deploy/kubernetes/Dockerfile.grader",
        "deploy/kubernetes/versions.env",
        "deploy/jupyterhub/jupyterhub_config.py",
    } <= paths
    for path in paths:
        assert (ROOT / path).exists(), f"docs/instructor.md names {path}, which does not exist"
    assert re.search(
        r"helm upgrade --install \S+ jupyterhub/jupyterhub .*--values deploy/kubernetes/values\.yaml",
        text.replace("\\\n", " "),
    )
    # The example site file is valid YAML and fills exactly the groups the values define.
    site = yaml.safe_load(textwrap.dedent(re.search(r"```yaml\n(.*?)```", text, flags=re.S).group(1)))
    assert set(site["hub"]["config"]["JupyterHub"]["load_groups"]) == set(
        _values()["hub"]["config"]["JupyterHub"]["load_groups"]
    )
    assert site["singleuser"]["image"] == {k: _values()["singleuser"]["image"][k] for k in ("name", "tag")}


def test_the_grading_pod_can_start_its_sandbox():
    """bwrap needs its own /proc: the pod's own user namespace and an unmasked /proc, besides the
    seccomp and AppArmor profiles that let it make namespaces."""
    deployment = next(d for d in _yaml_docs(K8S / "course-service.yaml") if d["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["hostUsers"] is False
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["procMount"] == "Unmasked" and security["allowPrivilegeEscalation"] is False
    assert security["seccompProfile"]["type"] == security["appArmorProfile"]["type"] == "Unconfined"
    assert "Pod Security" in (ROOT / "docs" / "instructor.md").read_text()
