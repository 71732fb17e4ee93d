"""The judge grades 04_practice from the notebook's text, in the grader's process: nothing the student's
kernel does, prints or forges decides a grade."""

from __future__ import annotations

import base64
import json
import pickle
import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from autograder import notebook as nbu
from autograder.commands.grade import GradeSettings, grade
from autograder.commands.nbgrader_run import scratch_course
from autograder.commands.rehearsal import Graded, judge_notebooks, with_answers
from autograder.course import Course
from autograder.judge.literal import judge_cell, literal_answers
from autograder.judge.verdict import AMBIGUOUS
from harness import ROOT, course
from practice import practice_letters, practice_notebook, practice_questions, wrong_letters

A = "04_practice"
NB = f"{A}.ipynb"


def test_only_top_level_literal_assignments_are_read():
    found = literal_answers(
        [
            '# Your answer to question 1\n### BEGIN SOLUTION\nanswer_q1 = "B"\n### END SOLUTION',
            "answer_q2 = 'A'  # a comment\nimport os\nos.system('true')",
            'answer_q3 = "".join(["A"])',  # a call: not a literal, never run
            "if True:\n    answer_q4 = 'D'",  # not top level
            "answer_q5 = 'C'\nanswer_q5 = 'D'",
            "answer_q6 = 'A'",
            "answer_q6 = 'A'",
            "answer_q7 = (",  # does not parse
            "answer_q8 = " + repr("x" * 30_000),  # too long to read
            "answer_q9 = " + "-" * 19_000 + "1",  # nests too deep for the parser: read as nothing, no crash
            "answer_q10 = x" + ".b" * 9_000,
        ]
    )
    assert found == {"answer_q1": "B", "answer_q2": "A", "answer_q5": AMBIGUOUS, "answer_q6": "A"}


def test_a_test_passes_fails_with_its_message_or_names_the_missing_literal():
    test = 'from autograder.compare import expect_choice\nexpect_choice(answer_q1, "B", {"A": "A is the myth"})'
    assert judge_cell(test, {"answer_q1": "B"}, "t") is None
    assert judge_cell(test, {"answer_q1": "A"}, "t") == "AssertionError: A is the myth"
    assert "plain literal" in judge_cell(test, {}, "t")
    assert "two different values" in judge_cell(test, {"answer_q1": AMBIGUOUS}, "t")
    assert judge_cell(test, {"answer_q1": 7}, "t").startswith("AssertionError: your answer is a int")


def _kernel(reply):
    """A stand-in for the student's kernel: ``reply(request) -> list of display contents``."""

    def execute(request: str, hook) -> None:
        for content in reply(json.loads(request)):
            hook(content)

    return execute


def test_a_remote_function_returns_plain_data_and_refuses_the_rest():
    from autograder import wire
    from autograder.judge.remote import Channel, Remote

    def echo(request):
        args, _kwargs = pickle.loads(base64.b64decode(request["payload"]))  # the test's own kernel stand-in
        return [
            {"token": "someone-else", "value": wire.dumps("forged")},  # another token: ignored
            {"token": request["token"], "value": wire.dumps([args, request["op"], request["name"]])},
        ]

    def remote(execute):
        return Remote(Channel(execute), {"name": "f"})

    assert remote(_kernel(echo))(1, (2.5, "x")) == [(1, (2.5, "x")), "call", "f"]

    def raises(kind):
        return _kernel(lambda req: [{"token": req["token"], "raised": kind, "message": "why"}])

    with pytest.raises(ZeroDivisionError, match="why"):
        remote(raises("ZeroDivisionError"))()
    with pytest.raises(RuntimeError, match="raised AssertionError: why"):
        remote(raises("AssertionError"))()  # never poses as the test's own verdict
    with pytest.raises(RuntimeError, match="raised SneakyError"):
        remote(raises("SneakyError"))()
    with pytest.raises(RuntimeError, match="no answer"):
        remote(_kernel(lambda req: []))()
    with pytest.raises(RuntimeError, match="not plain data"):
        remote(_kernel(lambda req: [{"token": req["token"], "value": '{"$": "pickle"}'}]))()
    # A handle comes back as one stand-in per kernel object; a forged handle tag is only a number.
    handle = {"$": "ref", "id": 7, "type": "torch.nn.modules.linear.Linear"}
    twice = remote(_kernel(lambda req: [{"token": req["token"], "value": json.dumps([handle, handle])}]))()
    assert twice[0] is twice[1] and type(twice[0]) is Remote and "Linear" in repr(twice[0])


