"""Multiple-choice verifier (LogiQA, GPQA, MMLU styles): which option did the answer choose, and is it
the reference's? Pure and fast (regular expressions only), so it needs no time limit or worker.

Options are parsed from the prompt (:func:`parse_options`): the last run of lines ``A. text`` /
``A) text`` / ``(A) text`` / ``A: text`` / ``[A] text`` (also ``A．``/``A、``, lowercase ``a)`` runs,
list bullets before the label) whose letters go A, B, C, … in order (blank lines allowed between),
else inline ``(A) x (B) y …`` markers; letters A–J, at least two options.

The reference is a letter (``C``, ``(C)``, ``c.``, ``\\boxed{C}``) or an option's text. It is unusable
(``error``) when blank, when a letter names no parsed option, when text matches no option, or when it
is text and the prompt has no parseable options.

The chosen option of an answer (the text after ``</think>``), :func:`chosen_option`. The FINAL STATED
CHOICE wins, by the first rule that finds one:

1. ``boxed``: the last ``\\boxed{}``/``\\fbox{}`` (LaTeX ``\\text{}``/``\\textbf{}``/``\\mathrm{}``,
   ``$``, ``**`` and brackets unwrapped): a letter (any case), a labelled option (``C. Paris``: the
   label counts), or an option's text. A box that names none of the options is a ``wrong`` answer.
2. ``statement``: the last answer statement whose phrase names an option: "the (final/correct/best)
   answer is …", "Answer: …", "answer would/should/must be …", "option/choice C is correct", "I/we
   choose/pick/select …", "答案是/为/：…". Statements whose phrase names nothing ("the answer is not
   A", "the answer is a number") are passed over, so an earlier one may still count.
3. ``last_line``: the answer's last non-blank line, when it is, as a whole, a letter or a labelled
   option or an option's text (``**C**``, ``(C) Paris``, ``Paris``).

A letter counts only as a whole token: ``C`` in ``Carbon`` or ``C-3PO``-like words is no choice;
outside a box a lowercase letter counts only when punctuation or the end follows (so "the answer is
a number" names nothing). Without parsed options, letters A to max(D, reference letter) count. Naming
several different options in the deciding box or statement (``\\boxed{A, C}``, "the answer is B or D")
is a hedge, judged ``wrong``. Option text elsewhere in the answer (quoted in the reasoning, or in a
sentence that states no choice) is never a choice.

Status mapping: chosen letter = reference letter -> ``correct``; another option, a hedge, or a box
naming no option -> ``wrong``; no choice found (or no answer text) -> ``no_answer``; unusable
reference -> ``error``.
Not covered: answers naming an option by number ("the second option"), multi-answer questions, option
texts spanning several lines (only each option's first line is its text).
"""

from __future__ import annotations

import re
import string

from factory.verifiers.answers import last_boxed
from factory.verifiers.verdict import VerdictResult

NAME = "choice"
VERSION = "1"
LETTERS = "ABCDEFGHIJ"

_OPTION_LINE = re.compile(r"^\s*(?:[-*•]\s*)?[(\[]?([A-Ja-j])(?:\)|\]|[.:：．、])\s*(\S.*?)\s*$")
_INLINE_MARKER = re.compile(r"\(([A-J])\)\s*")
_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|fbox|boxed)\s*\{([^{}]*)\}")
_MARKUP = re.compile(r"[*_`$]+|\\[(\[\])]")
_LETTER = re.compile(r"^[(\[{<]?\s*([A-Ja-j])\s*[)\]}>]?(?![A-Za-z0-9'’])")
_HEDGE = re.compile(r"^\s*(?:,|/|&|or\b|and\b)\s*(?:option\s+|choice\s+)?[(\[]?([A-Ja-j])[)\]]?"
                    r"(?=\s*(?:$|[.,;:!?/&)\]]|or\b|and\b))", re.IGNORECASE)
