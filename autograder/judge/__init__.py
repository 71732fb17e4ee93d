"""In a grading worker, the grader's own code: the judges that run the instructor's test cells."""