def test_a_missing_name_gets_advice_that_fits_the_judge():
    """04's literal advice ("write it as one plain literal ... = 'B'") only where answers are literals: a
    function that reads a name its notebook never defined is told that, with the name."""
    from autograder.judge.call import CallJudge

    def kernel(request):  # the call raises NameError in the student's kernel; freeing its objects works
        missing = {"raised": "NameError", "message": "name 'NF4_LEVELS' is not defined"}
        return [{"token": request["token"], **(missing if request["op"] == "call" else {"value": "null"})}]

    judge = CallJudge([], ["dequantize"], _kernel(kernel))
    message = judge.verdict("dequantize(1)", "test_dequantize")
    assert message.startswith("NameError: name 'NF4_LEVELS' is not defined"), message
    assert "define or import it" in message and "literal" not in message, message
    # A test that names a graded function the student never wrote: the same advice, not 04's.
    message = CallJudge([], [], _kernel(lambda req: [])).verdict("quantize(1)", "test_quantize")
    assert "'quantize' is not defined" in message and "literal" not in message, message
    assert "plain literal" in judge_cell("answer_q3 == 'A'", {}, "test_q3")


WRONG = {n: wrong_letters(n)[0] for n in practice_letters()}

# Tricks that act in the kernel. Each one answers every question wrongly.
KERNEL_TRICKS = {
    # Every error swallowed, and a line printed that looks like success.
    "custom_exc_swallows": (
        "def _quiet(shell, etype, evalue, tb, tb_offset=None):\n    print('ok')\n"
        "get_ipython().set_custom_exc((BaseException,), _quiet)"
    ),
    # The graded helper rewritten in place, keeping its identity.
    "code_object_swap": (
        "import autograder.compare as c\n"
        "def _yes(*a, **k):\n    return None\n"
        "c.expect_choice.__code__ = _yes.__code__\nc.expect.__code__ = _yes.__code__"
    ),
    # An input transformer that blanks every test cell before it runs.
    "blanks_test_cells": (
        "get_ipython().input_transformer_manager.line_transforms.append(lambda lines: [] if any("
        "'expect' in l for l in lines) else lines)"
    ),
}


@pytest.mark.slow
def test_kernel_tricks_and_forged_cells_decide_nothing(tmp_path):
    root = scratch_course(course(), tmp_path / "course", [A])
    shutil.copytree(ROOT / "release" / A, root / "release" / A)
    marker = tmp_path / "judge-ran-student-code"
    submissions = {"honest": practice_notebook(practice_letters()), "wrong": practice_notebook(WRONG)}
    for name, trick in KERNEL_TRICKS.items():
        submissions[name] = practice_notebook(WRONG, before_q1=trick)
    # Answer 1's last value is the right letter in a str subclass whose repr (the visible check's
    # f-string calls it) publishes an execute_result, nbgrader's "partial credit" output; its only
    # literal is the wrong letter. A grader that ran the test in the kernel would give it the point.
    sneaky = practice_notebook(WRONG)
    for cell in sneaky.cells:
        if nbu.cell_id(cell) == "answer_q1":
            cell.source += (
                "\nclass Sneaky(str):\n"
                "    def __repr__(self):\n"
                "        get_ipython().display_pub.publish({'text/plain': '1.0'})\n"
                "        return str.__repr__(self)\n"
                f"answer_q1 = Sneaky({practice_letters()[1]!r})"
            )
    submissions["repr_publishes_result"] = sneaky
    # Not a literal: the grader does not run code to find the answer.
    submissions["computed"] = practice_notebook(practice_letters())
    for cell in submissions["computed"].cells:
        if (nbu.cell_id(cell) or "").startswith("answer_q"):
            name, letter = cell.source.split(" = ")
            cell.source = f'{name} = "".join([{letter}])'  # runs to the right letter; is no literal
    # A forged grade cell: if the judge ran the notebook's own test cells it would run this.
    forged = practice_notebook(WRONG)
    evil = new_code_cell(f"open({str(marker)!r}, 'w').write('ran')\nanswer_q1 = 'B'")
    evil.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "locked": True,
        "grade_id": "test_evil",
        "points": 20,
        "schema_version": 3,
    }
    forged.cells.append(evil)
    submissions["forged_test_cell"] = forged
    for student, nb in submissions.items():
        folder = root / "submitted" / student / A
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / NB)

    run = grade(Course.load(root), A, settings=GradeSettings(jobs=2))
    scores = {g.student: g.score for g in run.grades}
    assert scores.pop("honest") == sum(q.points for q in practice_questions().values()), run.problems
    assert scores == dict.fromkeys(scores, 0.0), scores
    assert not marker.exists(), "the judge ran code from the submitted notebook"


# --- 03_metrics: hidden tests run in the judge; the kernel only answers calls with plain data ------