_LEAD_WORDS = re.compile(r"^(?:(?:therefore|thus|so|hence|clearly|indeed|option|choice|answer|letter)[\s,:]+)+",
                         re.IGNORECASE)
_GAP = r"[\s*_`$:]*"  # markdown, LaTeX dollars and a colon between a statement's words and its phrase
_STATEMENTS = re.compile(
    r"\b(?:(?:final|correct|right|best)\s+)?(?:answer|option|choice)\s*(?:\([^)\n]{0,20}\)\s*)?"
    rf"(?:is|:|=|would\s+be|should\s+be|must\s+be|will\s+be){_GAP}(?=([^\n]{{1,200}}))"
    rf"|\b(?:option|choice){_GAP}\(?([A-Ja-j](?![A-Za-z0-9]))\)?{_GAP}is\s+(?:the\s+)?(?:correct|right|best|answer)"
    rf"|\b(?:i|we)\s+(?:choose|pick|select|go\s+with){_GAP}(?=([^\n]{{1,200}}))"
    rf"|答案\s*(?:是|为|:|：){_GAP}(?=([^\n]{{1,200}}))",
    re.IGNORECASE,
)


def parse_options(prompt: str | None) -> dict[str, str]:
    """``{letter: option text}`` from a prompt, in letter order (empty when none; module doc)."""
    if not prompt:
        return {}
    runs: list[dict[str, str]] = []
    run: dict[str, str] = {}
    for line in prompt.splitlines():
        match = _OPTION_LINE.match(line)
        if match:
            letter, text = match.group(1).upper(), match.group(2)
            if letter == "A":
                run = {"A": text}
                runs.append(run)
                continue
            if run and len(run) < len(LETTERS) and letter == LETTERS[len(run)]:
                run[letter] = text
                continue
        if line.strip():
            run = {}
    found = [r for r in runs if len(r) >= 2]
    return found[-1] if found else _inline_options(prompt)


def _inline_options(prompt: str) -> dict[str, str]:
    markers = list(_INLINE_MARKER.finditer(prompt))
    best: dict[str, str] = {}
    for start, marker in enumerate(markers):
        if marker.group(1) != "A":
            continue
        options: dict[str, str] = {}
        for index in range(start, len(markers)):
            current = markers[index]
            if len(options) == len(LETTERS) or current.group(1) != LETTERS[len(options)]:
                break
            end = markers[index + 1].start() if index + 1 < len(markers) else len(prompt)
            text = prompt[current.end():end].split("\n", 1)[0].strip().rstrip(",;").strip()
            options[current.group(1)] = text
            if "\n" in prompt[current.end():end]:
                break
        if len(options) >= 2:
            best = options
    return best


def _clean(text: str) -> str:
    """``text`` with LaTeX text/box wrappers, markdown and ``$`` removed (case kept)."""
    previous = None
    while previous != text:
        previous, text = text, _WRAPPERS.sub(r"\1", text)
    return " ".join(_MARKUP.sub("", text).split())


def _norm(text: str) -> str:
    """Comparable option text: cleaned, lowercase, without surrounding quotes and end punctuation."""
    return _clean(text).lower().strip(" \"'“”‘’").rstrip(".,;:!。").strip(" \"'“”‘’")


def _letters_in(phrase: str, allowed: str, any_case: bool, whole: bool,
                options: dict[str, str]) -> list[str]:
    """The options a phrase names: ``[letter]``, several letters for a hedge, ``[]`` for none.
    ``whole``: the phrase must be only the choice (a labelled option counts); else it may go on."""
    text = _LEAD_WORDS.sub("", _clean(phrase))
    match = _LETTER.match(text)
    if match and match.group(1).upper() in allowed:
        letter, rest = match.group(1), text[match.end():]
        lowercase_ok = any_case or not rest.strip() or rest.lstrip()[0] in string.punctuation
        if letter.isupper() or lowercase_ok:
            chosen = [letter.upper()]
            while hedge := _HEDGE.match(rest):
                if hedge.group(1).upper() in allowed:
                    chosen.append(hedge.group(1).upper())
                rest = rest[hedge.end():]
            labelled = match.group(0).endswith((")", "]", "}", ">")) or rest.lstrip()[:1] in (".", ":", ")", "]")
            if not whole or labelled or not rest.strip(" ."):
                return sorted(set(chosen))
    target = _norm(text)
    matches = [letter for letter, option in options.items() if (norm := _norm(option)) and (
        target == norm or not whole and target.startswith(norm) and target[len(norm):len(norm) + 1] in " ,;(")]
    return [max(matches, key=lambda letter: len(options[letter]))] if matches else []


