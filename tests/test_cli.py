"""One CLI module: every `aidetect` subcommand is declared in aidetect/cli.py, each runs a function of
its own module, and `aidetect --help` stays light (no torch)."""

import argparse
import importlib
import re
import subprocess
import sys
from pathlib import Path

from aidetect.cli import build_parser, main

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "aidetect"
COMMANDS = {"predict", "views", "calibrate", "audit", "web", "slim", "export", "ensemble", "aggregate", "flux", "data"}


def leaves(parser: argparse.ArgumentParser, prefix=()):
    """(command words, parser) for every runnable subcommand."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
    for action in subs:
        for name, p in action.choices.items():
            yield from leaves(p, prefix + (name,))


def test_every_subcommand_is_declared_in_cli_and_runs_a_function_of_its_own_module():
    parser = build_parser()
    top = {a for a in parser._actions if isinstance(a, argparse._SubParsersAction)}.pop().choices
    assert COMMANDS <= set(top)
    found = list(leaves(parser))
    assert {" ".join(w) for w, _ in found} >= {"flux generate", "flux collect-real", "flux build", "data get", "data list"}
    for words, p in found:
        target = p.get_default("func").target
        module, name = target.split(":")
        assert module != "aidetect.cli", words
        assert callable(getattr(importlib.import_module(module), name)), target


def test_no_other_module_declares_subcommands_or_imports_by_string():
    for path in PACKAGE.rglob("*.py"):
        if path.name == "cli.py" and path.parent == PACKAGE:
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\.add_parser\(|add_subparsers\(", text), f"{path}: subcommands belong in aidetect/cli.py"
        assert "__import__(" not in text, path
    assert not (PACKAGE / "tools.py").exists()


def test_help_imports_no_torch():
    code = "import sys; from aidetect.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def test_help_lists_every_subcommand(capsys):
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert all(c in out for c in COMMANDS)
