"""Grader code that runs inside the student's kernel: only the call server."""
