"""The course directory: where it is, which assignments it has, and its folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader

CONFIG_FILE = "nbgrader_config.py"


class CourseError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


@dataclass(frozen=True)
class Course:
    """An nbgrader course directory as this project lays it out."""

    root: Path
    course_id: str
    assignments: tuple[str, ...]

    @classmethod
    def load(cls, root: str | os.PathLike | None = None) -> Course:
        """Read ``nbgrader_config.py`` from ``root`` (default: search upwards from cwd)."""
        root_path = Path(root).resolve() if root else find_root(Path.cwd())
        try:
            config = PyFileConfigLoader(CONFIG_FILE, path=str(root_path)).load_config()
        except ConfigFileNotFound:
            raise CourseError(f"no {CONFIG_FILE} in {root_path}: not a course directory") from None
        assignments = tuple(config.Course.get("assignments", ()))
        if not assignments:
            raise CourseError(f"{root_path / CONFIG_FILE} lists no assignments (c.Course.assignments)")
        return cls(
            root=root_path,
            course_id=str(config.CourseDirectory.get("course_id", "")),
            assignments=assignments,
        )

    def path(self, folder: str, *parts: str) -> Path:
        return self.root.joinpath(folder, *parts)

    def existing_assignments(self) -> list[str]:
        """Registered assignments whose source folder exists, in course order."""
        return [a for a in self.assignments if self.path("source", a).is_dir()]

    def resolve(self, names: list[str] | None) -> list[str]:
        """The assignments named (all that exist when none is), or ``CourseError``."""
        if not names:
            found = self.existing_assignments()
            if not found:
                raise CourseError(f"no assignment has a folder under {self.path('source')}")
            return found
        for name in names:
            if name not in self.assignments:
                known = ", ".join(self.assignments)
                raise CourseError(f"unknown assignment {name!r}; the course has: {known}")
            if not self.path("source", name).is_dir():
                raise CourseError(f"assignment {name!r} has no source folder {self.path('source', name)}")
        return list(names)

    def source_notebooks(self, assignment: str) -> list[Path]:
        return sorted(self.path("source", assignment).glob("*.ipynb"))


def find_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding ``nbgrader_config.py``."""
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise CourseError(f"no {CONFIG_FILE} in {start} or any folder above it: run inside the course directory")
