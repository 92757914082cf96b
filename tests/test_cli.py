"""The command line frame: help everywhere, version, and one-line errors with a non-zero exit."""

import argparse
import subprocess
import sys

import pytest

from microgpt import __version__, cli


def command_paths(parser: argparse.ArgumentParser, prefix=()):
    """Every sub-command path of the parser, e.g. ('train', 'names')."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from command_paths(sub, (*prefix, name))


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    """Run ``python -m microgpt`` like a user would."""
    return subprocess.run([sys.executable, "-m", "microgpt", *args], capture_output=True, text=True, **kw)


def test_every_command_has_help(capsys):
    paths = list(command_paths(cli.build_parser()))
    assert ("train", "names") in paths
    for path in paths:
        with pytest.raises(SystemExit) as exit_:
            cli.main([*path, "--help"])
        assert exit_.value.code == 0
        assert "usage: microgpt " + " ".join(path) in capsys.readouterr().out


def test_version_and_module_entry_point():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"microgpt {__version__}"


def test_bad_flag_is_a_usage_error():
    result = run("train", "names", "--steps", "0")
    assert result.returncode == 2
    assert "--steps: must be >= 1, got 0" in result.stderr


def test_runtime_error_is_one_line(tmp_path):
    result = run("train", "names", "--data", str(tmp_path / "absent.txt"))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("microgpt: error: cannot read data file")


def test_bad_model_shape_is_one_line(data_dir):
    result = run("train", "names", "--engine", "scalar", "--n-embd", "15")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "microgpt: error: n_embd (15) must be divisible by n_head (4) so that every head gets the same width"
    )
