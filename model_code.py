"""The code a model folder carries, so the folder loads where this repository is not.

    write_code(folder, HF_ENTRY)                       # modeling_multitask.py and every module it needs, imports relative
    write_code(folder / "fast", FAST_ENTRY, relative=False)   # fast_model.py and its modules, as flat files
    modules_of(HF_ENTRY)                               # which modules those are (found from their imports)

The files written are this repository's own modules (read from where they were loaded), with the imports between
them turned relative (`from tasks import X` -> `from .tasks import X`): transformers' trust_remote_code and a spaCy
package import a folder's files as one package, and follow relative imports only. Nothing is kept twice: a folder
written from a loaded folder writes the same files again (already relative, they are left as they are). Which
modules an entry needs is read from the imports, so the set follows the code (tests/test_portable_model.py holds
it to the libraries the folder may need: torch, transformers, safetensors, tokenizers, numpy, huggingface_hub).
"""
import ast
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_TYPE = "multitask-sentence-transformer"  # config.json's model_type (modeling_multitask.MultiTaskConfig)
HF_ENTRY = "modeling_multitask"                # what transformers' AutoModel / AutoConfig load
AUTO_MAP = {"AutoConfig": f"{HF_ENTRY}.MultiTaskConfig", "AutoModel": f"{HF_ENTRY}.MultiTaskModel"}
HF_CONFIG_NAME = "config.json"                 # transformers' entry file: model_type and auto_map
_FROM = re.compile(r"^(\s*)from\s+\.?([A-Za-z_]\w*)\s+import\b", re.M)


def imported_modules(source, here=HERE):
    """The modules of `here` (a folder of .py files) that a module's source imports, anywhere in it (function bodies
    and try blocks included): `from name import ...` or `from .name import ...`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level <= 1:
            name = node.module.split(".")[0]
            if os.path.isfile(os.path.join(here, name + ".py")) and name not in found:
                found.append(name)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if os.path.isfile(os.path.join(here, a.name + ".py"))
                      and a.name not in found]
    return found


def _read(name, here):
    with open(os.path.join(here, name + ".py"), encoding="utf-8") as f:
        return f.read()


def modules_of(entry, here=HERE):
    """The modules entry needs, entry first, each once: entry and everything it imports from `here`, transitively."""
    order, todo = [], [entry]
    while todo:
        name = todo.pop(0)
        if name not in order:
            order.append(name)
            todo += imported_modules(_read(name, here), here)
    return order


def portable_source(source, modules, relative=True):
    """source with its imports of `modules` written relative (`from .tasks import`), or flat (`from tasks import`)
    with relative=False; only import statements change (found by ast: a docstring's example stays as it is). A plain
    `import module` of one of them cannot be turned relative: refused."""
    lines, starts = source.splitlines(keepends=True), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(a.name in modules for a in node.names):
            raise ValueError(f"`import {node.names[0].name}` (line {node.lineno}): a module a folder carries imports "
                             "the others as `from module import ...`, so the import can be made relative")
        if isinstance(node, ast.ImportFrom) and node.level <= 1 and (node.module or "").split(".")[0] in modules:
            starts.add(node.lineno - 1)
    for i in starts:
        lines[i] = _FROM.sub(lambda m: f"{m.group(1)}from {'.' if relative else ''}{m.group(2)} import", lines[i])
    return "".join(lines)


def write_code(directory, entry, relative=True, here=HERE):
    """Write entry's modules (modules_of) into directory; returns their names."""
    modules = modules_of(entry, here)
    for name in modules:
        with open(os.path.join(directory, name + ".py"), "w", encoding="utf-8") as f:
            f.write(portable_source(_read(name, here), modules, relative))
    return modules
