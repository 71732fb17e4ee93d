"""The grader's layout: a folder per process, and no module name that only a string knows.

A module moved or renamed must break an import, never a string that names it: every dotted
``autograder.*`` string in the package must name a module that exists, and the one name that is
looked up rather than imported (the judge's stand-ins, which the kernel must never load) is checked
against the module itself.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import autograder
from autograder import compare, objects

PACKAGE = Path(autograder.__file__).parent
DOTTED = re.compile(r"^autograder(\.[a-z_]+)+$")
PROCESS_FOLDERS = {"commands", "runner", "execute", "judge", "kernel"}


def test_every_module_name_in_a_string_names_a_real_module():
    named = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED.match(node.value):
                named[node.value] = path.relative_to(PACKAGE)
    missing = {name: str(where) for name, where in named.items() if importlib.util.find_spec(name) is None}
    assert not missing, f"strings that name no module: {missing}"


def test_the_judges_stand_ins_are_looked_up_by_their_real_name():
    from autograder.judge import remote

    assert compare.REMOTE_MODULE == objects.REMOTE_MODULE == remote.__name__


def test_each_process_has_its_folder_and_the_top_level_holds_only_shared_modules():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == PROCESS_FOLDERS
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert top == {"compare", "objects", "wire", "gradebook", "notebook", "course", "contract"}
    # The package docstring's map names every folder and module.
    doc = autograder.__doc__
    for path in PACKAGE.rglob("*.py"):
        if path.stem != "__init__" and path.stem != "__main__":
            assert f"``{path.stem}``" in doc, f"the map in autograder/__init__.py does not mention {path.stem}"


def test_only_the_gradebook_module_uses_nbgrader_api():
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "nbgrader.api" in p.read_text())
    assert users == ["gradebook.py"], users
