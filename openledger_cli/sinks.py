"""Escaping for every place a user's string is shown: the terminal, Markdown (pull requests, CI job summaries),
Mermaid labels and Markdown table cells. (HTML has its own, ``report_html.esc``.)

Anyone with a key writes the strings a report shows: run and model names, params, dataset paths, identity
names, review and feedback messages. Each sink gets them as text, never as structure:

* :func:`visible` turns every control and format character into a visible escape (``\\x1b``, ``\\u2028``):
  terminal escape sequences cannot move the cursor or clear the screen, a line separator cannot start a
  new line, a bidirectional override cannot reorder what is shown (CVE-2021-42574, "Trojan Source");
* :func:`md` also backslash-escapes what CommonMark and GitHub read as structure (emphasis, links and images,
  raw HTML, tables, math, autolinks), so a name stays a name;
* :func:`md_code` makes a code span that no backtick in the text can close;
* :func:`mermaid` makes a node label that cannot close its quotes or inject HTML;
* :func:`csv_text` makes a spreadsheet cell that cannot start a formula (``=``, ``+``, ``-``, ``@``: OWASP's
  CSV injection), on one line (the ``csv`` module quotes separators and quotes).

Text that the code itself writes (a verdict, a table's header) is :class:`Md` and is not escaped again.

>>> visible("ok\\x1b[2J")
'ok\\\\x1b[2J'
>>> md("**bold** <img src=x>")
'\\\\*\\\\*bold\\\\*\\\\* \\\\<img src=x\\\\>'
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["Md", "csv_text", "md", "md_code", "mermaid", "visible"]

# ASCII punctuation that CommonMark or GitHub read as structure anywhere in a line (a heading, list or quote
# marker needs the start of a line, which text shown here never has: it always follows what the code wrote).
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~&$!{}])")
_AUTOLINK = re.compile(r"(?i)(https?|ftp|file|mailto|www)([:.])")


class Md(str):
    """Markdown made by the renderer from escaped parts: shown as it is."""

    __slots__ = ()


def _shown(char: str) -> str:
    # printable, or the zero-width joiner that emoji sequences are made with
    if char.isprintable() or char == "\u200d":
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(value: Any) -> str:
    """``value`` as one line of text with every character Python does not call printable (controls, line and
    paragraph separators, format characters such as bidirectional overrides, unusual spaces, unassigned code
    points) shown as an escape."""
    text = "" if value is None else str(value)
    return text if text.isprintable() else "".join(map(_shown, text))


def md(value: Any) -> Md:
    """``value`` as Markdown text: one line, every structure character escaped, autolinks broken."""
    if isinstance(value, Md):
        return value
    text = _MARKDOWN.sub(r"\\\1", visible(value))
    return Md(_AUTOLINK.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", text))


def md_code(value: Any) -> Md:
    """``value`` in a code span (monospace, nothing inside interpreted), fenced by more backticks than any run
    of them in the text."""
    text = visible(value)
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") or not text.strip() else text
    return Md(f"{fence}{padded}{fence}")


_MERMAID = {'"': "#quot;", "#": "#35;", "<": "#lt;", ">": "#gt;", "`": "#96;", "&": "#amp;", "|": "#124;",
            "[": "#91;", "]": "#93;", "{": "#123;", "}": "#125;", "(": "#40;", ")": "#41;"}


def mermaid(value: Any) -> str:
    """``value`` for a quoted Mermaid node label: quotes, brackets, HTML and Mermaid's own ``#…;`` codes as
    entity codes, so the label cannot end its node, inject markup or break the Markdown fence around it."""
    return "".join(_MERMAID.get(char, char) for char in visible(value))


_FORMULA = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def csv_text(value: Any) -> str:
    """``value`` for a CSV cell a spreadsheet may open: one line, and a leading ``'`` where a spreadsheet would
    read a formula (a name like ``=HYPERLINK(…)``); numbers the code writes are not passed through here."""
    text = visible(value)
    return f"'{text}" if text.startswith(_FORMULA) else text
