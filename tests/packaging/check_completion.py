#!/usr/bin/env python3
"""The bash completion files offer every option each command's --help lists (and each command),
so a new option cannot be left out of them.

    check_completion.py COMPLETION_FILE BINARY CMD...
"""
import re
import subprocess
import sys


def options(binary, *args):
    p = subprocess.run([binary, *args, "--help"], capture_output=True, text=True, timeout=30)
    text = p.stdout + p.stderr
    # Option names at the start of a help line ("  -o,--output TEXT", "  --json").
    found = set()
    for line in text.splitlines():
        m = re.match(r"^\s+((?:-\w,)?--?[\w-]+(?:,\s*--?[\w-]+)*)", line)
        if m:
            found |= set(re.findall(r"--[a-z][\w-]*", m.group(1)))
    return found


def completion_words(path, cmd):
    text = open(path, encoding="utf-8").read()
    glob = re.search(r'local global="([^"]*)"', text)
    words = set(glob.group(1).split()) if glob else set()
    if cmd is None:
        m = re.search(r'""\) opts="([^"]*)"', text)
    else:
        m = re.search(r'\b' + re.escape(cmd) + r'\) opts="([^"]*)"', text)
    assert m, f"{path}: no opts for {cmd or 'the top level'}"
    return set(m.group(1).replace("$global", " ".join(words)).split())


def main(argv):
    if len(argv) < 4:
        print(__doc__)
        return 2
    path, binary, cmds = argv[1], argv[2], argv[3:]
    missing = []
    top = completion_words(path, None)
    for cmd in cmds:
        if cmd not in top:
            missing.append(f"command {cmd}")
    for o in options(binary) - top:
        missing.append(f"global option {o}")
    for cmd in cmds:
        have = completion_words(path, cmd)
        for o in sorted(options(binary, cmd) - have - {"--help"}):
            # Global options CLI11 repeats under a command are offered at the top level.
            if o not in top:
                missing.append(f"{cmd} {o}")
    if missing:
        print(f"{path} lacks: " + ", ".join(missing))
        return 1
    print(f"{path}: every command and option of {binary} ({', '.join(cmds)}) is offered")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
