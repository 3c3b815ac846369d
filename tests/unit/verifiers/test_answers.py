"""Answer extraction and code extraction: tables of (input, expected)."""

import pytest

from factory.verifiers.answers import extract_code, extract_final_answer


@pytest.mark.parametrize("text, expected", [
    ("so the answer is \\boxed{42}.", "42"),
    ("first \\boxed{1} then \\boxed{2}", "2"),
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),
    ("\\boxed{ {a}, {b} } trailing", "{a}, {b}"),
    ("\\fbox{7}", "7"),
    ("unclosed \\boxed{12", None),
    ("empty \\boxed{} then nothing", None),
    ("work...\n#### 1,234", "1234"),
    ("#### 5\n#### 6", "6"),
    ("\\boxed{3} and #### 4", "3"),
    ("the answer is 5", None),
    ("", None),
    (None, None),
])
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


@pytest.mark.parametrize("answer, expected", [
    ("```python\ndef f():\n    return 1\n```", "def f():\n    return 1\n"),
    ("```python\nx = 1\n```\ntext\n```python\nx = 2\n```", "x = 2\n"),
    ("```\ny = 3\n```", "y = 3\n"),
    ("```bash\nls\n```\nplain = 1", "```bash\nls\n```\nplain = 1"),
    ("def g():\n    return 2", "def g():\n    return 2"),
    ("```python\nz = 4\n", "z = 4\n"),
    ("   \n", None),
    (None, None),
])
def test_extract_code(answer, expected):
    assert extract_code(answer) == expected
