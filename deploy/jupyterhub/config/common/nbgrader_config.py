"""nbgrader settings every server of the hub shares: the students' and the formgrader's."""

import os

c = get_config()  # noqa: F821 -- injected by traitlets when this file is loaded

c.CourseDirectory.course_id = "lora-qlora"
# One exchange for the machine, created by root and world-writable (nbgrader checks its mode):
# the hub passes its location so that students and grader agree on it.
c.Exchange.root = os.environ.get("NBGRADER_EXCHANGE_ROOT", "/srv/nbgrader/exchange")
# Students' copies land in ~/lora-qlora/<assignment>, so a second course never collides.
c.Exchange.path_includes_course = True
# Validate (students) runs every cell with this limit per cell, as grading does: the QLoRA lab's
# training cell takes about three minutes on a CPU.
c.Execute.timeout = 300