M = "03_metrics"
METRICS = [
    "confusion_matrix",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "binary_report",
    "macro_f1",
    "production_ready",
    "verdict",
    "find_leaks",
    "best_epoch",
    "paired_bootstrap_ci",
    "worth_it",
]
SIGNATURES = {
    "confusion_matrix": "y_true, y_pred, labels",
    "accuracy": "tp, fn, fp, tn",
    "precision": "tp, fp",
    "recall": "tp, fn",
    "f1": "p, r",
    "binary_report": "y_true, y_pred, positive=1",
    "macro_f1": "y_true, y_pred",
    "production_ready": "recall_value, min_recall",
    "verdict": "baseline, candidate",
    "find_leaks": "train_texts, test_texts",
    "best_epoch": "val_losses",
    "paired_bootstrap_ci": "y_true, pred_a, pred_b, metric, n_boot=1000, seed=0, level=0.95",
    "worth_it": "full, adapted",
}


def _returning(expression: str, signatures: dict[str, str]) -> dict[str, str]:
    """One answer cell per graded function: ``def name(signature): return expression``."""
    return {name: f"def {name}({signature}):\n    return {expression}" for name, signature in signatures.items()}


def _every_function_returns(expression: str, prelude: str = "") -> dict[str, str]:
    """Answer cells in which every graded function returns ``expression`` (``prelude`` in the first)."""
    cells = _returning(expression, {name: SIGNATURES[name] for name in METRICS})
    cells[METRICS[0]] = prelude + "\n" + cells[METRICS[0]]
    return cells


# The library's module name, built where no reading of the cell can see it.
_HIDDEN_IMPORT = "__import__('.'.join(['sklearn', 'metrics']), fromlist=['f1_score'])"

METRIC_TRICKS = {
    # The control: wrong everywhere, no trick.
    "all_wrong": _every_function_returns("None"),
    # scikit-learn's metrics imported inside the functions, under a name built at run time: the
    # kernel's call server makes the module unimportable while the judge calls them.
    "imports_the_library_at_call_time": {
        **_every_function_returns("None"),
        "confusion_matrix": "def confusion_matrix(y_true, y_pred, labels):\n"
        f"    return {_HIDDEN_IMPORT}.confusion_matrix(y_true, y_pred, labels=labels)",
        "macro_f1": "def macro_f1(y_true, y_pred):\n"
        f"    return float({_HIDDEN_IMPORT}.f1_score(y_true, y_pred, average='macro', zero_division=0))",
    },
    # The checks' helpers rewritten in place in the kernel.
    "helpers_rewritten": _every_function_returns(
        "None",
        "import autograder.compare as _c\n"
        "def _pass(*a, **k):\n    return None\n"
        "for _f in (_c.expect, _c.expect_equal, _c.expect_close, _c.expect_all_close):\n"
        "    _f.__code__ = _pass.__code__",
    ),
    # Reads the expected value out of the caller's frames.
    "reads_caller_frames": _every_function_returns(
        "_peek()",
        "import sys\n"
        "def _peek():\n"
        "    f = sys._getframe(2)\n"
        "    while f is not None:\n"
        "        for k in ('want', '_want', 'expected', '_exp'):\n"
        "            if k in f.f_locals:\n"
        "                return f.f_locals[k]\n"
        "        f = f.f_back\n"
        "    return None",
    ),
    # A number that equals everything.
    "lying_float": _every_function_returns(
        "_Yes(0.5)",
        "class _Yes(float):\n    def __eq__(self, other):\n        return True\n    __hash__ = float.__hash__",
    ),
    # The call server itself replaced: every call answered with one made-up value.
    "server_replaced": _every_function_returns(
        "None",
        "import autograder.kernel.server as _ks\n"
        "import json as _json\n"
        "def _answer(request, namespace):\n"
        "    return {'token': _json.loads(request)['token'], 'value': '0.875'}\n"
        "_ks.answer = _answer",
    ),
    # The metric the test sends in is the grader's function: look through its globals for the expected
    # interval, and otherwise answer whatever gets past the visible checks.
    "reads_metric_globals": {
        **_every_function_returns("None"),
        "paired_bootstrap_ci": (
            "def paired_bootstrap_ci(y_true, pred_a, pred_b, metric, n_boot=1000, seed=0, level=0.95):\n"
            "    import numpy as np\n"
            "    if np.array_equal(np.asarray(pred_a), np.asarray(pred_b)):\n"
            "        return (0.0, 0.0)\n"
            "    want = getattr(metric, '__globals__', {}).get('_want')\n"
            "    if want is not None:\n"
            "        return (float(want[0]), float(want[1]))\n"
            "    return (0.05, 0.05) if n_boot == 1 else (-1.0, 1.0)"
        ),
    },
    # math and numpy patched in the kernel so that every closeness test says yes.
    "patches_math": _every_function_returns(
        "0.0",
        "import math, numpy\nmath.isclose = lambda *a, **k: True\nnumpy.allclose = lambda *a, **k: True",
    ),
}


