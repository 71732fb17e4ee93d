"""Shortcuts an assignment forbids, found by reading the student's cells (never by running them).

03_metrics asks students to build the metrics that ``sklearn.metrics`` already has, and
02_quantization to write the NF4 code that ``bitsandbytes`` is checked against. A graded function
that calls the library instead proves nothing, so the judge refuses it, with a message that says
what to use instead. The reading is static (:mod:`ast` over the cells' code as IPython transforms
it): imports, names bound to the library, dotted names through it, a call given the module's name as
a string (``__import__("sklearn.metrics")``), and helpers that do any of these; a docstring or a
message that mentions the library is not a use. What it cannot read (a star import from the
library, an oversized cell, a cell naming the library that is not Python) counts against every
function the student defines.
A determined student can hide a call from any static reading; this is a teaching guard that
catches the honest shortcut, while the hidden tests keep judging what the function returns.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping

__all__ = ["REFUSED", "UNIMPORTABLE", "refusals", "refused_functions", "shortcut_message"]

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

# assignment -> the refused modules that are also not importable while the judge calls the student's
# code (the kernel's call server hides them: autograder.kernel.server). Only where honest code never
# imports them: transformers and PEFT probe for bitsandbytes while they load and wrap models, so
# 02's and 05's refusal stays the reading above.
UNIMPORTABLE: dict[str, tuple[str, ...]] = {"03_metrics": ("sklearn.metrics",)}

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


def _read(source: object) -> tuple[list[ast.Module], bool]:
    """``(trees, unreadable)`` for one cell: its code as IPython would run it (magics and shell
    lines transformed; a cell magic's body read as code too), and whether some of it could not be
    read (too long, or not Python after the transform)."""
    if not isinstance(source, str):
        return [], True
    if len(source) > MAX_CELL_CHARS:
        return [], True
    texts = [source]
    if source.lstrip().startswith("%%"):  # %%capture, %%time...: the body runs as code
        texts.append(source.lstrip().partition("\n")[2])
    trees, unreadable = [], False
    for text in texts:
        try:
            trees.append(ast.parse(_TRANSFORM(text)))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            unreadable = True
    return trees, unreadable


def _transformer():
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # read as plain Python
        return lambda text: text
    manager = TransformerManager()

    def transform(text: str) -> str:
        try:
            return manager.transform_cell(text)
        except Exception:  # IPython could not transform it: read it as it is
            return text

    return transform


_TRANSFORM = _transformer()


def _module_level(body: list[ast.stmt]) -> Iterable[ast.stmt]:
    """The statements a cell runs at module level: its body, and what ``if``, ``for``, ``while``,
    ``try`` and ``with`` blocks hold (a ``def`` under ``if True:`` defines a global all the same)."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.For | ast.AsyncFor | ast.While | ast.With | ast.AsyncWith):
            yield from _module_level([*node.body, *getattr(node, "orelse", [])])
        elif isinstance(node, ast.Try | ast.TryStar):
            handlers = [stmt for h in node.handlers for stmt in h.body]
            yield from _module_level([*node.body, *handlers, *node.orelse, *node.finalbody])


def refused_functions(
    sources: Iterable[str], modules: Iterable[str], graded: Iterable[str] = ()
) -> dict[str, tuple[str, str]]:
    """``{function or class name: (what it uses, module)}`` for the global definitions in ``sources``
    (the student's cells, in notebook order) that use one of ``modules``, themselves or through a
    helper of theirs.

    Names are followed through the cells in order, as a kernel running them top to bottom binds
    them: an import in one cell and the call in another is found, ``f = f1_score`` carries the
    import along (and refuses ``f`` itself), and a later ``def confusion_matrix`` replaces an
    imported one. A function that calls a helper that uses the module uses it too; a helper in
    ``graded`` does not pass it on (each graded function is judged on its own, its graded helpers
    replaced by the grader's, and refused for what it uses itself). What cannot be read
    that way counts against every definition: ``from module import *``, a cell over
    :data:`MAX_CELL_CHARS`, and a cell that names the module but is not Python.
    """
    modules, graded = tuple(modules), set(graded)
    aliases: dict[str, str] = {}
    definitions: dict[str, ast.AST] = {}  # global name -> its def, class or lambda
    direct: dict[str, tuple[str, str]] = {}  # global name bound straight to the module's function
    everywhere: tuple[str, str] | None = None
    tops = {m.split(".")[0] for m in modules}
    for source in sources:
        trees, unreadable = _read(source)
        if unreadable and everywhere is None:
            oversized = isinstance(source, str) and len(source) > MAX_CELL_CHARS
            named = isinstance(source, str) and any(top in source for top in tops)
            if oversized or named:
                what = f"a cell over {MAX_CELL_CHARS:,} characters" if oversized else "a cell that is not Python"
                everywhere = (what, modules[0])
        for tree in trees:
            for node in _module_level(tree.body):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    aliases.update(_imports(node))
                    star = isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
                    module = _matches(node.module or "", modules) if star else None
                    if module and everywhere is None:
                        everywhere = (f"from {node.module} import *", module)
                elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    aliases.pop(node.name, None)
                    direct.pop(node.name, None)
                    definitions[node.name] = node
                elif isinstance(node, ast.Assign):
                    dotted = _dotted(node.value, aliases)
                    used = _uses(node.value, aliases, modules)
                    for target in node.targets:
                        if not isinstance(target, ast.Name):
                            continue
                        definitions.pop(target.id, None)
                        direct.pop(target.id, None)
                        aliases.pop(target.id, None)
                        if dotted and _matches(dotted, modules):
                            aliases[target.id] = dotted
                        if used:
                            direct[target.id] = used
                        elif isinstance(node.value, ast.Lambda):
                            definitions[target.id] = node.value
    found = dict(direct)
    for name, node in definitions.items():
        used = _uses(node, aliases, modules)
        if used:
            found[name] = used
    while True:  # through helpers: a definition that names a refused one is refused
        more = {}
        for name, node in definitions.items():
            if name in found:
                continue
            helpers = sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)} & (found.keys() - graded))
            if helpers:
                used, module = found[helpers[0]]
                more[name] = (f"{helpers[0]} (which uses {used})", module)
        if not more:
            break
        found.update(more)
    if everywhere is not None:
        for name in [*definitions, *direct]:
            found.setdefault(name, everywhere)
    return found


def shortcut_message(name: str, used: str, module: str, instead: str) -> str:
    """The teaching message of a refused function."""
    return (
        f"{name} uses {used}: this assignment asks you to write it yourself, without {module}. "
        f"Instead, {instead}. The grader read this from your answer cells and gave the test no points."
    )


def refusals(sources: Iterable[str], instead: Mapping[str, str], graded: Iterable[str] = ()) -> dict[str, str]:
    """``{function name: teaching message}`` for the functions in ``sources`` that use a module of
    ``instead`` (``graded``: the assignment's graded names, see :func:`refused_functions`)."""
    if not instead:
        return {}
    return {
        name: shortcut_message(name, used, module, instead[module])
        for name, (used, module) in refused_functions(sources, tuple(instead), graded).items()
    }
