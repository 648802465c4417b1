"""main.py's flags, read once: a frozen Recipe of what to run, built from the parsed command line.

    recipe = recipe_from_args(namespace, mode_options)  # data paths resolved, task layers decided (nothing checked)
    recipe.problems()                                    # [message naming its --flag]: main.py refuses them first
    recipe.data / .tasks / .model / .training / .distillation / .serving   # the part the code it configures takes
    recipe.modes                                         # the mode options given, in MODES order (() = train)
    recipe.flags                                         # every flag as resolved (results.json's "flags")

Each part checks its own flags (problems()); checks that span parts are Recipe.problems'. Values that the trainer,
the data builder or the distiller take are checked by their own checks (TrainConfig.problems,
create_ner_dataset.option_problems, distillation.teacher_problems / teachers_problems) and reported here under the
flags' names. Nothing changes a recipe once built: a variant is dataclasses.replace(recipe, part=replace(...)).
"""
import json
import os
from dataclasses import dataclass, fields, replace
from types import MappingProxyType

import data_root as roots
from batch_prediction import check_predict_file_args
from corpus import MODES as CORPUS_MODES
from corpus import corpus_problems
from create_ner_dataset import option_problems
from data_sources import class_names, unavailable_hub_source
from distillation import parse_teachers, saved_labels, teacher_problems, teachers_problems
from errors import InputError, ProjectError
from hub import hub_reachable
from multi_task_sentence_transformer import CONFIG_NAME, missing_saved_parts, task_layers_problem
from ner_tags import NER_TYPES, build_tag_list
from sentence_transformer import (
    POOLING_MODES,
    ModelLoadError,
    check_pooling,
    read_saved_json,
    resolve_model_path,
)
from serving import VALIDATION_TEXTS
from task_data import parse_task_spec, parse_task_specs, parse_task_weights, resolve_spec, spec_problems
from texts_and_tables import TEXT_FORMATS, format_problem, read_texts
from train_config import TrainConfig

CLEAN_MODES = {"auto": "auto", "true": True, "false": False}
# --schedule: "joint" trains every task every epoch; "joint, then NER" trains them all for EPOCHS - STAGE2_EPOCHS
# epochs, then the NER head and encoder on for the last STAGE2_EPOCHS with the other heads frozen (same total epochs).
SCHEDULES = ("joint", "joint, then NER")
# Messages given instead of the trainer's, where a flag has a hint of its own.
FLAG_HINTS = {"epochs": "must be >= 1 (to use a saved model without training: --predict or --eval-conll)",
              "keep_embedding": "must be >= 0 (0 = off)"}


def flag(name):
    """The command-line form of a field: "max_length" -> "--max-length"."""
    return "--" + name.replace("_", "-")


