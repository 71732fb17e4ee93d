"""Grading for the LoRA/QLoRA course: build, check, grade and export with nbgrader."""
