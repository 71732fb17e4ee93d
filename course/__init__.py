"""Support library the course notebooks import (data, models, training, memory, plots).

It holds no exercise solutions: graded functions live only in ``source/``.
"""
