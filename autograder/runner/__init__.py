"""The grading pool: the command line's end (``pool``), the workers' end (``worker``), and what crosses (``protocol``)."""
