"""The project's modules import each other without a cycle and only downwards, through the
layers that Agent/__init__.py describes; algorithms do not know each other or the loop that
drives them."""
import ast
import os

from conftest import ROOT

PACKAGES = ("Agent", "NN", "Utils")

# Bottom first. A module may import modules of its own layer or of a lower one, never higher.
LAYERS = (
    ("Utils",),                                           # environments, config, checkpoints, logs, play
    ("NN",),                                              # networks, the shared Adam
    ("Agent.interface", "Agent.shared_math", "Agent.registry"),   # what algorithms and runtime share
    ("Agent.acer", "Agent.a3c"),                          # the algorithms
    ("Agent.algorithms",),                                # the registered ones, by name
    ("Agent.runtime",),                                   # worker loop, run state, trainer
    ("Agent.backends",),                                  # local, Ray, actor-learner
    ("Agent.training",),                                  # puts a run together
    ("main",),
)
ALGORITHM_PACKAGES = ("Agent.acer", "Agent.a3c")


def project_modules() -> dict[str, str]:
    """Module name -> file, for main.py and every module of the packages (``__init__.py`` as
    the package itself)."""
    modules = {"main": os.path.join(ROOT, "main.py")}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            dotted = os.path.relpath(folder, ROOT).replace(os.sep, ".")
            for name in sorted(files):
                if name.endswith(".py"):
                    module = dotted if name == "__init__.py" else f"{dotted}.{name[:-3]}"
                    modules[module] = os.path.join(folder, name)
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
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def layer_of(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    if module == "Agent":
        return LAYERS.index(("Agent.training",))
    raise AssertionError(f"{module} has no layer in tests/test_import_cycles.py's LAYERS")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b' for every import of a module from a higher layer."""
    return sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps
                  if layer_of(b) > layer_of(a))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
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


def package_of(module: str, packages) -> str | None:
    return next((p for p in packages if module == p or module.startswith(p + ".")), None)


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_upward_imports_sees_one():
    assert upward_imports({"Utils.config": {"Agent.runtime.trainer"}, "Agent.runtime.trainer": set()}) \
        == ["Utils.config -> Agent.runtime.trainer"]
    assert upward_imports({"Agent.runtime.trainer": {"Utils.config"}, "Utils.config": set()}) == []


def test_no_import_cycle_in_the_project():
    graph = import_graph()
    assert len(graph) > 30
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_every_import_points_down_the_layers():
    assert upward_imports(import_graph()) == []


def test_algorithms_import_neither_each_other_nor_the_runtime():
    for module, deps in import_graph().items():
        own = package_of(module, ALGORITHM_PACKAGES)
        if own is None:
            continue
        for dep in deps:
            other = package_of(dep, ALGORITHM_PACKAGES)
            assert other in (None, own), f"{module} imports {dep}, another algorithm's"


def test_the_runtime_and_the_backends_know_no_algorithm_by_name():
    """The runtime and the backends (the actor-learner mode's learner included) get their
    algorithm as a registry record; they import no algorithm package."""
    for module, deps in import_graph().items():
        if module.startswith(("Agent.runtime", "Agent.backends")):
            assert not [d for d in deps if package_of(d, ALGORITHM_PACKAGES)], (module, deps)


def test_only_the_backends_import_the_worker_loop():
    importers = {name for name, deps in import_graph().items() if "Agent.runtime.worker" in deps}
    assert importers <= {"Agent.backends.local", "Agent.backends.ray_hogwild",
                         "Agent.backends.actor_learner"}, importers
