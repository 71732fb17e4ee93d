"""Shortcuts an assignment forbids, found by reading the student's cells (never by running them).

03_metrics asks students to build the metrics that ``sklearn.metrics`` already has, and
02_quantization to write the NF4 code that ``bitsandbytes`` is checked against. A graded function
that calls the library instead proves nothing, so the judge refuses it, with a message that says
what to use instead. The reading is static (:mod:`ast` over the cells' text): imports, names bound
to the library, dotted names through it, and a call given the module's name as a string
(``__import__("sklearn.metrics")``); a docstring or a message that mentions the library is not a use.
A determined student can hide a call from any static reading; this is a teaching guard that
catches the honest shortcut, while the hidden tests keep judging what the function returns.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping

from autograder.notebook import parsed_cells

__all__ = ["REFUSED", "refusals", "refused_functions", "shortcut_message"]

# assignment -> {module prefix: what to do instead}
REFUSED: dict[str, dict[str, str]] = {
    "03_metrics": {
        "sklearn.metrics": "count with your own confusion_matrix and compute the scores with your own accuracy, "
        "precision, recall and f1 (scikit-learn is what the grader compares them with)",
    },
    "05_qlora_lab": {
        "bitsandbytes": "build the layer with torch operations (your NF4 from notebook 02); bitsandbytes is "
        "what your layer is checked against",
    },
    "02_quantization": {
        "bitsandbytes": "write it with torch operations (abs, max, round, argmin over the NF4 levels); "
        "bitsandbytes is the library your answer is checked against",
    },
}

MAX_CELL_CHARS = 100_000  # a longer cell is not read (and earns nothing from the judge anyway)


def _matches(dotted: str, modules: Iterable[str]) -> str | None:
    for module in modules:
        if dotted == module or dotted.startswith(module + "."):
            return module
    return None


def _dotted(node: ast.AST, aliases: Mapping[str, str]) -> str | None:
    """``a.b.c`` with ``a`` resolved through the imports, or None when the chain does not start at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([aliases.get(node.id, node.id), *reversed(parts)])


def _imports(node: ast.AST) -> dict[str, str]:
    """Names an import statement binds, each with the dotted name it stands for."""
    bound = {}
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                bound[alias.asname] = alias.name
            else:  # `import a.b` binds `a`
                bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        for alias in node.names:
            bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def _uses(tree: ast.AST, aliases: Mapping[str, str], modules: tuple[str, ...]) -> tuple[str, str] | None:
    """The first forbidden thing ``tree`` uses, as written (an import, a dotted name, a module named in a call), and its module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.Import):
                named = [a.name for a in node.names]
            else:  # `from sklearn import metrics` names sklearn.metrics
                named = [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
            for name in named:
                module = _matches(name, modules)
                if module:
                    return f"import {name}", module
        elif isinstance(node, ast.Name | ast.Attribute):
            dotted = _dotted(node, aliases)
            module = _matches(dotted, modules) if dotted else None
            if module:
                return dotted, module
        elif isinstance(node, ast.Call):  # __import__("sklearn.metrics"), importlib.import_module(...)
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    module = _matches(arg.value.strip(), modules)
                    if module:
                        return repr(arg.value)[:80], module
    return None


def refused_functions(sources: Iterable[str], modules: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``{function or class name: (what it uses, module)}`` for the top-level definitions in ``sources``
    (the student's cells, in notebook order) that use one of ``modules``.

    Names are followed through the cells in order, as a kernel running them top to bottom binds
    them: an import in one cell and the call in another is found, ``f = f1_score`` carries the
    import along, and a later ``def confusion_matrix`` replaces an imported one.
    """
    modules = tuple(modules)
    aliases: dict[str, str] = {}
    found: dict[str, tuple[str, str]] = {}
    definitions = []
    for tree in parsed_cells(sources, MAX_CELL_CHARS):
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                aliases.update(_imports(node))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                aliases.pop(node.name, None)
                definitions.append(node)
            elif isinstance(node, ast.Assign):
                dotted = _dotted(node.value, aliases)
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        if dotted and _matches(dotted, modules):
                            aliases[target.id] = dotted
                        else:
                            aliases.pop(target.id, None)
    for node in definitions:
        used = _uses(node, aliases, modules)
        if used:
            found[node.name] = used
        else:
            found.pop(node.name, None)  # redefined later without the shortcut
    return found


def shortcut_message(name: str, used: str, module: str, instead: str) -> str:
    """The teaching message of a refused function."""
    return (
        f"{name} uses {used}: this assignment asks you to write it yourself, without {module}. "
        f"Instead, {instead}. The grader read this from your answer cells and gave the test no points."
    )


def refusals(sources: Iterable[str], instead: Mapping[str, str]) -> dict[str, str]:
    """``{function name: teaching message}`` for the functions in ``sources`` that use a module of ``instead``."""
    if not instead:
        return {}
    return {
        name: shortcut_message(name, used, module, instead[module])
        for name, (used, module) in refused_functions(sources, tuple(instead)).items()
    }
