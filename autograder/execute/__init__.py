"""In a grading worker, around the student's kernel: the guarded executor, its probes, its call session, the sandbox."""
