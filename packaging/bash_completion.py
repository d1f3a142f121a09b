"""Writes gilstat's bash completion from the binary's own --help output.

    python3 packaging/bash_completion.py build/bin/gilstat OUTPUT

Run at build time (packaging/CMakeLists.txt), so the completion the .deb ships
offers exactly the options of the binary beside it; tests/package checks that
with bash itself.  What an option's value completes to follows its help line:
a {a,b,c} set gives those words, a pid (INT --pid) the running processes, an
output or an interpreter files or commands; anything else falls back to file
names (complete -o default).
"""
import re
import subprocess
import sys

# "  -o,--output TEXT REQUIRED   Recording ..." / "  -f,--format TEXT:{a,b} REQUIRED"
OPTION = re.compile(r"^  ((?:-\w,)?--[\w-]+)(?: ([A-Z]+)(?::\{([^}]*)\})?)?")
SUBCOMMAND = re.compile(r"^  ([a-z][\w-]*) {2,}")


def help_text(binary, *words):
    return subprocess.run([binary, *words, "--help"], check=True, capture_output=True,
                          text=True).stdout


def section(text, title):
    """The lines of one section of CLI11's help ("Options:", "Subcommands:")."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            inside = line == title
        elif inside:
            lines.append(line)
    return lines


def options(text):
    """[(names, type, choices)] of one command's help."""
    found = []
    for line in section(text, "Options:"):
        m = OPTION.match(line)
        if m:
            choices = m.group(3).split(",") if m.group(3) else []
            found.append((m.group(1).split(","), m.group(2), choices))
    return found


def value_completion(names, kind, choices):
    """The bash that completes this option's value, or None for a flag."""
    if kind is None:
        return None
    if choices:
        return 'COMPREPLY=($(compgen -W "%s" -- "$cur"))' % " ".join(choices)
    if "--pid" in names:
        return 'COMPREPLY=($(compgen -W "$(_gilstat_pids)" -- "$cur"))'
    if "--python" in names:
        return 'COMPREPLY=($(compgen -c -- "$cur"))'
    if "--output" in names:
        return 'COMPREPLY=($(compgen -f -- "$cur"))'
    return ""  # a value we cannot guess: bash falls back to file names


def command_case(name, text):
    words, values, unguessed = [], [], []
    for names, kind, choices in options(text):
        words.extend(names)
        action = value_completion(names, kind, choices)
        if action:
            values.append("        %s) %s; return ;;" % ("|".join(names), action))
        elif action == "":
            unguessed.extend(names)
    if unguessed:
        values.append("        %s) return ;;" % "|".join(unguessed))
    lines = ['    %s)' % (name or '""'), '      opts="%s"' % " ".join(words)]
    if values:
        lines += ['      case $prev in'] + values + ['      esac']
    return lines + ["      ;;"]


def generate(binary):
    top = help_text(binary)
    subcommands = [m.group(1) for m in map(SUBCOMMAND.match, section(top, "Subcommands:")) if m]
    cases = command_case("", top)
    for sub in subcommands:
        cases += command_case(sub, help_text(binary, sub))
    return "\n".join([
        "# bash completion for gilstat: generated from `gilstat --help` and each",
        "# subcommand's --help by packaging/bash_completion.py (do not edit).",
        "_gilstat_pids() {",
        "  local p",
        "  for p in /proc/[0-9]*; do echo \"${p#/proc/}\"; done",
        "}",
        "",
        "_gilstat() {",
        "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}",
        "  local sub='' opts='' i",
        "  COMPREPLY=()",
        "  for ((i = 1; i < COMP_CWORD; i++)); do",
        "    case ${COMP_WORDS[i]} in",
        "      --)",
        "        # gilstat run/record -- PROGRAM ...: the program's own completion.",
        "        if declare -F _command_offset >/dev/null; then _command_offset $((i + 1)); fi",
        "        return ;;",
        "      -*) ;;",
        "      *) [[ -z $sub ]] && sub=${COMP_WORDS[i]} ;;",
        "    esac",
        "  done",
        "  case $sub in",
    ] + cases + [
        "  esac",
        "  if [[ -z $sub && $cur != -* ]]; then",
        "    COMPREPLY=($(compgen -W \"%s\" -- \"$cur\"))" % " ".join(subcommands),
        "  elif [[ $cur == -* ]]; then",
        "    COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))",
        "  fi",
        "}",
        "complete -o bashdefault -o default -F _gilstat gilstat",
        "",
    ])


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: bash_completion.py GILSTAT_BINARY OUTPUT")
    text = generate(sys.argv[1])
    with open(sys.argv[2], "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
