"""Grading for the LoRA/QLoRA course: build, check, grade and export with nbgrader.

The map: each folder holds the code of one process, so a file's folder says where it runs.

- ``commands/`` **the command line** (``cli``: ``autograder build|check|grade|feedback|export|demo``):
  the only process that writes the course's real gradebook. ``grade`` takes submissions in, starts
  the pool and merges each result; ``check`` and ``rehearsal`` grade the instructor's own mock
  students; ``feedback`` writes the students' pages; ``collect`` (nbgrader's collect, run by the formgrader)
  takes a submission only from the student it names; ``export`` writes the gradebook for an LMS;
  ``nbgrader_run`` runs nbgrader's commands; ``terminal`` keeps student-controlled text from
  driving the instructor's terminal; ``machine`` reads what the machine offers (defaults).
- ``runner/`` **between the command line and its workers**: ``pool`` (the parent end: workers, time
  and disk limits, the zygote's parent end), ``worker`` (the child end: the zygote that imports once
  and forks, and the worker that autogrades one scratch course per job), ``intake`` (hostile
  submission folders copied as plain files), ``protocol`` (the messages).
- ``execute/`` **in a worker, around the student's kernel**: ``pipeline`` (nbgrader's autograde
  preprocessors as the course runs them), ``guarded`` (the executor: the sandboxed kernel, output
  caps, end-of-cell tokens), ``probes`` (the integrity probes), ``calls`` (the judge's socket session
  with the kernel), ``sandbox`` (bubblewrap and resource limits), ``inert`` (the autograded
  notebook made safe for the instructor's browser), ``late`` (the late policy nbgrader applies).
- ``judge/`` **in a worker, the grader's own code**: ``call`` (test cells of 01, 02, 03 and 05 run
  here, calling the student's functions), ``literal`` (04's letters read from the notebook's text),
  ``verdict`` (one test cell's outcome), ``sources`` (the instructor's test and setup cells),
  ``remote`` (stand-ins for the student's objects), ``shortcuts`` (refused libraries, read from the
  cells' text).
- ``kernel/`` **in the student's kernel**: ``server`` (the call server, the only grader code there
  while a test cell is judged). Nothing there decides a grade.
- At the top, **shared**: ``wire`` (the one format of what crosses between judge and kernel),
  ``gradebook`` (every use of nbgrader's gradebook API), ``notebook`` (cell markup), ``course``,
  ``contract``, and the two modules the notebooks import by name and both sides use: ``compare``
  (the visible checks) and ``objects`` (what a test does to a model or layer).

What crosses between processes, each with one owner:

- command line -> worker: a ``Job`` line; worker -> command line: a ``Reply`` line, on a private
  pipe (``runner/protocol.py``); the zygote gets a fork request with four file descriptors and
  answers a pid (``runner/pool.py`` and ``runner/worker.py``). A worker leaves its scratch course
  (an autograded notebook, a scratch ``gradebook.db``, ``integrity.json``) for the command line.
- judge -> kernel: a request frame (JSON: a token, an operation, a name, arguments); kernel ->
  judge: an answer frame, exact built-in values and raw arrays, size-capped (``wire.py``), or a
  handle to an object the kernel keeps. The integrity probe's report is one JSON line between two
  marks (``execute/probes.py``).
"""
