"""JupyterHub for the LoRA/QLoRA course on one machine: students, instructors, one grader service.

Run as root (LocalProcessSpawner switches to each student's Unix account):

    jupyterhub -f deploy/jupyterhub/jupyterhub_config.py

Every path and port below has an environment override (``COURSE_HUB_*``, ``COURSE_*``,
``NBGRADER_EXCHANGE_ROOT``) so the end-to-end test can run this very file in a scratch
folder on 127.0.0.1; the defaults are the real deployment's.
"""

import os
import sys

c = get_config()  # noqa: F821 -- injected by traitlets when this file is loaded

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "config")


def env(name, default):
    return os.environ.get(name, default)


def names(var, default):
    return [n.strip() for n in env(var, default).split(",") if n.strip()]


# nbgrader's course list finds a single course's formgrader at /services/<course id>,
# so the service must carry the course id as its name.
COURSE_ID = "lora-qlora"
COURSE_DIR = env("COURSE_DIR", "/srv/nbgrader/lora-qlora")  # a clone of this repository
EXCHANGE = env("NBGRADER_EXCHANGE_ROOT", "/srv/nbgrader/exchange")
DATA_DIR = env("COURSE_HUB_DATA_DIR", "/srv/jupyterhub")
SERVICE_URL = env("COURSE_SERVICE_URL", "http://127.0.0.1:9999")
# The formgrader runs under its own Unix account so that it, not the students, owns the
# gradebook and the collected work. Empty: run as the hub's own account.
GRADER_USER = env("COURSE_GRADER_USER", "grader-lora-qlora")
INSTRUCTORS = names("COURSE_INSTRUCTORS", "instructor1")
STUDENTS = names("COURSE_STUDENTS", "student1,student2")

c.JupyterHub.bind_url = env("COURSE_HUB_BIND_URL", "http://:8000")
c.JupyterHub.hub_bind_url = env("COURSE_HUB_HUB_BIND_URL", "http://127.0.0.1:8081")
c.ConfigurableHTTPProxy.api_url = env("COURSE_HUB_PROXY_API_URL", "http://127.0.0.1:8001")
c.ConfigurableHTTPProxy.command = [env("COURSE_HUB_PROXY_CMD", "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = os.path.join(DATA_DIR, "jupyterhub-proxy.pid")
c.JupyterHub.db_url = "sqlite:///" + os.path.join(DATA_DIR, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(DATA_DIR, "jupyterhub_cookie_secret")

# Instructors are not hub admins: they need the formgrader, not other people's servers.
c.Authenticator.allowed_users = set(INSTRUCTORS + STUDENTS)

# Servers start from a bare environment: run the hub's own Python (where nbgrader is) and
# keep its bin/ first on PATH, because nbgrader shells out to alembic for the gradebook.
PATH = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)])
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab"


def layers(*names):
    """JUPYTER_CONFIG_PATH, most specific first: nbgrader and Jupyter read every folder on it."""
    return os.pathsep.join(os.path.join(CONFIG, n) for n in names)


def per_role_config(spawner):
    """Students see fetch/validate/submit; instructors also the course list that links the formgrader."""
    groups = {g.name for g in spawner.user.groups}
    role = "instructors" if "instructors" in groups else "students"
    # A new dict: the configured one is shared by every spawner.
    spawner.environment = {
        **spawner.environment,
        "PATH": PATH,
        "NBGRADER_EXCHANGE_ROOT": EXCHANGE,
        "JUPYTER_CONFIG_PATH": layers(role, "users", "common"),
    }


c.Spawner.pre_spawn_hook = per_role_config

# Instructors reach the formgrader through the hub's formgrade-<course> group, the name
# nbgrader's course list expects; students only need to be signed in.
c.JupyterHub.load_groups = {
    "instructors": {"users": INSTRUCTORS},
    f"formgrade-{COURSE_ID}": {"users": INSTRUCTORS},
    "students": {"users": STUDENTS},
}
c.JupyterHub.load_roles = [
    {
        "name": f"formgrade-{COURSE_ID}",
        "groups": [f"formgrade-{COURSE_ID}"],
        "scopes": [f"access:services!service={COURSE_ID}", "list:services", f"read:services!service={COURSE_ID}"],
    },
    {
        # A server's own token may use what its owner may (the instructor's course list
        # calls the formgrader service with it); never more, by JupyterHub's design.
        "name": "server",
        "scopes": ["inherit"],
    },
]

c.JupyterHub.services = [
    {
        "name": COURSE_ID,
        "url": SERVICE_URL,
        # The formgrader is a Jupyter server rooted at the course directory.
        "command": [sys.executable, "-m", "jupyterhub.singleuser"],
        "cwd": COURSE_DIR,
        "user": GRADER_USER,
        "environment": {
            "PATH": PATH,
            "NBGRADER_EXCHANGE_ROOT": EXCHANGE,
            "JUPYTER_CONFIG_PATH": layers("grader", "common"),
            "JUPYTERHUB_DEFAULT_URL": "/lab",
        },
        # Instructors go straight to the formgrader, without an "authorize access" page.
        "oauth_no_confirm": True,
    }
]