def _judge_tricks(
    assignment: str, tricks: dict[str, dict[str, str]], moved: dict[str, tuple[str, ...]] | None = None, **options
) -> dict[str, Graded]:
    """Each trick's notebook (the release with its answer cells replaced by grade id, and the cells
    ``moved`` names for it moved to the end) judged through the judge's seam, in a guarded kernel of
    its own: ``{trick: Graded}``."""
    release = nbformat.read(ROOT / "release" / assignment / f"{assignment}.ipynb", as_version=4)
    notebooks = {student: with_answers(release, answers) for student, answers in tricks.items()}
    for student, cells in (moved or {}).items():
        nb = notebooks[student]
        nb.cells = [c for c in nb.cells if nbu.cell_id(c) not in cells] + [
            c for name in cells for c in nb.cells if nbu.cell_id(c) == name
        ]
    return judge_notebooks(course(), assignment, notebooks, shared_kernel=False, **options)


def _scores(graded: dict[str, Graded]) -> dict[str, float]:
    return {student: g.grade.score for student, g in graded.items()}


@pytest.mark.slow
def test_metric_tricks_in_the_kernel_earn_nothing():
    graded = _judge_tricks(M, METRIC_TRICKS)
    assert _scores(graded) == dict.fromkeys(METRIC_TRICKS, 0.0), {s: g.errors for s, g in graded.items()}


# --- 01_lora_basics: objects stay in the kernel; the judge sends inputs and reads plain data back ---

L = "01_lora_basics"


def _lora_answers(ret: str = "None", forward: str = "self.base(x)", prelude: str = "") -> dict[str, str]:
    """01's answer cells, every one wrong: each function returns ``ret``; LoRALinear has no adapter
    and its forward returns ``forward``. ``prelude`` runs first."""
    cells = _returning(
        ret,
        {
            "full_param_count": "d_in, d_out, bias=True",
            "lora_param_count": "d_in, d_out, r",
            "trainable_fraction": "d_in, d_out, r, bias=True",
            "count_trainable_parameters": "model",
            "inject_lora": "model, target_modules, r=8, alpha=16.0",
        },
    )
    cells["LoRALinear"] = (
        "class LoRALinear(nn.Module):\n"
        "    def __init__(self, base, r=8, alpha=16.0):\n"
        "        super().__init__()\n"
        "        self.base, self.scaling = base, 0.0\n"
        "    def forward(self, x):\n"
        f"        return {forward}\n"
        "    def merged_weight(self):\n"
        "        return self.base.weight\n"
    )
    cells["full_param_count"] = prelude + "\n" + cells["full_param_count"]
    return cells


# A tensor subclass that says it is close to (and equal to) anything; 01's and 02's catalogues use it.
LIAR_TENSOR = (
    "import torch\n"
    "class _Liar(torch.Tensor):\n"
    "    @classmethod\n"
    "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
    "        if func in (torch.allclose, torch.equal, torch.Tensor.__eq__):\n"
    "            return True\n"
    "        return super().__torch_function__(func, types, args, kwargs or {})"
)


