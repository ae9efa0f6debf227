"""Test-wide setup: every program any test compiles through the Python API is
run through the IR verifier (chainrule.compiler.verify) before it is used."""
from __future__ import annotations

import functools

import pytest

from chainrule.compiler.verify import verify
from chainrule.compiler import pipeline

VERIFIED: list[int] = [0]  # how many programs the verifier has passed (test_ir checks it runs)


@pytest.fixture(autouse=True, scope="session")
def _verify_every_program():
    build = pipeline.build_program

    @functools.wraps(build)
    def build_and_verify(*args, **kwargs):
        program = build(*args, **kwargs)
        verify(program)
        VERIFIED[0] += 1
        return program

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "build_program", build_and_verify)
        yield