def chosen_option(answer: str | None, prompt: str | None = None, *,
                  allowed: str | None = None) -> tuple[list[str], str]:
    """``(letters, rule)``: the options the answer's final choice names (module doc) and the rule that
    found it (``boxed``/``statement``/``last_line``; ``none`` with ``[]``). A box naming no option is
    ``([], "boxed")``."""
    options = parse_options(prompt)
    allowed = allowed or "".join(options) or LETTERS[:4]
    if not answer or not answer.strip():
        return [], "none"
    boxed = last_boxed(answer)
    if boxed is not None:
        return _letters_in(boxed, allowed, any_case=True, whole=True, options=options), "boxed"
    for match in reversed(list(_STATEMENTS.finditer(answer))):
        phrase = next(group for group in match.groups() if group is not None)
        letters = _letters_in(phrase, allowed, any_case=False, whole=False, options=options)
        if letters:
            return letters, "statement"
    last_line = answer.strip().splitlines()[-1]
    letters = _letters_in(last_line, allowed, any_case=False, whole=True, options=options)
    return (letters, "last_line") if letters else ([], "none")


def reference_letter(reference: str | None, options: dict[str, str]) -> tuple[str | None, str]:
    """``(letter, "")`` for a usable reference, else ``(None, why not)``."""
    if reference is None or not reference.strip():
        return None, "no reference"
    text = last_boxed(reference) or reference.strip()
    match = re.fullmatch(r"[(\[]?\s*([A-Ja-j])\s*[)\]]?[.:]?", _clean(text))
    if match:
        letter = match.group(1).upper()
        if options and letter not in options:
            return None, f"reference {letter} is not an option ({', '.join(options)})"
        return letter, ""
    if not options:
        return None, f"reference {text[:80]!r} is option text, but the prompt has no parseable options"
    matches = [letter for letter, option in options.items() if _norm(option) == _norm(text)]
    if len(matches) != 1:
        return None, f"reference {text[:80]!r} matches {len(matches)} options"
    return matches[0], ""


def applies(prompt: str | None, reference: str | None) -> bool:
    """Whether a row is a multiple-choice question this verifier judges: its prompt has options, or its
    reference is a bare letter (the routing rule for ``logic`` rows; other logic rows are math-like)."""
    return bool(parse_options(prompt)) or reference_letter(reference, {})[0] is not None


def _result(status: str, detail: str) -> VerdictResult:
    return VerdictResult(status=status, verifier=NAME, version=VERSION, detail=detail[:500])


def judge_choice(answer: str | None, reference: str | None, prompt: str | None) -> VerdictResult:
    """Judge one multiple-choice answer text against the reference, options from ``prompt`` (module doc)."""
    options = parse_options(prompt)
    gold, why = reference_letter(reference, options)
    if gold is None:
        return _result("error", why)
    allowed = "".join(options) or LETTERS[:max(4, LETTERS.index(gold) + 1)]
    letters, rule = chosen_option(answer, prompt, allowed=allowed)
    if rule == "none":
        return _result("no_answer", "no stated choice")
    if not letters:
        return _result("wrong", f"the boxed answer names no option; reference={gold}")
    if len(letters) > 1:
        return _result("wrong", f"hedged between {', '.join(letters)} ({rule}); reference={gold}")
    status = "correct" if letters[0] == gold else "wrong"
    return _result(status, f"choice={letters[0]} ({rule}) reference={gold}")
