"""examples/README.md gives every example the very command its docstring documents (and the
real-server tests run)."""

from __future__ import annotations

import pytest
from example_support import ROOT, documented_commands

EXAMPLES = [
    "examples/flask_app.py",
    "examples/django_app/__init__.py",
    "examples/fastapi_app.py",
    "examples/starlette_app.py",
    "examples/wsgi_app.py",
    "examples/asgi_app.py",
    "examples/fastapi_websocket.py",
    "examples/starlette_mounted.py",
]


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_readme_gives_the_one_command_that_runs_each_example(example: str) -> None:
    readme = (ROOT / "examples/README.md").read_text()
    commands = documented_commands(example)
    assert commands, f"{example} documents no command"
    for command in commands:
        assert command in readme
