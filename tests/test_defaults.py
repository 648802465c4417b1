"""Each default said once: the flags at the top of main.py are the defaults, and every other declaration of the same
setting (a TrainConfig field, a model's constructor argument, a data builder's parameter, a module constant) equals
its flag, so a notebook's TrainConfig() / MultiTaskSentenceTransformer() trains what `python main.py` trains.

Read from the source with ast: a new declaration that drifts from its flag fails here, naming both places. A
parameter that shares a flag's name but is another setting is listed in OTHER_SETTINGS with the reason."""
import ast
from dataclasses import asdict
from pathlib import Path

import pytest

from task_data import parse_task_weights

ROOT = Path(__file__).resolve().parent.parent
# (module.function or module.Class, parameter): why its default is not the flag's.
OTHER_SETTINGS = {
    ("train_config.TrainConfig", "output_dir"): "where a notebook's run writes: not main.py's outputs/default, whose "
                                                "checkpoints it would otherwise resume",
    ("corpus.run_settings", "label_column"): "the label column a corpus run copies: none unless one is named",
    ("conll.load_ner_files", "ner_types"): "the entity types of gold CoNLL files: CoNLL's own",
    ("create_ner_dataset.load_spacy", "model_name"): "a spaCy pipeline's name, not the encoder's",
}
NAMED_ALIKE = {
    "batch_size": "TrainConfig.batch_size is the training batch; every other batch_size is an inference batch",
    "tasks": "a selection of a model's tasks (None = all), not the tasks to train",
}


def main_flags():
    """{flag name in lower case: its value} of the flag block at the top of main.py."""
    tree = ast.parse((ROOT / "main.py").read_text())
    flags = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper():
            try:
                flags[node.targets[0].id.lower()] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return flags


def value(node, constants):
    """A default's value: a literal, or a module constant's (a Name); None where neither."""
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def declarations():
    """[(place, name, default)] of every parameter and dataclass field with a non-None default, and every module
    constant, in the project's modules but main.py."""
    found = []
    for path in sorted(ROOT.glob("*.py")):
        if path.stem == "main":
            continue
        tree = ast.parse(path.read_text())
        constants = {n.targets[0].id: value(n.value, {}) for n in tree.body
                     if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}
        found += [(path.stem, name.lower(), v) for name, v in constants.items() if name.isupper()]
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args + node.args.kwonlyargs
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults + \
                    node.args.kw_defaults
                found += [(f"{path.stem}.{node.name}", a.arg, value(d, constants)) for a, d in zip(args, defaults)
                          if d is not None]
            elif isinstance(node, ast.ClassDef):
                found += [(f"{path.stem}.{node.name}", s.target.id, value(s.value, constants)) for s in node.body
                          if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.value is not None]
    return [(place, name, v) for place, name, v in found if v is not None]


def test_every_declaration_of_a_flags_setting_equals_the_flag():
    flags = main_flags()
    flags["task_weights"] = parse_task_weights(flags["task_weights"])
    flags["freeze_tasks"] = tuple(flags["freeze"])
    drift = []
    for place, name, default in declarations():
        if name not in flags or (place, name) in OTHER_SETTINGS or (name in NAMED_ALIKE and place != (
                "train_config.TrainConfig")):
            continue
        expected = flags[name]
        if place.count(".") == 0 and isinstance(default, tuple) and expected in default:
            continue  # a module's tuple of the flag's choices (NER_TYPES, REPORT_TO), not a default
        if default != expected and not (isinstance(expected, list) and tuple(expected) == default):
            drift.append(f"{place}: {name}={default!r}, but main.py's {name.upper()} = {expected!r}")
    assert not drift, "defaults that drifted from main.py's flags:\n" + "\n".join(drift)


def test_a_notebooks_train_config_is_the_default_runs():
    """TrainConfig() equals what `python main.py` (no flag) trains with, but where it writes."""
    import main
    from train_config import TrainConfig

    recipe = main.parse_args([])
    ours = asdict(recipe.train_config())
    notebook = asdict(TrainConfig())
    ours.pop("output_dir"), notebook.pop("output_dir")
    assert notebook == ours


@pytest.mark.parametrize("setting", sorted(OTHER_SETTINGS))
def test_the_exceptions_are_still_there(setting):
    """An exception that no longer matches a declaration is stale: drop it."""
    assert any((place, name) == setting for place, name, _ in declarations()), setting