LORA_TRICKS = {
    # The control: wrong everywhere, no trick.
    "all_wrong": _lora_answers(),
    # The checks' helpers rewritten in place in the kernel (where the tests no longer run).
    "helpers_rewritten": _lora_answers(
        prelude="import autograder.compare as _c\n"
        "def _pass(*a, **k):\n    return None\n"
        "for _f in (_c.expect, _c.expect_equal, _c.expect_close, _c.expect_all_close):\n"
        "    _f.__code__ = _pass.__code__",
    ),
    # The kernel's half of the object helpers replaced with answers that look right.
    "object_helpers_lie": _lora_answers(
        prelude="import autograder.objects as _o\n"
        "_o.trainable_numel = lambda model: 110_592\n"
        "_o.module_types = lambda model: {'': 'x', 'query': '__main__.LoRALinear'}\n"
        "_o.grads_after = lambda *a, **k: {'lora_A': None, 'lora_B': None}\n"
        "_o.set_tensor = lambda *a, **k: None",
    ),
    # Reads the expected value out of the caller's frames.
    "reads_caller_frames": _lora_answers(
        "_peek()",
        prelude="import sys\n"
        "def _peek():\n"
        "    f = sys._getframe(1)\n"
        "    while f is not None:\n"
        "        for k in ('_want', 'want', 'expected', 'right', '_reference'):\n"
        "            if k in f.f_locals:\n"
        "                return f.f_locals[k]\n"
        "        f = f.f_back\n"
        "    return None",
    ),
    # A number equal to everything.
    "lying_int": _lora_answers(
        "_Yes(0)",
        prelude="class _Yes(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__",
    ),
    # A tensor subclass that says it is close to (and equal to) anything.
    "liar_tensor": _lora_answers(
        forward="torch.zeros(*x.shape[:-1], self.base.out_features, dtype=x.dtype).as_subclass(_Liar)",
        prelude=LIAR_TENSOR + "\n"
        "    def __array__(self, *a, **k):\n"
        "        import numpy\n"
        "        return numpy.asarray(self.detach().as_subclass(torch.Tensor)) + 1e9",
    ),
    # torch, numpy and math patched on the first call, so every closeness test says yes.
    "patches_torch_on_first_call": _lora_answers(
        forward="_patch() or self.base(x)",
        prelude="def _patch():\n"
        "    import math, numpy, torch\n"
        "    torch.allclose = numpy.allclose = math.isclose = lambda *a, **k: True\n"
        "    torch.equal = lambda *a, **k: True",
    ),
    # The call server replaced: every call answered with one made-up number.
    "server_replaced": _lora_answers(
        prelude="import autograder.kernel.server as _ks\n"
        "import json as _json\n"
        "def _answer(request, namespace):\n"
        "    return {'token': _json.loads(request)['token'], 'value': '147840'}\n"
        "_ks.answer = _answer",
    ),
    # Answers forged from inside a graded call: the request's token read from the server's frame,
    # the answer written straight into the server's socket, ahead of the real one.
    "forges_answer_from_frame": _lora_answers(
        "_forge()",
        prelude="import sys, json, struct\n"
        "def _forge():\n"
        "    f, token, conn = sys._getframe(1), None, None\n"
        "    while f is not None:\n"
        "        token = token or f.f_locals.get('req', {}).get('token')\n"
        "        conn = conn or f.f_locals.get('conn')\n"
        "        f = f.f_back\n"
        "    if token and conn:\n"
        "        data = json.dumps({'token': token, 'value': 'true'}).encode()\n"
        "        conn.sendall(struct.pack('>I', len(data)) + data)\n"
        "    return None",
    ),
    # The call server never started: every test cell's calls go unanswered.
    "server_never_connects": _lora_answers(
        prelude="import autograder.kernel.server as _ks\n_ks.serve = lambda path: None",
    ),
    # repr/format publish an execute_result (nbgrader's partial credit) whenever they are called.
    "format_publishes_result": _lora_answers(
        "_Loud()",
        prelude="class _Loud:\n"
        "    def __repr__(self):\n"
        "        get_ipython().display_pub.publish({'text/plain': '3'})\n"
        "        return '147840'\n"
        "    __str__ = __repr__\n"
        "    def __format__(self, spec):\n"
        "        return repr(self)",
    ),
    # builtins swapped in the kernel.
    "swapped_builtins": _lora_answers(
        prelude="import builtins\n"
        "builtins.all = builtins.any = lambda *a, **k: True\n"
        "builtins.abs = lambda x: 0\n"
        "builtins.sum = lambda *a, **k: 0",
    ),
    # Notices it is being graded (called from the call server) and ends the kernel.
    "notices_grading": _lora_answers(
        "_graded()",
        prelude="import sys, os\n"
        "def _graded():\n"
        "    f = sys._getframe(1)\n"
        "    while f is not None:\n"
        "        if 'kernel/server.py' in f.f_code.co_filename:\n"
        "            os._exit(0)\n"
        "        f = f.f_back\n"
        "    return None",
    ),
    # The wrapped layer's weights zeroed in place, so a reference read back from it would move.
    "mutates_its_inputs": _lora_answers(
        forward="self.base(x) * 0",
        prelude="import torch\n"
        "_orig = nn.Module.__init__\n"
        "def _zeroing_init(self, *a, **k):\n"
        "    _orig(self, *a, **k)\n"
        "nn.Module.__init__ = _zeroing_init\n"
        "def _zero(model):\n"
        "    with torch.no_grad():\n"
        "        for p in model.parameters():\n"
        "            p.zero_()\n"
        "    return model",
    ),
    # Reports one thing when inspected first, another afterwards.
    "changes_after_inspection": _lora_answers(
        forward="self.base(x) + 0 * self._flip()",
        prelude="_count = [0]\ndef _flip_impl(self):\n    _count[0] += 1\n    return 0\nnn.Module._flip = _flip_impl",
    ),
}
LORA_TRICKS["mutates_its_inputs"]["inject_lora"] = (
    "def inject_lora(model, target_modules, r=8, alpha=16.0):\n    return _zero(model)"
)
LORA_TRICKS["changes_after_inspection"]["LoRALinear"] = (
    "class LoRALinear(nn.Module):\n"
    "    def __init__(self, base, r=8, alpha=16.0):\n"
    "        super().__init__()\n"
    "        self.base, self._seen = base, 0\n"
    "        self.lora_A = nn.Parameter(torch.zeros(r, base.in_features))\n"
    "        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))\n"
    "    @property\n"
    "    def scaling(self):\n"
    "        self._seen += 1\n"
    "        return 2.0 if self._seen == 1 else -1.0\n"
    "    def forward(self, x):\n"
    "        return self.base(x)\n"
    "    def merged_weight(self):\n"
    "        return self.base.weight * 0\n"
)


