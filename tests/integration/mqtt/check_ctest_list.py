"""Checks that a CTest list of integration tests (tests/CMakeLists.txt: CPN_MQTT_TESTS,
CPN_CPNCTL_TESTS, CPN_TASK_TESTS) names every test function in its file and nothing else, so a
new test cannot be left out of CTest.
Usage: check_ctest_list.py FILE.py NAME..."""

import ast
import sys


def main():
    path, listed = sys.argv[1], sys.argv[2:]
    tree = ast.parse(open(path).read(), path)
    defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    missing = sorted(set(defined) - set(listed))
    extra = sorted(set(listed) - set(defined))
    dup = sorted({n for n in listed if listed.count(n) > 1})
    for what, names in (("not registered in tests/CMakeLists.txt", missing),
                        ("registered but not defined", extra), ("registered twice", dup)):
        if names:
            print(f"{what}: {' '.join(names)}")
    if missing or extra or dup:
        return 1
    print(f"{path}: {len(defined)} tests, all registered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