def encoder_config(model_name):
    """The Hugging Face config (a dict) of --model-name: a local folder's config.json, else a Hub encoder's (from the
    cache, or the Hub where it answers); None where none can be read (the load says why, later)."""
    try:
        path = resolve_model_path(model_name)
    except ModelLoadError:
        return None  # --model-name's own problem is reported
    if os.path.isdir(path):
        try:
            with open(os.path.join(path, "config.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None
    try:
        from transformers import AutoConfig  # transformers: heavy, only for a Hub encoder's config

        return AutoConfig.from_pretrained(path, local_files_only=not hub_reachable()).to_dict()
    except Exception:  # not cached and no Hub, or no such model: the load reports it
        return None


def saved_task_names(model_dir):
    """The task names of a saved model folder (its config only), or () when it cannot be read (said elsewhere)."""
    try:
        return [t["name"] for t in read_saved_json(os.path.join(model_dir, CONFIG_NAME))["tasks"]]
    except (ModelLoadError, KeyError, TypeError, OSError):
        return ()


# ------------------------------------------------------------------------------------------------ the parts
@dataclass(frozen=True)
class DataRecipe:
    """The labelled data: --dataset (a path under the data root where found there), its columns and sample, the
    silver labels' settings, --ner-data and --distil-texts."""
    dataset: object  # a path or Hub id, or a list of data files
    data_root: object  # the data root found (a folder or None); --fetch-data: as given
    text_column: str
    label_column: str
    test_fraction: float
    ner_data: tuple
    ner_types: str
    spacy_model: str
    dropped_entity_types: str
    clean_text: str
    max_train_rows: int
    max_test_rows: int
    all_rows: bool
    val_fraction: float
    label_processes: int
    seed: int
    distil_texts: tuple

    def dropped_types(self):
        """--dropped-entity-types as a tuple, or None for the default of --ner-types."""
        if self.dropped_entity_types.strip().lower() == "default":
            return None
        return tuple(t.strip().upper() for t in self.dropped_entity_types.split(",") if t.strip())

    def clean_mode(self):
        return CLEAN_MODES[str(self.clean_text).lower()]

    def row_limits(self):
        """(train rows, test rows) to sample, None = all."""
        return (None, None) if self.all_rows else (self.max_train_rows or None, self.max_test_rows or None)

    def tagging_labels(self):
        """The default ner task's tag list (None when the flags are wrong: said under their own flags)."""
        try:
            return build_tag_list(self.dropped_types(), self.ner_types)
        except ValueError:
            return None

    def problems(self):
        clean = CLEAN_MODES.get(str(self.clean_text).lower(), self.clean_text)
        names = {"ner_types": "--ner-types", "dropped_types": "--dropped-entity-types:", "clean": "--clean-text"}
        problems = []
        for name, message in option_problems(self.test_fraction, self.ner_types, clean, self.text_column,
                                             self.label_column, self.dropped_types()):
            if name == "ner_types":
                message = f"must be one of {', '.join(NER_TYPES)}"
            elif name == "clean":
                message = f"must be one of {', '.join(CLEAN_MODES)}"
            elif name in ("text_column", "label_column"):
                message = "must name a column" if not getattr(self, name) else message
            problems.append(f"{names.get(name, flag(name))} {message}")
        if self.label_processes < 1:
            problems.append("--label-processes must be >= 1")
        problems += [f"{flag(name)} must be >= 0" for name in ("max_train_rows", "max_test_rows")
                     if getattr(self, name) < 0]
        if not 0 < self.val_fraction < 1:
            problems.append("--val-fraction must be between 0 and 1")
        missing = [f for f in self.ner_data if not os.path.isfile(f)]
        if missing:
            problems.append(f"--ner-data: no file at {', '.join(missing)}")
        return problems + self.distil_texts_problems()

    def distil_texts_problems(self):
        """--distil-texts: files that exist in a format read_texts reads."""
        problems = []
        for path in self.distil_texts:
            if not os.path.isfile(path):
                problems.append(f"--distil-texts: no file at {path}")
            else:
                problems += filter(None, [format_problem(path, "--distil-texts", TEXT_FORMATS)])
        return problems

    def dataset_problems(self):
        """--dataset naming a Hub dataset that cannot be had here (Hub not reachable, nothing cached): one message
        naming the command that fetches the data, before any work."""
        try:
            why = unavailable_hub_source(self.dataset)
        except ProjectError as e:  # a local file or folder that is not there
            return [f"--dataset: {e}"]
        if why is None:
            return []
        return [f"--dataset {self.dataset}: {why}, and {roots.describe(self.data_root)}. Fetch the data where the Hub "
                f"is reachable: {roots.FETCH_COMMAND} (writes data/; copy it here or pass --data-root DIR), or train "
                "on your own files: --dataset my.csv --label-column COLUMN"]


@dataclass(frozen=True)
class TasksRecipe:
    """The tasks on the encoder (--tasks, their sources resolved under the data root), their loss weights, the heads
    kept frozen and the task model selection reads."""
    tasks: tuple
    task_weights: str
    freeze: tuple
    select_on: str

    def specs(self):
        return parse_task_specs(self.tasks)

    def weights(self):
        return parse_task_weights(self.task_weights)

    def sources(self):
        """{task: its data source} for the tasks beyond the default pair."""
        specs = [parse_task_spec(t) for t in self.tasks]
        return {s.name: s.source for s in specs if not s.builtin}

    def problems(self, text_column, saved_names=()):
        """--tasks, --task-weights, --freeze and --select-on: forms, names (of the tasks, or of saved_names: the
        tasks of --from-model's model), sources (task_data)."""
        problems, names = [], None
        try:
            specs = self.specs()
            names = [s.name for s in specs]
            problems += spec_problems(specs, text_column)
        except InputError as e:
            problems.append(str(e))
        try:
            weights = self.weights()
        except InputError as e:
            problems.append(str(e))
            weights = {}
        known = set(names or ()) | set(saved_names)
        if names is not None:
            for option, given in (("--task-weights", weights), ("--freeze", self.freeze)):
                unknown = [n for n in given if n not in known]
                if unknown:
                    problems.append(f"{option}: no task {unknown[0]!r} (the tasks: {', '.join(sorted(known))})")
            if self.select_on != "mean" and self.select_on not in known:
                problems.append(f"--select-on must be 'mean' or a task name ({', '.join(sorted(known))}), got "
                                f"{self.select_on!r}")
        return problems


@dataclass(frozen=True)
class ModelRecipe:
    """A new model: the encoder, pooling, length, dropouts and the tasks' private top layers (task_layers: given as
    --task-layers, or TASK_LAYERS, or 0 where that cannot apply with task_layers_note saying why)."""
    model_name: str
    pooling: str
    max_length: int
    dropout: float
    attention_dropout: float
    task_layers: int
    task_layers_given: bool
    task_layers_note: str = ""

    def problems(self):
        problems = []
        try:
            check_pooling(self.pooling)
        except ValueError:
            problems.append(f"--pooling must be one of {', '.join(POOLING_MODES)}")
        if self.max_length < 1:
            problems.append("--max-length must be >= 1")
        if not 0 <= self.dropout < 1 or not 0 <= self.attention_dropout < 1:
            problems.append("--dropout and --attention-dropout must be in [0, 1)")
        try:
            resolve_model_path(self.model_name)  # a missing local directory is caught here; hub ids are tried later
        except ModelLoadError as e:
            problems.append(f"--model-name: {e}")
        return problems

    def task_layers_problems(self, teacher_flag="", frozen_flag=""):
        """--task-layers N: a new model's (not under teacher_flag: --distil-from's student, --from-model's saved
        model), not under a frozen encoder (frozen_flag: --freeze-encoder, or --compare-freezing, whose rows include
        one), and fitting the encoder (its config, local or from the Hub: multi_task_sentence_transformer's
        task_layers_problem, the rule the model itself applies)."""
        if self.task_layers < 0:
            return ["--task-layers must be >= 0 (0 = every task reads the shared encoder)"]
        problems = []
        if teacher_flag:
            problems.append(f"--task-layers with {teacher_flag}: " + (
                "a student reads its own (shared) encoder" if teacher_flag == "--distil-from" else
                "the saved model keeps its own task layers") + "; drop --task-layers")
        if frozen_flag:
            problems.append(f"--task-layers with {frozen_flag}" + (
                " (its encoder-frozen row)" if frozen_flag == "--compare-freezing" else "") +
                ": the tasks' own top layers would be frozen too; freeze the shared lower layers with "
                "--freeze-layers N instead, or --task-layers 0")
        config = encoder_config(self.model_name)
        problem = config and task_layers_problem(self.task_layers, config.get("model_type"),
                                                 config.get("num_hidden_layers"))
        if problem:
            problems.append(f"--task-layers {self.task_layers}: {problem}")
        return problems


@dataclass(frozen=True)
class TrainingRecipe:
    """How to train: the trainer's settings named like TrainConfig's fields, the --schedule and where it writes."""
    epochs: int
    batch_size: int
    lr: float
    head_lr: float
    warmup_ratio: float
    weight_decay: float
    loss_weighting: str
    sampling: str
    sampling_temperature: float
    keep_embedding: float
    freeze_encoder: bool
    freeze_layers: int
    seed: int
    save_every_steps: int
    save_every_minutes: float
    mixed_precision: str
    report_to: str
    schedule: str
    stage2_epochs: int
    output_dir: str

    def schedule_problems(self, tasks):
        """--schedule / --stage2-epochs values that cannot run with these tasks (a TasksRecipe)."""
        if self.schedule not in SCHEDULES:
            return [f"--schedule must be one of {' | '.join(repr(s) for s in SCHEDULES)}, got {self.schedule!r}"]
        if self.schedule == "joint":
            return []
        problems = []
        if not 1 <= self.stage2_epochs < self.epochs:
            problems.append(f"--stage2-epochs must be between 1 and --epochs - 1 ({self.epochs - 1}) under --schedule "
                            f"{self.schedule!r}: stage 2 takes the last N of the {self.epochs} epochs (got "
                            f"{self.stage2_epochs})")
        weights = tasks.weights()
        trained = [n for n in (str(t).split("=", 1)[0].strip() for t in tasks.tasks)
                   if weights.get(n, 1) > 0 and n not in tasks.freeze]
        if "ner" not in trained or len(trained) < 2:
            problems.append(f"--schedule {self.schedule!r} trains every task, then NER: it needs the ner task and "
                            "another one trained (weights > 0, not in --freeze); use --schedule joint")
        if self.freeze_encoder:
            problems.append(f"--schedule {self.schedule!r} with --freeze-encoder: stage 2 would train the NER head "
                            "alone on a frozen encoder, which stage 1 already did; use --schedule joint")
        return problems


@dataclass(frozen=True)
class DistillationRecipe:
    """Learning from saved models: --from-model, --distil-from (a student), --teachers, and how strongly."""
    from_model: str
    distil_from: str
    student_layers: int
    distil_weight: float
    distil_temperature: float
    distil_schedule: str
    teachers: tuple

    @property
    def teacher_flag(self):
        """The flag that brings a model of its own to distil from ("" = none)."""
        return "--distil-from" if self.distil_from else "--from-model" if self.from_model else ""

    def has_teacher(self):
        return bool(self.teachers or self.distil_from or self.from_model)

    def problems(self, schedule, data, tasks):
        """These flags against --schedule, the data (a DataRecipe) and the tasks (a TasksRecipe)."""
        problems = self.from_model_problems(schedule) if self.from_model else []
        if self.distil_from:
            problems += self.distil_problems(schedule, data)
        if self.teachers:
            problems += self.teachers_flag_problems(schedule, tasks, data.tagging_labels())
        elif not (self.from_model or self.distil_from):  # without a teacher the trainer never sees these: check here

            problems += [f"{flag(f)} {m}" for f, m in TrainConfig.problems(
                {"distil_weight": self.distil_weight, "distil_temperature": self.distil_temperature})]
        if data.distil_texts and not self.has_teacher():
            problems.append("--distil-texts adds rows without labels, which learn only from a teacher; give --teachers "
                            "NAME=DIR, --distil-from DIR or --from-model DIR")
        return problems

    def from_model_problems(self, schedule):
        """--from-model: a saved model folder, trained jointly, not with --distil-from."""
        missing = missing_saved_parts(self.from_model)
        if missing:
            return [f"--from-model: {self.from_model} is not a saved model folder (no {', '.join(missing)}); point it "
                    "at <output-dir>/model of a training run"]
        problems = []
        if self.distil_from:
            problems.append("--from-model and --distil-from: pick one (a student of a model, or a model with new tasks)")
        if schedule != "joint":
            problems.append(f"--from-model trains jointly; drop --schedule {schedule!r}")
        return problems

    def distil_problems(self, schedule, data):
        """--distil-from / --student-layers against the teacher folder and the data's tags and classes (no weights are
        loaded and nothing is labelled: the config files and the data's label column only)."""
        if schedule != "joint":
            return [f"--distil-from trains the student jointly; drop --schedule {schedule!r}"]
        problems = teacher_problems(self.distil_from, self.student_layers, data.tagging_labels())
        if problems:
            return problems
        teacher_classes = saved_labels(read_saved_json(os.path.join(self.distil_from, CONFIG_NAME)), "classification")
        try:
            names = class_names(data.dataset, data.text_column, data.label_column)
        except ProjectError:
            return []  # the data's own problem: reported when it loads, as in any run
        if list(names) != list(teacher_classes):
            return [f"--distil-from: the teacher predicts {teacher_classes}, the data's classes are {names}; distil on "
                    "data with the teacher's classes (or point --distil-from at a teacher trained on this data)"]
        return []

    def teachers_flag_problems(self, schedule, tasks, tags):
        """--teachers NAME=DIR ...: the form, task names of --tasks, saved model folders that have the task (its kind,
        and for tagging its tags: config files only, no weights loaded); not beside --distil-from / --from-model,
        which bring their own teacher, nor under a two-stage --schedule."""
        problems = []
        if self.teacher_flag:
            problems.append(f"--teachers with {self.teacher_flag}: that mode distils from its own model; drop one of "
                            "them")
        if schedule != "joint":
            problems.append(f"--teachers trains jointly; drop --schedule {schedule!r}")
        try:
            teachers = parse_teachers(self.teachers)
            specs = tasks.specs()
        except InputError as e:
            return problems + [str(e)]
        return problems + teachers_problems(teachers, specs, tags)


@dataclass(frozen=True)
class ServingRecipe:
    """Using a saved model: --predict, --predict-file, --predict-dir, --label-dir, --eval-conll, --export-fast,
    --export-spacy, --push-to-hub and their options."""
    predict: tuple
    predict_file: str
    predict_dir: str
    label_dir: str
    eval_conll: str
    export_fast: str
    export_spacy: str
    push_to_hub: str
    export_texts: str
    model_dir: str
    output: str
    chunk_size: int
    id_column: str
    actors: int
    threads_per_actor: int
    ray_address: str
    output_dir: str
    text_column: str
    batch_size: int
    mixed_precision: str

    @property
    def model_path(self):
        """--model-dir, else OUTPUT_DIR/model."""
        return self.model_dir or os.path.join(self.output_dir, "model")

    def held_out_texts(self):
        """The texts --export-fast measures its candidates on: --export-texts, else the run's validation texts (in
        OUTPUT_DIR, or beside --model-dir), else none."""
        candidates = [self.export_texts] if self.export_texts else [
            os.path.join(self.output_dir, VALIDATION_TEXTS),
            os.path.join(os.path.dirname(os.path.normpath(self.model_path)), VALIDATION_TEXTS)]
        path = next((p for p in candidates if os.path.isfile(p)), None)
        return [t for _, t, error in read_texts(path, self.text_column) if error is None and t.strip()] if path else []

    def predictions_path(self):
        """Where --predict-file writes: --output, else OUTPUT_DIR/predictions.jsonl."""
        return self.output or os.path.join(self.output_dir, "predictions.jsonl")

    def corpus_output(self, mode):
        """The output folder of a --predict-dir / --label-dir run: --output, else OUTPUT_DIR/predictions or /silver."""
        return self.output or os.path.join(self.output_dir, "predictions" if mode == "predict" else "silver")

    def problems(self):
        problems = []
        if self.eval_conll and not os.path.isfile(self.eval_conll):
            problems.append(f"--eval-conll: no file at {self.eval_conll}")
        problems += check_predict_file_args(self.predict_file, self.chunk_size)
        if self.export_texts:
            problems += [f"--export-texts: no file at {self.export_texts}"] if not os.path.isfile(self.export_texts) \
                else list(filter(None, [format_problem(self.export_texts, "--export-texts", TEXT_FORMATS)]))
        if self.push_to_hub and (self.push_to_hub.count("/") != 1 or " " in self.push_to_hub):
            problems.append(f"--push-to-hub: {self.push_to_hub!r} is not a Hub repo id (NAMESPACE/NAME, e.g. "
                            "me/my-model)")
        if (self.push_to_hub or self.export_spacy) and missing_saved_parts(self.model_path):
            flag_name = "--push-to-hub" if self.push_to_hub else "--export-spacy"
            problems.append(f"{flag_name}: {self.model_path} is not a saved model (missing "
                            f"{', '.join(missing_saved_parts(self.model_path))}); pass --model-dir DIR")
        return problems + self.corpus_problems()

    def corpus_problems(self):
        """--predict-dir / --label-dir (before the model loads, Ray starts or anything is written)."""
        problems = []
        for mode in CORPUS_MODES:
            source = getattr(self, f"{mode}_dir")
            if source:
                problems += corpus_problems(mode, source, self.corpus_output(mode),
                                            self.model_path if mode == "predict" else None, self.actors,
                                            self.threads_per_actor, self.id_column, self.text_column)
        if self.predict_dir and self.label_dir and self.corpus_output("predict") == self.corpus_output("label"):
            problems.append("--predict-dir and --label-dir would write one --output folder; run them one at a time")
        return problems


# ------------------------------------------------------------------------------------------------ the recipe
PARTS = {"data": DataRecipe, "tasks": TasksRecipe, "model": ModelRecipe, "training": TrainingRecipe,
         "distillation": DistillationRecipe, "serving": ServingRecipe}


@dataclass(frozen=True)
class Recipe:
    """What main.py runs: its parts, the modes chosen (option strings; () = train) and every flag as resolved."""
    data: DataRecipe
    tasks: TasksRecipe
    model: ModelRecipe
    training: TrainingRecipe
    distillation: DistillationRecipe
    serving: ServingRecipe
    modes: tuple
    flags: MappingProxyType

    @property
    def compare_freezing(self):
        return "--compare-freezing" in self.modes

    @property
    def fetch_data(self):
        return "--fetch-data" in self.modes

    def needs_dataset(self):
        """Training and --compare-freezing read --dataset; the other modes use a saved model."""
        return self.compare_freezing or not self.modes

    def flags_record(self, **changes):
        """The flags as results.json records them (a plain dict)."""
        return {**self.flags, **changes}

    def train_config_settings(self, output_dir=None, **overrides):
        """The TrainConfig keyword arguments of the flags named like its fields (a new such flag needs no edit here)."""
        settings = {f.name: getattr(part, f.name) for f in fields(TrainConfig)
                    for part in (self.training, self.tasks, self.distillation) if hasattr(part, f.name)}
        settings["task_weights"] = {**self.tasks.weights(), **overrides.pop("task_weights", {})}
        settings["freeze_tasks"] = tuple(dict.fromkeys([*self.tasks.freeze, *overrides.pop("freeze_tasks", ())]))
        settings.update(output_dir=output_dir or self.training.output_dir, **overrides)
        return settings

    def train_config(self, output_dir=None, **overrides):
        return TrainConfig(**self.train_config_settings(output_dir, **overrides))

    def trainer_problems(self):
        """The trainer's own checks (TrainConfig.problems) under the flags' names (--tasks' names are said by
        TasksRecipe.problems)."""
        settings = self.train_config_settings()  # a malformed --task-weights raises here, as it always has
        return [f"{flag(name)} {FLAG_HINTS.get(name, message)}" for name, message in TrainConfig.problems(settings)
                if name not in ("task_weights", "select_on")]

    def problems(self):
        """[message naming its flag] for every value that cannot run, before any work."""
        saved = saved_task_names(self.distillation.from_model) if self.distillation.from_model else ()
        problems = self.tasks.problems(self.data.text_column, saved)
        problems += self.trainer_problems()
        problems += self.data.problems()
        problems += self.training.schedule_problems(self.tasks)
        problems += self.distillation.problems(self.training.schedule, self.data, self.tasks)
        if self.model.task_layers:
            problems += self.task_layers_problems()
        problems += self.model.problems() + self.serving.problems()
        if not problems and not self.fetch_data and self.needs_dataset():
            problems += self.data.dataset_problems()
        return problems

    def task_layers_problems(self):
        frozen = ("--freeze-encoder" if self.training.freeze_encoder else
                  "--compare-freezing" if self.compare_freezing else "")
        return self.model.task_layers_problems(self.distillation.teacher_flag, frozen)

    def with_default_task_layers(self):
        """--task-layers not given: TASK_LAYERS, or 0 where it cannot apply (the run would otherwise be refused for a
        flag the user never set), with the line the training modes print then."""
        if self.model.task_layers_given or self.model.task_layers <= 0:
            return self
        problems = self.task_layers_problems()
        if not problems:
            return self
        note = (f"task layers: none for this run (TASK_LAYERS = {self.model.task_layers} does not apply: "
                f"{problems[0].split('; ')[0]})")
        return replace(self, model=replace(self.model, task_layers=0, task_layers_note=note),
                       flags=MappingProxyType({**self.flags, "task_layers": 0, "task_layers_note": note}))


def resolved_data_paths(values):
    """The data root found for the flags' values (ProjectError when the one named is not there), and --dataset,
    --ner-data, --distil-texts, --tasks' sources and --eval-conll names that exist under it (and not as given) as
    paths under it."""
    root = roots.find_data_root(values["data_root"])

    def resolve(path):
        return roots.resolve(path, root)

    dataset = values["dataset"]
    return {"data_root": root,
            "dataset": [resolve(d) for d in dataset] if isinstance(dataset, list) else resolve(dataset),
            "ner_data": [resolve(f) for f in values["ner_data"]],
            "distil_texts": [resolve(f) for f in values["distil_texts"]],
            "tasks": [resolve_spec(t, resolve) for t in values["tasks"]],
            "eval_conll": resolve(values["eval_conll"]) if values["eval_conll"] else values["eval_conll"]}


def _part(cls, values):
    """A part of the recipe from the flags' values named like its fields (lists as tuples)."""
    return cls(**{f.name: tuple(values[f.name]) if isinstance(values[f.name], list) and f.name != "dataset"
                  else values[f.name] for f in fields(cls) if f.name in values})


def recipe_from_args(namespace, mode_options=()):
    """The Recipe of main.py's parsed command line (its namespace, which is not changed), built once: one --dataset
    as a string, data paths resolved under the data root (not for --fetch-data, which fills it), the modes given
    among mode_options (in their order), task layers decided. ProjectError when the data root named is not there."""
    values = dict(vars(namespace), task_layers_note="")
    if isinstance(values["dataset"], list) and len(values["dataset"]) == 1:
        values["dataset"] = values["dataset"][0]  # one source: a string, as in the flag block
    if not values["fetch_data"]:  # the root is to be filled, not read
        values.update(resolved_data_paths(values))
    modes = tuple(option for option in mode_options if values[option[2:].replace("-", "_")])
    parts = {name: _part(cls, values) for name, cls in PARTS.items()}
    return Recipe(**parts, modes=modes, flags=MappingProxyType(values)).with_default_task_layers()
