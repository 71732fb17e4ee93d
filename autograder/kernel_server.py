"""The call server: the only grader code that runs in the student's kernel during judging.

The judge sends ``serve(request)``: call the student's ``name`` with these arguments. The server
answers with plain data (:mod:`autograder.wire`) in one display message of its own MIME type,
tagged with the request's token. It decides nothing: a student can patch it, and then it answers
whatever they like, which is only more data for the judge to check.
"""

from __future__ import annotations

import json

from . import wire

MIME = "application/vnd.autograder.answer+json"


def serve(request: str) -> None:
    """Answer one call: ``{"token", "name", "args", "kwargs"}`` in, ``{"token", "value"|"raised"}`` out."""
    from IPython import get_ipython
    from IPython.display import publish_display_data

    req = json.loads(request)
    answer: dict = {"token": req["token"]}
    try:
        namespace = get_ipython().user_ns
        if req["name"] not in namespace:
            raise NameError(f"name {req['name']!r} is not defined", name=req["name"])
        args = wire.loads(req["args"])
        kwargs = wire.loads(req["kwargs"])
        answer["value"] = wire.dumps(namespace[req["name"]](*args, **kwargs))
    except BaseException as exc:  # the student's code failed: say how, as data
        answer["raised"] = type(exc).__name__
        answer["message"] = str(exc)[:500]
    publish_display_data({MIME: answer})
