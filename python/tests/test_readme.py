"""Every ```python example of python/README.md and of the main README runs, against a
test daemon."""
import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = [example for readme in (ROOT / "python" / "README.md", ROOT / "README.md")
            for example in re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)]


def test_the_readme_has_examples():
    assert len(EXAMPLES) >= 7


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example(index, daemon, monkeypatch):
    monkeypatch.setenv("HATCHERY_SOCKET", daemon.socket)
    exec(compile(EXAMPLES[index], f"README example {index + 1}", "exec"), {})
