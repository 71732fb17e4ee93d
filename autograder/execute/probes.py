"""The integrity probes: what the grader records of a kernel before any student code, and compares after.

The probe is sent to the kernel as source every time (nothing of it lives there between probes) and
prints one JSON line between two marks; :func:`differences` turns two such reports into sentences.
Runs in the grader's worker; the probe's code runs in the student's kernel and decides nothing alone.
"""

from __future__ import annotations

import ast

from autograder import compare

ALWAYS_WATCHED = ("builtins", "math", "numpy", "numpy.testing", compare.__name__)
# Builtins a test may call directly; a student's own function of that name hides the real one.
JUDGING_BUILTINS = (
    "isinstance",
    "issubclass",
    "type",
    "len",
    "abs",
    "round",
    "float",
    "int",
    "str",
    "bool",
    "all",
    "any",
    "repr",
    "print",
    "min",
    "max",
    "sum",
    "sorted",
    "hasattr",
    "getattr",
    "set",
    "list",
    "dict",
    "tuple",
    "zip",
    "range",
    "enumerate",
    "iter",
    "next",
    "id",
    "callable",
    "vars",
    "__import__",
    "compile",
    "exec",
    "eval",
    "AssertionError",
    "Exception",
)
SHELL_METHODS = (
    "run_cell",
    "run_cell_async",
    "run_ast_nodes",
    "run_code",
    "transform_cell",
    "transform_ast",
    "showtraceback",
    "_showtraceback",
    "showsyntaxerror",
    "user_expressions",
    "ex",
    "ev",
    "should_run_async",
    "_run_cell",
    "get_exception_only",
    "init_user_ns",
)
KERNEL_METHODS = ("do_execute", "execute_request", "send_response", "_publish_execute_input", "_publish_status")
PROBE_MARK = "AUTOGRADER-PROBE"
# The kernel itself rebinds these for every request (stdin forwarding); they judge nothing.
PER_REQUEST = {("builtins", "input"), ("builtins", "raw_input"), ("getpass", "getpass")}

# The probe is sent as source every time (nothing of it lives in the kernel between probes) and
# prints one JSON line between two marks.
PROBE_CODE = r"""
def __autograder_probe(watched, judging, shell_methods, kernel_methods, mark):
    import sys, json, builtins, threading
    def ids(d):
        return {str(k): id(v) for k, v in list(d.items())}
    def method_ids(obj, names):
        out = {}
        for name in names:
            owner = next((k for k in type(obj).__mro__ if name in vars(k)), None)
            out[name] = [name in getattr(obj, "__dict__", {}), id(vars(owner)[name]) if owner else 0]
        return out
    report = {"modules": {}, "trace": [sys.gettrace() is None, sys.getprofile() is None,
              getattr(threading, "_trace_hook", None) is None, getattr(threading, "_profile_hook", None) is None]}
    for name in watched:
        module = sys.modules.get(name)
        if module is not None:
            report["modules"][name] = [id(module), ids(vars(module))]
    hooks = {}
    for name in ("displayhook", "stdout", "stderr", "breakpointhook", "settrace", "setprofile",
                 "gettrace", "exit", "modules"):
        hooks[name] = id(getattr(sys, name, None))
    report["sys"] = hooks
    report["import_hooks"] = [id(x) for x in sys.meta_path] + [id(x) for x in sys.path_hooks]
    import os
    trusted = []
    for pkg in ("IPython", "ipykernel", "matplotlib_inline", "matplotlib", "comm"):
        module = sys.modules.get(pkg)
        if module is not None and getattr(module, "__file__", None):
            trusted.append(os.path.dirname(os.path.realpath(module.__file__)) + os.sep)
    def trusted_callback(f):
        code = getattr(getattr(f, "__func__", f), "__code__", None)
        path = os.path.realpath(code.co_filename) if code is not None else ""
        return any(path.startswith(t) for t in trusted)
    ip = get_ipython()
    report["shell"] = {
        "id": id(ip),
        "cleanup": [id(x) for x in ip.input_transformers_cleanup],
        "post": [id(x) for x in ip.input_transformers_post],
        "ast": [id(x) for x in ip.ast_transformers],
        "manager": id(ip.input_transformer_manager),
        "events": {k: [[id(f), trusted_callback(f)] for f in v] for k, v in ip.events.callbacks.items()},
        "methods": method_ids(ip, shell_methods),
        "kernel": method_ids(ip.kernel, kernel_methods) if getattr(ip, "kernel", None) is not None else {},
    }
    user_builtins = vars(builtins)
    report["shadows"] = sorted(n for n in judging if n in ip.user_ns and ip.user_ns[n] is not user_builtins.get(n)
                               and callable(ip.user_ns[n]))
    sys.stdout.write("\n" + mark + json.dumps(report) + mark + "\n")
    sys.stdout.flush()
try:
    __autograder_probe(%s, %s, %s, %s, %r)
finally:
    del __autograder_probe
"""


