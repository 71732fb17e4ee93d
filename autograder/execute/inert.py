"""The autograded notebook made inert for the instructor's browser.

nbgrader's formgrader (and ``autograder feedback``) render the autograded notebook as HTML, as
it is: a ``<script>`` in a student's markdown cell, an HTML or JavaScript display output from
their code, or a raw HTML cell would run in the instructor's page, which is same-origin with the
grader service. After execution and judging, :class:`InertContent` keeps

- outputs of the types that render as text or as an image (``text/plain``, PNG, JPEG, GIF), with no
  output metadata (the template writes it into attributes); the rest is named, not shown;
- markdown and raw cells as written only where they are the instructor's locked text, as the
  gradebook registered it; any other is shown as text: its HTML escaped, script links cut,
  attachments dropped.
"""

from __future__ import annotations

import html
import re

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import List, Unicode

from autograder import gradebook

_SCRIPT_URL = re.compile(r"(?i)\b(java|vb|live)script\s*:|\bdata\s*:\s*text/html")


def inert_text(text: str) -> str:
    """Markdown shown as the text it is: HTML escaped (``<script>`` reads as itself), script URLs cut."""
    return _SCRIPT_URL.sub("blocked:", html.escape(text, quote=False))


class InertContent(NbGraderPreprocessor):
    """Student-made HTML and JavaScript in the autograded notebook reduced to text (see the module)."""

    safe_mimetypes = List(
        Unicode(), ["text/plain", "image/png", "image/jpeg", "image/gif"], help="Output types kept as they are."
    ).tag(config=True)

    def preprocess(self, nb, resources):
        info = resources.get("nbgrader", {})
        trusted: set[str] = set()
        if info.get("db_url"):
            trusted = gradebook.locked_text_sources(info["db_url"], info["assignment"], info["notebook"])
        for cell in nb.cells:
            if cell.cell_type == "code":
                for output in cell.get("outputs", []):
                    self._inert_output(output)
            elif "".join(cell.source) not in trusted:
                cell.source = inert_text("".join(cell.source))
                cell.cell_type = "markdown"  # a raw cell would be pasted into the page as it is
                cell.pop("attachments", None)
                cell.metadata.pop("format", None)
                cell.metadata.pop("raw_mimetype", None)
        return nb, resources

    def _inert_output(self, output) -> None:
        if output.get("output_type") not in ("display_data", "execute_result"):
            return  # streams and errors are rendered as escaped text
        data = output.get("data", {})
        dropped = sorted(k for k in data if k not in self.safe_mimetypes)
        kept = {k: v for k, v in data.items() if k in self.safe_mimetypes and isinstance(v, str | list)}
        if dropped and "text/plain" not in kept:
            kept["text/plain"] = f"[not shown to the grader: {', '.join(dropped)[:200]}]"
        output["data"] = kept
        output["metadata"] = {}
