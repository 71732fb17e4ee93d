"""Grading for the LoRA/QLoRA course: build, check, grade and export with nbgrader.

The modules, by where their code runs:

- **In the student's kernel:** ``kernel_server`` (the call server, the only grader code there during
  judging) and the visible-check helpers the notebooks import (``compare``, ``objects``' kernel
  helpers). Nothing here decides a grade.
- **Between the two:** ``wire``, the one format of what crosses: requests as JSON, answers as exact
  built-in values and arrays without pickle, size-capped.
- **In the judge (the grader's process):** ``judge`` (test cells run here), ``remote`` (stand-ins
  for the student's objects), ``objects`` and ``compare`` (what tests do to them), ``shortcuts``
  (refused libraries, read from the cells' text).
- **The runner:** ``intake`` (hostile submission folders), ``sandbox`` (bubblewrap kernels),
  ``guard`` (the executor: probes, tokens, the judge's transport), ``worker`` and ``pool``.
- **Gradebook and files:** ``nbgrader_run`` (nbgrader's commands and the gradebook), ``notebook``
  (cell markup), ``feedback`` (the students' pages), ``course`` and ``contract``.
- **The command line:** ``cli`` on top of ``grading``, ``checks`` and ``rehearsal``.
"""