@pytest.mark.slow
def test_lora_tricks_in_the_kernel_earn_no_more_than_all_wrong():
    import hashlib

    def digest():
        files = sorted(p for f in ("release", "source") for p in (ROOT / f / L).rglob("*") if p.is_file())
        return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    before = digest()
    graded = _judge_tricks(L, LORA_TRICKS)
    scores = _scores(graded)
    assert set(scores) == set(LORA_TRICKS)
    control = scores.pop("all_wrong")
    assert control == 0.0, graded["all_wrong"].errors
    assert scores == dict.fromkeys(LORA_TRICKS.keys() - {"all_wrong"}, 0.0), scores
    assert "call server did not connect" in " ".join(graded["server_never_connects"].review), graded[
        "server_never_connects"
    ].review
    assert digest() == before, "grading changed a course file"


# The reference's full_param_count, wrapped so that the grader's first call to it never returns:
# ``body`` is the loop it spins in.
def _hangs_once(body: str) -> str:
    nb = nbformat.read(ROOT / "source" / L / f"{L}.ipynb", as_version=4)
    source = next(c.source for c in nb.cells if nbu.cell_id(c) == "full_param_count")
    return (
        source.replace("def full_param_count(", "def _reference_full_param_count(") + "\n_hung = []\n"
        "def full_param_count(d_in, d_out, bias=True):\n"
        "    import sys, time\n"
        "    f = sys._getframe(1)\n"
        "    while f is not None and not _hung:\n"
        "        if 'kernel/server.py' in f.f_code.co_filename:\n"
        "            _hung.append(1)\n"
        f"{body}\n"
        "        f = f.f_back\n"
        "    return _reference_full_param_count(d_in, d_out, bias)\n"
    )


@pytest.mark.slow
def test_a_call_that_never_returns_fails_its_test_and_the_rest_are_still_graded():
    """The first graded call to full_param_count spins: "loops" can be interrupted, and the tests after
    it are graded as usual (the reference's answers: every other cell earns its points); "deaf" ignores
    the interrupt, and the kernel is given up (the rest score zero) without holding the grader for more
    than its time limits."""
    source = nbformat.read(ROOT / "source" / L / f"{L}.ipynb", as_version=4)
    students = {  # judged at once, two kernels
        "deaf": with_answers(
            source,
            {
                "full_param_count": _hangs_once(
                    "            while True:\n"
                    "                try:\n"
                    "                    time.sleep(1)\n"
                    "                except BaseException:\n"
                    "                    pass"
                )
            },
        ),
        "loops": with_answers(
            source, {"full_param_count": _hangs_once("            while True:\n                pass")}
        ),
    }
    graded = judge_notebooks(course(), L, students, shared_kernel=False, cell_timeout=10)
    scores = _scores(graded)
    review = {s: " ".join(g.review) for s, g in graded.items()}
    points = {nbu.cell_id(c): nbu.nbgrader_meta(c).get("points", 0) for c in source.cells if nbu.is_test_cell(c)}
    assert scores["loops"] == sum(points.values()) - points["test_full_param_count"], (scores, graded["loops"].errors)
    assert "did not return within 10 s" in review["loops"], review
    assert scores["deaf"] < scores["loops"], scores
    assert "ignored its time limit" in review["deaf"], review


# --- 02_quantization: the grader's stand-ins travel into the kernel; its references stay here ------

Q = "02_quantization"
QUANT_SIGNATURES = {
    "bytes_per_param": "dtype",
    "weights_gb": "n_params, dtype",
    "qlora_model_size": "model_size, lora_size, quantization_factor",
    "absmax_quantize": "x, bits=8",
    "absmax_dequantize": "q, scale",
    "nf4_levels": "",
    "nf4_quantize": "x, block_size=64",
    "nf4_dequantize": "codes, absmax, block_size=64",
    "quant_constant_bits": "block_size=64, double_quant=False, block_size2=256",
}


def _quant_answers(ret: str = "None", prelude: str = "") -> dict[str, str]:
    """02's answer cells, every function returning ``ret`` (``prelude`` first)."""
    cells = _returning(ret, QUANT_SIGNATURES)
    cells["bytes_per_param"] = prelude + "\n" + cells["bytes_per_param"]
    return cells


