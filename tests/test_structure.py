"""The house a newcomer can change without a map (docs/design.md): sizes a reader can hold, the flags read once, a
task kind in one class, the import graph at the tops of the modules and without a circle. Read from the source with
ast, so a change that breaks one of these fails here naming the place."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(ROOT.glob("*.py"))}
MAX_FUNCTION_LINES = 60
NAMESPACE_NAMES = ("a", "args", "namespace")  # how a function taking main.py's parsed flags names them
KIND_ATTRIBUTES = ("kind", "reads", "reads_words", "reader")  # what a branch on a task's kind reads


def functions(tree):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_no_function_is_longer_than_a_screen():
    long = [f"{m}.{f.name} ({f.end_lineno - f.lineno + 1} lines)" for m, tree in MODULES.items()
            for f in functions(tree) if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("module, limit", [("trainer_sentence_transformer", 600), ("main", 450)])
def test_the_big_modules_stay_small(module, limit):
    lines = len((ROOT / f"{module}.py").read_text().splitlines())
    assert lines <= limit, f"{module}.py has {lines} lines (at most {limit})"


def test_the_parsed_flags_reach_only_main_s_dispatch():
    """Everything past main.py's parse and dispatch takes the recipe (recipe.py), never the argparse namespace."""
    taking = [f"{m}.{f.name}" for m, tree in MODULES.items() for f in functions(tree)
              if any(x.arg in NAMESPACE_NAMES for x in f.args.args + f.args.kwonlyargs)]
    assert len(taking) <= 5, f"{len(taking)} functions take the parsed namespace: {taking}"


def kind_branches(tree):
    """Lines where a condition (if, while, a conditional expression, a comprehension's if, a comparison) reads a
    task's kind."""
    tests = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.If, ast.IfExp, ast.While)):
            tests.append(node.test)
        elif isinstance(node, ast.comprehension):
            tests += node.ifs
        elif isinstance(node, ast.Compare):
            tests.append(node)
    return sorted({n.lineno for t in tests for n in ast.walk(t)
                   if isinstance(n, ast.Attribute) and n.attr in KIND_ATTRIBUTES})


def test_a_task_kind_is_asked_of_its_class_not_branched_on_elsewhere():
    found = {m: kind_branches(tree) for m, tree in MODULES.items() if m != "tasks"}
    found = {m: lines for m, lines in found.items() if lines}
    assert sum(map(len, found.values())) <= 5, f"branches on a task's kind outside tasks.py: {found}"


def test_imports_sit_at_the_top_but_for_heavy_or_optional_ones():
    inside = [f"{m}:{node.lineno}" for m, tree in MODULES.items() for f in functions(tree) for node in ast.walk(f)
              if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert len(inside) <= 40, f"{len(inside)} imports inside function bodies: {inside}"


def top_level_imports(tree):
    """The root modules a module imports when it is imported (its top level, try blocks included)."""
    found = set()
    for node in tree.body:
        for sub in ast.walk(node) if isinstance(node, ast.Try) else [node]:
            if isinstance(sub, ast.Import):
                found |= {a.name.split(".")[0] for a in sub.names}
            elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
                found.add(sub.module.split(".")[0])
    return found & set(MODULES)


def test_no_import_circle():
    graph = {m: top_level_imports(tree) for m, tree in MODULES.items()}

    def circle_from(start):
        stack = [(start, [start])]
        while stack:
            module, path = stack.pop()
            for nxt in graph[module]:
                if nxt == start:
                    return path + [start]
                if nxt not in path:
                    stack.append((nxt, path + [nxt]))
        return None

    circles = [c for c in map(circle_from, graph) if c]
    assert not circles, f"import circle: {' -> '.join(circles[0])}"


def test_rooms_import_only_each_others_public_names():
    """What another module needs is public under a name that says what it is: at most 5 imports of a _name across
    modules."""
    private = [f"{m} imports {node.module}.{a.name}" for m, tree in MODULES.items() for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and node.module in MODULES for a in node.names
               if a.name.startswith("_")]
    assert len(private) <= 5, f"{len(private)} private names imported across modules: {private}"


def test_one_reader_per_file_format():
    """Every file ending is read in texts_and_tables.py (its FORMATS): no other module branches on an ending, and
    serving.py, the ONNX export, reads no files of texts."""
    endings = (".txt", ".csv", ".tsv", ".jsonl", ".parquet")
    found = [f"{m}:{node.lineno}" for m, tree in MODULES.items() if m != "texts_and_tables" for node in ast.walk(tree)
             if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value in endings
                                                       for c in ast.walk(node))]
    assert not found, f"branches on a file ending outside texts_and_tables.py: {found}"
    assert "texts_and_tables" not in {n.module for n in ast.walk(MODULES["serving"]) if isinstance(n, ast.ImportFrom)}
