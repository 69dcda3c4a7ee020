"""Every ```python example of python/README.md runs, against a test daemon."""
import os
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_examples():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example(index, daemon, monkeypatch):
    monkeypatch.setenv("HATCHERY_SOCKET", daemon.socket)
    exec(compile(EXAMPLES[index], f"python/README.md example {index + 1}", "exec"), {})