def watched_modules(sources: list[str]) -> list[str]:
    """Modules the test cells import (and their parents), plus those every course test relies on."""
    names = set(ALWAYS_WATCHED)
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(names)


def probe_code(watched: list[str]) -> str:
    return PROBE_CODE % (watched, list(JUDGING_BUILTINS), list(SHELL_METHODS), list(KERNEL_METHODS), PROBE_MARK)


def differences(baseline: dict, now: dict) -> list[str]:
    """What changed since the baseline, as short sentences (empty: pristine)."""
    found = []
    if now["trace"] != baseline["trace"]:
        found.append("a tracing or profiling hook was installed (sys.settrace/setprofile)")
    for module, (module_id, attrs) in baseline["modules"].items():
        current = now["modules"].get(module)
        if current is None or current[0] != module_id:
            found.append(f"module {module} was replaced in sys.modules")
            continue
        changed = sorted(
            name for name, ident in attrs.items() if current[1].get(name) != ident and (module, name) not in PER_REQUEST
        )
        if changed:
            found.append(f"{module}.{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''} replaced or deleted")
    for name, ident in baseline["sys"].items():
        if now["sys"].get(name) != ident:
            found.append(f"sys.{name} was replaced")
    shell, shell_now = baseline["shell"], now["shell"]
    for key, label in (
        ("cleanup", "an IPython input transformer"),
        ("post", "an IPython input transformer"),
        ("ast", "an IPython AST transformer"),
        ("manager", "IPython's input transformer manager"),
        ("id", "the IPython shell"),
    ):
        if shell_now.get(key) != shell[key]:
            found.append(f"{label} was added or replaced")
    for event, callbacks in shell["events"].items():
        now_callbacks = shell_now["events"].get(event, [])
        before = {ident for ident, _ in callbacks}
        removed = before - {ident for ident, _ in now_callbacks}
        # IPython, ipykernel and matplotlib register callbacks of their own (inline figures).
        added = [ident for ident, trusted in now_callbacks if ident not in before and not trusted]
        if removed or added:
            found.append(f"an IPython '{event}' event callback was added or removed")
    # Finders may be added (libraries register their own); the original ones must stay.
    if not set(baseline["import_hooks"]) <= set(now["import_hooks"]):
        found.append("an import hook of the interpreter was removed or replaced")
    for group, label in (("methods", "IPython shell"), ("kernel", "kernel")):
        for name, ident in shell[group].items():
            if shell_now[group].get(name) != ident:
                found.append(f"the {label} method {name} was patched")
    new_shadows = sorted(set(now["shadows"]) - set(baseline["shadows"]))
    if new_shadows:
        found.append(
            f"the notebook defines {', '.join(new_shadows)} at top level, hiding Python's builtin the tests rely on"
        )
    return sorted(set(found), key=found.index)
