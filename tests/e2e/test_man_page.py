"""man/gilstat.1 documents every command and every option the built binary accepts.

The options come from the binary's own --help (CLI11), so a new option or command that
is not in the man page fails here. Independent of the interpreter under test.
"""
import re

import pytest

from conftest import REPO

MAN = REPO / "man" / "gilstat.1"
HELP_OPTIONS = {"-h", "--help"}  # documented once, under "Common options"


def section(text, title):
    """Lines of one `Title:` block of CLI11 --help output."""
    lines, inside = [], False
    for line in text.splitlines():
        if not line.startswith(" "):
            inside = line.strip() == title + ":"
            continue
        if inside and line.strip():
            lines.append(line)
    return lines


def options_of(help_text):
    opts = set()
    for line in section(help_text, "Options"):
        spec = line.split()[0]  # e.g. "-o,--output" (then TEXT, REQUIRED, description)
        opts.update(o for o in spec.split(",") if o.startswith("-"))
    return opts


def man_text():
    text = MAN.read_text()
    text = re.sub(r"\\f[BIRP]", "", text)
    return text.replace("\\-", "-")


def man_section(text, command):
    """The man page's `.SS "gilstat COMMAND ..."` subsection, up to the next heading."""
    m = re.search(r'^\.SS "gilstat %s\b.*?$(.*?)(?=^\.S[SH] )' % re.escape(command), text,
                  re.M | re.S)
    return m.group(1) if m else None


def mentions(text, option):
    return re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(option), text) is not None


@pytest.fixture(scope="module")
def top_help(gilstat):
    result = gilstat("--help")
    assert result.returncode == 0, result.describe()
    return result.stdout.decode()


def subcommands(help_text):
    return [line.split()[0] for line in section(help_text, "Subcommands")]


def test_every_command_has_a_man_section(gilstat, top_help):
    commands = subcommands(top_help)
    assert "run" in commands and "report" in commands, top_help
    text = man_text()
    missing = [c for c in commands if man_section(text, c) is None]
    assert not missing, "commands without a `.SS \"gilstat CMD ...\"` section in %s: %s" % (
        MAN, missing)


def test_every_option_is_in_its_man_section(gilstat, top_help):
    text = man_text()
    missing = []
    for opt in options_of(top_help):
        if not mentions(text, opt):
            missing.append("gilstat " + opt)
    for command in subcommands(top_help):
        result = gilstat(command, "--help")
        assert result.returncode == 0, result.describe()
        body = man_section(text, command) or ""
        for opt in sorted(options_of(result.stdout.decode()) - HELP_OPTIONS):
            if not mentions(body, opt):
                missing.append("gilstat %s %s" % (command, opt))
    assert not missing, "options missing from %s: %s" % (MAN, missing)
