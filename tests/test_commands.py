"""Plugin subcommands (``register_commands``): they appear in ``diffsde --help`` and run; a
failing plugin leaves the CLI working and is reported; built-in commands cannot be replaced;
``diffsde plugins`` lists plugin commands and pages."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import diffsde
from diffsde._cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


class Greeter:
    """Adds `hello NAME [--shout]`, whose exit status is the name's length (to see it pass)."""

    @diffsde.hookimpl
    def register_commands(self, subparsers):
        hello = subparsers.add_parser("hello", help="greet someone (a plugin command)")
        hello.add_argument("name")
        hello.add_argument("--shout", action="store_true")
        hello.set_defaults(handler=self.hello)

    @staticmethod
    def hello(args):
        text = f"hello {args.name}"
        print(text.upper() if args.shout else text)
        return len(args.name)


class Broken:
    """Adds `half`, then raises: `half` must not stay behind."""

    @diffsde.hookimpl
    def register_commands(self, subparsers):
        subparsers.add_parser("half", help="never usable")
        raise RuntimeError("no database")


class Usurper:
    """Tries to replace the built-in `run` (after adding `mine`)."""

    @diffsde.hookimpl
    def register_commands(self, subparsers):
        mine = subparsers.add_parser("mine", help="mine")
        mine.set_defaults(handler=lambda args: 0)
        fake = subparsers.add_parser("run", help="not the real run")
        fake.set_defaults(handler=lambda args: 99)


class NoHandler:
    @diffsde.hookimpl
    def register_commands(self, subparsers):
        subparsers.add_parser("orphan", help="forgot set_defaults(handler=…)")


class Pages:
    @diffsde.hookimpl
    def register_pages(self, register):
        register("Greetings", lambda: None, icon="👋")


@pytest.fixture
def plugins():
    names = []

    def add(obj, name):
        diffsde.register_plugin(obj, name)
        names.append(name)

    yield add
    for name in names:
        diffsde.unregister_plugin(name)


def test_a_plugin_command_is_listed_and_runs(plugins, capsys):
    """`hello` shows in `diffsde --help`, parses its own arguments and returns its handler's
    status. Mutation: not calling add_plugin_commands in `parser()` fails it."""
    plugins(Greeter(), "greeter")
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "hello" in out and "greet someone (a plugin command)" in out
    assert main(["hello", "ada", "--shout"]) == 3
    assert capsys.readouterr().out == "HELLO ADA\n"


def test_a_failing_plugin_leaves_the_cli_working_and_is_reported(plugins, capsys):
    """Broken's half-made `half` is dropped, Greeter's `hello` still runs with no warning, the
    error names the plugin in `diffsde plugins` and in --help, and an unknown command names the
    failed plugin on stderr. Mutation: not passing the command errors to `diffsde plugins`
    (listing only the registry's) fails it."""
    plugins(Broken(), "broken")
    plugins(Greeter(), "greeter")
    assert main(["hello", "bo"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "hello bo\n" and captured.err == ""
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "plugin 'broken'" in out and "RuntimeError: no database" in out
    assert "half" not in out.split("commands (diffsde COMMAND):")[1].split("plugin errors")[0]
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "failed to load or to add their commands: broken" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["half"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "no command 'half'; plugin(s) broken failed to add their commands" in err


def test_a_plugin_cannot_replace_a_built_in_command(plugins, capsys, tmp_path):
    """Usurper's `run` is refused (argparse's conflict), with the rest of that plugin; `run` is
    still diffsde's. Mutation: adding plugin commands before the built-ins fails it (the
    plugin's `run` comes first and the built-in one conflicts)."""
    plugins(Usurper(), "usurper")
    assert main(["run", "--resume", str(tmp_path / "none")]) == 1  # the real run: no such run
    assert "diffsde run:" in capsys.readouterr().err
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["commands"] == []
    (error,) = [e for e in listing["errors"] if "usurper" in e]
    assert "conflicting subparser: run" in error


def test_plugins_lists_commands_and_pages(plugins, capsys):
    """`diffsde plugins` (text and --json) lists plugin commands with their help and the pages
    of `register_pages`. Mutation: dropping the pages rows fails it."""
    plugins(Greeter(), "greeter")
    plugins(Pages(), "pages")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    commands = out.split("commands (diffsde COMMAND):\n")[1].split("dashboard pages:")[0]
    assert commands.split()[0] == "hello" and "greet someone" in commands
    assert "Greetings" in out.split("dashboard pages:")[1]
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in listing["commands"]] == ["hello"]
    assert listing["commands"][0]["help"] == "greet someone (a plugin command)"
    assert listing["pages"] == [
        {"title": "Greetings", "plugin": "pages", "distribution": "<local>"}
    ]


def test_a_command_without_handler_is_one_line(plugins, capsys):
    plugins(NoHandler(), "nohandler")
    assert main(["orphan"]) == 1
    assert "set_defaults(handler=fn)" in capsys.readouterr().err


def test_an_installed_plugin_adds_a_command_to_the_real_diffsde(tmp_path):
    """A real distribution (a dist-info with an entry point in the group `diffsde`, on
    PYTHONPATH) adds `hello` to the `diffsde` executable: listed by --help, run with its
    arguments. Mutation: removing the `_add_plugin_commands` call from `parser()` fails it."""
    (tmp_path / "greeter_plugin.py").write_text(
        textwrap.dedent(
            """
            import diffsde

            @diffsde.hookimpl
            def register_commands(subparsers):
                hello = subparsers.add_parser("hello", help="greet someone")
                hello.add_argument("name")
                hello.set_defaults(handler=lambda args: print(f"hello {args.name}") or 0)
            """
        )
    )
    info = tmp_path / "greeter_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: greeter-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[diffsde]\ngreeter = greeter_plugin\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), DIFFSDE_PLUGINS="greeter")
    exe = pathlib.Path(sys.executable).parent / "diffsde"
    helped = subprocess.run([exe, "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "greet someone" in helped.stdout
    ran = subprocess.run(
        [exe, "hello", "world"], env=env, capture_output=True, text=True, timeout=120
    )
    assert (ran.returncode, ran.stdout) == (0, "hello world\n")
