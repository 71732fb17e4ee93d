"""nbgrader settings for people's own servers (not the formgrader service)."""

import os

c = get_config()  # noqa: F821 -- injected by traitlets when this file is loaded

# nbgrader files a submission under the Unix account's name; the hub's name is the
# student's identity, and differs from it in container-style spawners.
if os.environ.get("JUPYTERHUB_USER"):
    c.CourseDirectory.student_id = os.environ["JUPYTERHUB_USER"]