# weights_gb and nf4_quantize written right, through helpers that the tricks below make wrong; each
# remembers what its helper answered (for the trick that keeps it).
RIGHT_WITH_HELPERS = {
    "weights_gb": "def weights_gb(n_params, dtype):\n"
    "    for f in ('fp32', 'fp16', 'bf16', 'int8', 'int4', 'nf4', 'fp4'):\n"
    "        if '_seen' in globals():\n"
    "            _seen[f] = bytes_per_param(f)\n"
    "    return n_params * bytes_per_param(dtype) / 1e9",
    "nf4_quantize": "def nf4_quantize(x, block_size=64):\n"
    "    levels = nf4_levels().float()\n"
    "    if '_seen' in globals():\n"
    "        _seen['levels'] = levels\n"
    "    blocks = x.float().reshape(-1, block_size)\n"
    "    absmax = blocks.abs().amax(dim=1)\n"
    "    scaled = blocks / torch.where(absmax > 0, absmax, torch.ones_like(absmax))[:, None]\n"
    "    codes = (scaled.reshape(-1, 1) - levels).abs().argmin(dim=1).to(torch.uint8)\n"
    "    return codes.reshape(x.shape), absmax",
}

QUANT_TRICKS = {
    "all_wrong": _quant_answers(),
    # bitsandbytes patched in the kernel, so that its NF4 table (the reference) is the student's.
    "patches_bitsandbytes": _quant_answers(
        "torch.zeros(16)",
        prelude="import bitsandbytes.functional as _f, torch\n"
        "_f.get_4bit_type = lambda *a, **k: torch.zeros(16)\n"
        "_f.quantize_4bit = _f.dequantize_4bit = lambda *a, **k: (torch.zeros(1), None)",
    ),
    # The grader's stand-in for a helper, caught as it passes through and kept for every later call.
    "keeps_the_stand_in": _quant_answers(
        "_stolen[0]() if _stolen else None",
        prelude="_stolen = []\n"
        "import autograder.objects as _o\n"
        "_real = _o.with_globals\n"
        "def _steal(fn, **stand_ins):\n"
        "    _stolen.extend(stand_ins.values())\n"
        "    return _real(fn, **stand_ins)\n"
        "_o.with_globals = _steal",
    ),
    # A tensor subclass that compares equal to anything.
    "liar_tensor": _quant_answers(
        "torch.zeros(16).as_subclass(_Liar)",
        prelude=LIAR_TENSOR,
    ),
    # The stand-ins kept as they pass through, and the tests they would pass (bytes_per_param's and
    # nf4_levels') moved below the tests that hand them over (weights_gb's, nf4_quantize's: right here).
    "keeps_the_stand_ins_and_moves_tests": {
        **_quant_answers(),
        **RIGHT_WITH_HELPERS,
        "bytes_per_param": "_kept = {}\n"
        "import autograder.objects as _o\n"
        "_real = _o.with_globals\n"
        "def _keep(fn, **stand_ins):\n"
        "    _kept.update(stand_ins)\n"
        "    return _real(fn, **stand_ins)\n"
        "_o.with_globals = _keep\n"
        "def bytes_per_param(dtype):\n"
        "    return _kept['bytes_per_param'](dtype) if 'bytes_per_param' in _kept else 4.0",
        "nf4_levels": "def nf4_levels():\n"
        "    return _kept['nf4_levels']() if 'nf4_levels' in _kept else torch.linspace(-1, 1, 16)",
    },
    # What the stand-ins answer, remembered while the student's (right) functions run with them, and
    # the tests that remembering would pass moved below.
    "remembers_the_stand_ins_answers_and_moves_tests": {
        **_quant_answers(),
        **RIGHT_WITH_HELPERS,
        "bytes_per_param": "_seen = {}\ndef bytes_per_param(dtype):\n    return _seen.get(dtype, 4.0)",
        "nf4_levels": "def nf4_levels():\n    return _seen.get('levels', torch.linspace(-1, 1, 16))",
    },
}
# Test cells these tricks move to the end of their notebooks.
QUANT_MOVED = dict.fromkeys(
    ("keeps_the_stand_ins_and_moves_tests", "remembers_the_stand_ins_answers_and_moves_tests"),
    ("test_bytes_per_param", "test_nf4_levels"),
)


@pytest.mark.slow
def test_quantization_tricks_in_the_kernel_earn_no_more_than_all_wrong():
    graded = _judge_tricks(Q, QUANT_TRICKS, QUANT_MOVED)
    scores = _scores(graded)
    assert scores.pop("all_wrong") == 0.0, graded["all_wrong"].errors
    for trick, moved in QUANT_MOVED.items():
        g, _ = graded[trick], scores.pop(trick)
        # The control: its right functions ran with the stand-ins (and the trick had its chance).
        assert g.full_marks("test_weights_gb") and g.full_marks("test_nf4_quantize"), (trick, g.errors)
        assert [g.score(cell) for cell in moved] == [0, 0], f"{trick}: {g.errors}"
    assert scores == dict.fromkeys(QUANT_TRICKS.keys() - {"all_wrong", *QUANT_MOVED}, 0.0), scores


# --- 05_qlora_lab: the student's QLoRA layer stays in the kernel; bitsandbytes + PEFT stay here ---

QL = "05_qlora_lab"


