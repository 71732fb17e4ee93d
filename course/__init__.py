"""Support library the course notebooks import (data, models, training, memory, plots).

It holds no exercise solutions: graded functions live only in ``source/``.
"""

import logging as _logging

# bitsandbytes announces at import, on stderr, that an optional kernel package from the
# Hugging Face hub is missing; it falls back to its own CPU kernels. nbgrader scores any
# test cell that writes to stderr zero, so the course keeps that notice quiet.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
