"""The examples in the package's docstrings run (against the installed package)."""
import doctest

import pytest

import hatchery_sandbox
from hatchery_sandbox import aio, client, limits, types, zygote


@pytest.mark.parametrize("module", [hatchery_sandbox, aio, client, limits, types, zygote])
def test_docstring_examples(module):
    failed, _ = doctest.testmod(module, raise_on_error=False, verbose=False)
    assert failed == 0
