"""values.yaml's hub, run for real: JupyterHub of the chart's version, DockerSpawner in KubeSpawner's place.

What a Zero to JupyterHub install of ``deploy/kubernetes/values.yaml`` does for a person's server, done
with containers on this machine (no cluster here): the students' image by values.yaml's name and tag,
its exchange and home volumes at values.yaml's mount paths, the chart's groups and roles, and the
values' own ``hub.extraConfig`` snippets (the per-role config layers, the per-person uid) run as they
are. No bridge network can be made here, so each server shares the host's network on a port of its own.

Loaded by ``tests/e2e_support/kubernetes_hub.py`` with the ``jupyterhub`` of ``.e2e/hub`` (``./setup``
installs JupyterHub at ``deploy/kubernetes/versions.env``'s version there, and DockerSpawner).
"""

import os

import yaml
from dockerspawner import DockerSpawner
from jupyterhub.utils import random_port
from traitlets.config import Config

c = get_config()  # noqa: F821 -- injected by traitlets when this file is loaded

with open(os.environ["E2E_VALUES"]) as f:
    VALUES = yaml.safe_load(f)
SINGLE = VALUES["singleuser"]
HUB = VALUES["hub"]
TAG = {os.environ["E2E_TAG_NAME"]: os.environ["E2E_TAG_VALUE"]}
HOMES = os.environ["E2E_HOMES"]

# The values' snippets, each run as the chart runs it, against a config of their own; what they give
# KubeSpawner is handed to DockerSpawner below.
kube = Config()
for name in ("20-course-roles.py", "30-per-user-uid.py"):
    exec(compile(HUB["extraConfig"][name], name, "exec"), {"c": kube})
per_role_config = kube.KubeSpawner.pre_spawn_hook
per_user_uid = kube.KubeSpawner.uid
GID = kube.KubeSpawner.gid


class PodLikeSpawner(DockerSpawner):
    """A server in a container on the host's network, on a port of its own (a pod has its own IP)."""

    async def start(self):
        self.port = random_port()
        return await super().start()

    async def get_ip_and_port(self):
        return "127.0.0.1", self.port


def pre_spawn(spawner):
    per_role_config(spawner)
    # A fresh home volume for the person's uid, as the chart's PVC with fsGid gives one.
    home = os.path.join(HOMES, spawner.user.name)
    os.makedirs(home, exist_ok=True)
    os.chown(home, per_user_uid(spawner), SINGLE["fsGid"])


c.JupyterHub.spawner_class = PodLikeSpawner
c.DockerSpawner.image = f"{SINGLE['image']['name']}:{SINGLE['image']['tag']}"
c.DockerSpawner.network_name = "host"
# No port bindings (docker refuses them on the host network); get_ip_and_port above says where it is.
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.ip = "127.0.0.1"
c.DockerSpawner.remove = True
c.DockerSpawner.pull_policy = "never"
c.DockerSpawner.default_url = SINGLE["defaultUrl"]
c.DockerSpawner.environment = {**SINGLE["extraEnv"], **TAG}
c.DockerSpawner.pre_spawn_hook = pre_spawn
c.DockerSpawner.extra_create_kwargs = lambda spawner: {"user": f"{per_user_uid(spawner)}:{GID}"}
c.DockerSpawner.volumes = {
    os.environ["E2E_EXCHANGE"]: SINGLE["storage"]["extraVolumeMounts"][0]["mountPath"],
    os.path.join(HOMES, "{username}"): SINGLE["storage"]["homeMountPath"],
}
c.DockerSpawner.name_template = "e2e-{prefix}-{username}-" + os.environ["E2E_TAG_VALUE"][:8]
c.Spawner.start_timeout = 240
c.Spawner.http_timeout = 240

c.JupyterHub.bind_url = os.environ["COURSE_HUB_BIND_URL"]
c.JupyterHub.hub_bind_url = os.environ["COURSE_HUB_HUB_BIND_URL"]
c.JupyterHub.hub_connect_url = os.environ["COURSE_HUB_HUB_BIND_URL"]
c.ConfigurableHTTPProxy.api_url = os.environ["COURSE_HUB_PROXY_API_URL"]
c.ConfigurableHTTPProxy.command = [os.environ["COURSE_HUB_PROXY_CMD"]]
c.JupyterHub.db_url = "sqlite:///" + os.path.join(os.environ["COURSE_HUB_DATA_DIR"], "jupyterhub.sqlite")

# The chart's groups, filled with the test's people, and its roles.
groups = {
    "instructors": os.environ["COURSE_INSTRUCTORS"],
    "formgrade-lora-qlora": os.environ["COURSE_INSTRUCTORS"],
    "students": os.environ["COURSE_STUDENTS"],
}
assert set(groups) == set(HUB["config"]["JupyterHub"]["load_groups"])
c.JupyterHub.load_groups = {g: {"users": [u for u in users.split(",") if u]} for g, users in groups.items()}
c.JupyterHub.load_roles = [{"name": name, **role} for name, role in HUB["loadRoles"].items()]
for role in c.JupyterHub.load_roles:
    role.pop("description", None)
c.Authenticator.allowed_users = {u for users in groups.values() for u in users.split(",") if u}
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ["E2E_PASSWORD"]

# The test's driver: spawns servers and mints each person's API token.
c.JupyterHub.services = [{"name": "e2e-driver", "api_token": os.environ["E2E_DRIVER_TOKEN"]}]
c.JupyterHub.load_roles.append(
    {
        "name": "e2e-driver",
        "services": ["e2e-driver"],
        "scopes": ["admin:users", "admin:servers", "tokens", "admin:groups", "list:services", "read:services"],
    }
)
