"""Whether an edit is an answer: the rule that cleans an edit model's reply, and rejects it.

An edit must be the revised response to the conversation, nothing else. Models (weak ones
often, strong ones now and then) wrap it instead: a preamble ("Here's the revised
response:"), a closing note ("I made the following changes: ..."), or no answer at all: a
reply to the editor ("I'm ready to assist with your editing needs. Please provide the
text."), or the feedback restated ("The response is mostly helpful, ..."). A judge can reward
such a reply over an on-topic draft, so the rule runs before the edit is judged.

The rule (:func:`clean_edit`), in order:

1. **Preamble.** Leading lines that announce the answer are cut: a line that is only a label
   ("Revised response:", "**Edited version**"), a first line that says "here is/here's the
   revised/rewritten/improved... " or "here is my response/answer" and ends in a colon
   ("Here are three tips:" is an answer's own line and stays), or one that opens with
   "sure/certainly/of course/okay" and ends in a colon. Only when text follows it.
2. **Trailing commentary.** From the last separator line (``---``) or the first paragraph that
   talks about the edit ("Note: ...", "I have revised ...", "This revised version ...",
   "Changes made: ..."), or from a line that copies the edit prompt's last one ("My request:
   ..."), the rest is cut, when an answer precedes it.
3. **Non-answers.** What is left is rejected, with a reason, when it is empty; when it
   addresses the editor (asks for the text, offers to help, says it is ready; a phrase the
   conversation or the draft being edited contains does not count: a letter's "I'd be happy
   to assist you" kept from its draft is the answer's own); or when it
   restates feedback (states a helpfulness verdict, "The response is ... helpful", or repeats
   most of the feedback's words in order: 60% of the feedback's word 4-grams).

A rejected edit is recorded as a failed edit (``failure: not_an_answer``) and never selected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["EDIT_RULE_VERSION", "CleanedEdit", "clean_edit"]

EDIT_RULE_VERSION = 3
"""Raised whenever the rule below changes what it cuts or rejects: cached edits are stored as
the rule left them, and their cache key carries this number."""

_LABEL_WORDS = (
    r"(?:revised|rewritten|edited|updated|improved|corrected|final|new)"
    r"(?:\s+(?:response|version|answer|text|draft|reply))?"
)
# A line that is only a label: "Revised response:", "**Edited version:**", "## Updated answer".
_LABEL_LINE = re.compile(
    rf"^\s*(?:#+\s*)?[*_]*\s*{_LABEL_WORDS}\s*[*_]*\s*:?\s*[*_]*\s*$", re.IGNORECASE
)
_OPENER = r"(?:(?:sure|certainly|of\s+course|okay|ok|absolutely|great)\b[!,.]?\s*)"
# "Here's the revised response:", "Sure! Here is an improved version of the email:", "Here is
# my answer:": up to a colon within the first line. "Here are three tips:" is an answer's own
# first line (no revision word, no "response"), and stays.
_HERE_IS = re.compile(
    rf"^\s*{_OPENER}?(?:here(?:'s|\u2019s|\s+is|\s+are)|below\s+is)\s+(?:the\s+|an?\s+|my\s+)?"
    r"(?:(?:revised|rewritten|edited|updated|improved|corrected|new|better|final)\b[^\n:]{0,120}"
    r"|(?:response|answer|reply)\b[^\n:]{0,80}):[ \t]*\**[ \t]*",
    re.IGNORECASE,
)
_OPENER_ONLY = re.compile(rf"^\s*{_OPENER}[^\n]{{0,80}}:[ \t]*(?:\n|$)", re.IGNORECASE)

_SEPARATOR = re.compile(r"^\s*(?:-{3,}|\*{3,}|_{3,})\s*$", re.MULTILINE)
_COMMENTARY = re.compile(
    r"^\s*[*_(]*\s*(?:"
    r"notes?\s*:|changes?(?:\s+made)?\s*:|explanation\s*:|"
    r"i\s+(?:have|'ve)\s+(?:revised|rewritten|edited|updated|made|changed|added|removed|addressed)|"
    r"i\s+(?:revised|rewrote|edited|updated|made|changed|added|removed|addressed)\b|"
    r"(?:this|the)\s+(?:revised|rewritten|edited|updated|improved)\s+"
    r"(?:response|version|answer|text)\b|"
    r"in\s+this\s+(?:revision|version)\b|"
    r"the\s+(?:changes|edits|revisions)\s+(?:i\s+made|made|are)\b"
    r")",
    re.IGNORECASE,
)

_TO_EDITOR = re.compile(
    r"(?:"
    r"\b(?:provide|share|send|give|paste|submit)\s+(?:me\s+)?(?:with\s+)?(?:the|your)\s+"
    r"(?:text|response|draft|content|original\s+\w+)\b"
    r"|\bi(?:'m|\s+am)\s+(?:ready|here|happy|glad)\s+to\s+(?:assist|help)\b"
    r"|\bi(?:'d|\s+would)\s+be\s+(?:happy|glad)\s+to\s+(?:assist|help)\b"
    r"|\bwhat\s+would\s+you\s+like\s+me\s+to\s+(?:edit|rewrite|revise|change|improve)\b"
    r"|\byour\s+editing\s+needs\b"
    # The edit instruction echoed back ("Use this feedback to write a better response to my
    # request..."), as the embedded model does.
    r"|\buse\s+this\s+feedback\b|\bmy\s+request\s*:"
    r"|\bfollow\s+every\s+instruction\s+in\s+my\s+request\b"
    r")",
    re.IGNORECASE,
)
# A critique's verdict sentence ("The response is mostly helpful", "The response is X
# helpful"): feedback, not an answer.
_VERDICT = re.compile(r"\bthe\s+response\s+is\s+\**\s*\w+\s*\**\s+helpful\b", re.IGNORECASE)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class CleanedEdit:
    """An edit model's reply after the rule: ``text`` (preamble and commentary cut) and, when
    it is not an answer, ``rejected`` (why)."""

    text: str
    rejected: str | None = None
    cut: tuple[str, ...] = ()
    """What was cut: ``preamble``, ``commentary``."""


def _cut_preamble(text: str) -> tuple[str, bool]:
    lines = text.lstrip().split("\n")
    if lines and _LABEL_LINE.match(lines[0]) and "\n".join(lines[1:]).strip():
        return "\n".join(lines[1:]).lstrip(), True
    m = _HERE_IS.match(text) or _OPENER_ONLY.match(text)
    if m and text[m.end() :].strip():
        rest = text[m.end() :].lstrip()
        # "Here's the revised response:\n\n**Revised response:**\n..." - one label may follow.
        first, _, tail = rest.partition("\n")
        if _LABEL_LINE.match(first) and tail.strip():
            rest = tail.lstrip()
        return rest, True
    return text, False


# The edit prompt's last line ("My request: <the request>") copied after an answer: the
# embedded model ends a real answer so now and then. Cut from that line when text precedes it.
_ECHOED_REQUEST = re.compile(r"^[ \t]*\**[ \t]*my\s+request\s*:", re.IGNORECASE | re.MULTILINE)


def _cut_commentary(text: str) -> tuple[str, bool]:
    echo = _ECHOED_REQUEST.search(text)
    if echo and text[: echo.start()].strip():
        text, _ = _cut_commentary(text[: echo.start()].rstrip())
        return text, True
    paragraphs = re.split(r"\n\s*\n", text)
    for i, para in enumerate(paragraphs[1:], start=1):
        if _COMMENTARY.match(para):
            kept = "\n\n".join(paragraphs[:i]).rstrip()
            if kept:
                return _drop_separator(kept), True
    seps = list(_SEPARATOR.finditer(text))
    if seps:
        last = seps[-1]
        head, tail = text[: last.start()].rstrip(), text[last.end() :].strip()
        if head and tail and _COMMENTARY.match(tail):
            return head, True
    return text, False


def _drop_separator(text: str) -> str:
    lines = text.rstrip().split("\n")
    if len(lines) > 1 and _SEPARATOR.match(lines[-1]):
        return "\n".join(lines[:-1]).rstrip()
    return text


def _grams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def restates(text: str, feedback: str, *, share: float = 0.6) -> bool:
    """Whether ``text`` repeats ``share`` of ``feedback``'s word 4-grams (feedback of fewer
    than 5 words is never restated)."""
    fb = _grams(feedback)
    if len(fb) < 2:
        return False
    return len(fb & _grams(text)) / len(fb) >= share


def clean_edit(text: str, *, feedback: str = "", prompt: str = "", draft: str = "") -> CleanedEdit:
    """Apply the rule (see the module docstring) to an edit model's reply.

    ``prompt``: the conversation's text; a phrase it asks for itself (a note that asks "could
    you share the draft") does not count as addressing the editor. ``draft``: the text being
    edited; a phrase kept from it does not count either.

    Example:
        >>> clean_edit("Here's the revised response:\\n\\nRed, yellow and blue.").text
        'Red, yellow and blue.'
        >>> clean_edit("I'm ready to help. Please provide the text.").rejected
        'addresses the editor'
    """
    cut: list[str] = []
    body, did = _cut_preamble(text or "")
    if did:
        cut.append("preamble")
    body, did = _cut_commentary(body)
    if did:
        cut.append("commentary")
    body = body.strip()
    reason: str | None = None
    own = f"{prompt}\n{draft}".lower()  # phrases the conversation or the draft holds
    if not body:
        reason = "empty"
    elif any(m.group(0).lower() not in own for m in _TO_EDITOR.finditer(body)):
        reason = "addresses the editor"
    elif _VERDICT.search(body):
        reason = "states a verdict, as feedback does"
    elif feedback and restates(body, feedback):
        reason = "restates the feedback"
    return CleanedEdit(body, reason, tuple(cut))
