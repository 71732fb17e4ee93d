"""The command line's process: ``autograder`` and what it runs itself (the only writer of the real gradebook)."""
