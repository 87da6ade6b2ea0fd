"""Every command and option of ``sakdn`` says what it does, and the help names the commands
that exist."""

from __future__ import annotations

import argparse

from sakdn.cli import COMMANDS, _parser


def _parsers(parser: argparse.ArgumentParser, path: str = "sakdn"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, parser in _parsers(_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{path} {a.dest}" for a in action._choices_actions if not a.help]
                continue
            if not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_the_help_names_the_commands_that_exist() -> None:
    top = _parser()
    subs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == set(COMMANDS)
    data = subs.choices["data"]
    data_subs = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction))
    help_text = next(a.help for a in subs._choices_actions if a.dest == "data")
    assert set(w.strip(",") for w in help_text.split(":")[1].split()) == set(data_subs.choices)
