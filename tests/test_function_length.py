"""No function in the project is over 60 lines: every def (method and nested def included) of
main.py and of the .py files under Agent/, NN/, Utils/ and bench/, counted from its ``def`` line
to its last line, decorators excluded. Short functions, each with one named job, are what keep
the code readable; this keeps them short."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ("Agent", "NN", "Utils", "bench")
MAX_LINES = 60


def project_files() -> list[str]:
    """main.py and every .py file under ``FOLDERS`` (recursively), relative to the repo root."""
    files = ["main.py"]
    for folder in FOLDERS:
        for parent, _, names in os.walk(os.path.join(ROOT, folder)):
            files += sorted(os.path.relpath(os.path.join(parent, name), ROOT)
                            for name in names if name.endswith(".py"))
    return files


def long_functions(source: str, path: str, max_lines: int = MAX_LINES) -> list[str]:
    """``path:line name (N lines)`` for each function or method of ``source``, nested ones
    included, that spans more than ``max_lines`` lines from its ``def`` line."""
    found = []
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > max_lines:
                found.append((node.lineno, f"{path}:{node.lineno} {node.name} ({length} lines)"))
    return [line for _, line in sorted(found)]


def function_source(name: str, lines: int, decorated: bool = False, indent: str = "") -> str:
    """A function ``name`` of exactly ``lines`` lines from its ``def`` (its body ``lines - 1``
    statements), optionally with a decorator line above it that does not count."""
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(lines - 1))
    return (f"{indent}@staticmethod\n" if decorated else "") + f"{indent}def {name}():\n" + body


def test_no_function_is_over_60_lines():
    offenders = []
    for path in project_files():
        with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
            offenders += long_functions(fh.read(), path)
    assert not offenders, (f"functions over {MAX_LINES} lines (split them into named helpers):\n"
                           + "\n".join(offenders))


def test_checker_reports_61_lines_not_60():
    source = function_source("too_long", 61) + "\n" + function_source("just_fits", 60)
    assert long_functions(source, "x.py") == ["x.py:1 too_long (61 lines)"]


def test_checker_sees_methods_nested_and_async_functions_without_decorators():
    nested = "def outer():\n" + function_source("inner", 61, indent="    ")
    assert long_functions(nested, "n.py") == ["n.py:1 outer (62 lines)", "n.py:2 inner (61 lines)"]
    method = "class C:\n" + function_source("fits", 60, decorated=True, indent="    ")
    assert long_functions(method, "m.py") == []   # 61 lines with its decorator, 60 without
    asynchronous = function_source("slow", 61).replace("def ", "async def ", 1)
    assert long_functions(asynchronous, "a.py") == ["a.py:1 slow (61 lines)"]