def _qlora_answers(ret: str = "None", tensor: str = "torch.zeros(1)", prelude: str = "") -> dict[str, str]:
    """05's answer cells, every one wrong: each function returns ``ret``; QLoRALinear keeps the layer in
    full precision, has no adapter, and answers ``tensor`` for every tensor asked. ``prelude`` runs first."""
    cells = _returning(
        ret,
        {
            "inject_qlora": "model, r=8, alpha=16.0, targets='all-linear'",
            "make_bnb_config": "compute_dtype",
            "make_lora_config": "r=8, alpha=16",
            "lab_verdict": "full_finetune_f1, qlora_f1",
            "lab_worth_it": "full, qlora",
            "paired_bootstrap_ci": "y_true, pred_a, pred_b, metric, n_boot=1000, seed=0, level=0.95",
        },
    )
    cells["QLoRALinear"] = (
        prelude + "\n"
        "class QLoRALinear(nn.Module):\n"
        "    def __init__(self, base, r=8, alpha=16.0, block_size=64, double_quant=True):\n"
        "        super().__init__()\n"
        "        self.base = base\n"
        "    def block_constants(self):\n"
        f"        return {tensor}\n"
        "    def dequantized_weight(self):\n"
        f"        return {tensor}\n"
        "    def forward(self, x):\n"
        f"        return {tensor}\n"
        "    def weight_bytes(self):\n"
        f"        return {ret}\n"
    )
    return cells


QLORA_TRICKS = {
    "all_wrong": _qlora_answers(),
    # Every tensor answered is a subclass that says it is close to (and equal to) anything.
    "liar_tensor": _qlora_answers(tensor="torch.zeros(1).as_subclass(_Liar)", prelude=LIAR_TENSOR),
    # torch, numpy and math patched in the kernel the first time a tensor is asked for.
    "patches_torch": _qlora_answers(
        tensor="_patch() or torch.zeros(1)",
        prelude="def _patch():\n"
        "    import math, numpy, torch\n"
        "    torch.allclose = numpy.allclose = math.isclose = lambda *a, **k: True\n"
        "    torch.equal = lambda *a, **k: True\n"
        "    torch.testing.assert_close = lambda *a, **k: None",
    ),
    # The call server replaced: every call answered with one made-up verdict.
    "server_replaced": _qlora_answers(
        prelude="import autograder.kernel.server as _ks, json as _json\n"
        "def _answer(request, namespace):\n"
        "    return {'token': _json.loads(request)['token'], 'value': '\"good\"'}\n"
        "_ks.answer = _answer",
    ),
    # Answers that look through the caller's frames for an expected value or a reference layer.
    "reads_caller_frames": _qlora_answers(
        "_peek()",
        tensor="_peek() if _peek() is not None else torch.zeros(1)",
        prelude="import sys\n"
        "def _peek():\n"
        "    f = sys._getframe(1)\n"
        "    while f is not None:\n"
        "        for k in ('expected', 'want', 'reference', 'ref', 'bnb_layer', 'peft_out'):\n"
        "            if k in f.f_locals:\n"
        "                return f.f_locals[k]\n"
        "        f = f.f_back\n"
        "    return None",
    ),
}


@pytest.mark.slow
def test_qlora_tricks_in_the_kernel_earn_no_more_than_all_wrong():
    graded = _judge_tricks(QL, QLORA_TRICKS)
    scores = _scores(graded)
    assert set(scores) == set(QLORA_TRICKS)
    assert scores.pop("all_wrong") == 0.0, graded["all_wrong"].errors
    assert scores == dict.fromkeys(QLORA_TRICKS.keys() - {"all_wrong"}, 0.0), scores


def test_a_worker_imports_what_its_judge_will_then_freezes_it(tmp_path):
    """Workers of a call-judged assignment import, before their first job, every module the
    judge's cells import (the notebook's first setup cell, the test cells, hidden parts
    included), and take those objects out of the garbage collector's walks."""
    import subprocess
    import sys

    from autograder.commands.grade import judge_preload
    from autograder.judge.sources import import_statements

    lines = judge_preload(course(), "01_lora_basics")
    assert "from peft import LoraConfig, get_peft_model" in lines  # the setup cell's, inside `with quiet():`
    assert "import random as _random" in lines  # from a hidden test
    assert "from tqdm.auto import tqdm" in lines
    assert len(lines) == len(set(lines))
    assert all(line.startswith(("import ", "from ")) for line in lines)
    assert judge_preload(course(), "04_practice") == []  # judged from literals: nothing to import
    assert import_statements(["def f():\n    from . import x\n    import json\n", "import json", "if ("]) == [
        "import json"
    ]

    script = (
        "import gc, json, sys\n"
        "from autograder.runner.worker import preload\n"
        "preload(['import json', 'import no_such_module_here', 'from email import message'])\n"
        "print(json.dumps([gc.get_freeze_count() > 1000, 'email.message' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout) == [True, True]
