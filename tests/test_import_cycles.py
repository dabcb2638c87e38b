"""The project's modules import each other without a cycle, and the agents do not depend on
the loop that drives them."""
import ast
import os

from conftest import ROOT

PACKAGES = ("Agent", "NN", "Utils")


def project_modules() -> dict[str, str]:
    """Module name -> file, for main.py and the packages."""
    modules = {"main": os.path.join(ROOT, "main.py")}
    for package in PACKAGES:
        for name in sorted(os.listdir(os.path.join(ROOT, package))):
            if name.endswith(".py") and name != "__init__.py":
                modules[f"{package}.{name[:-3]}"] = os.path.join(ROOT, package, name)
    return modules


def imports_of(path: str, modules: dict[str, str]) -> set[str]:
    """Project modules that ``path`` imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_project():
    graph = import_graph()
    assert len(graph) > 15
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_only_the_backends_import_the_worker_loop():
    importers = {name for name, deps in import_graph().items() if "Agent.worker" in deps}
    assert importers <= {"Agent.trainer", "Agent.ray_backend", "Agent.actor_learner"}, importers
