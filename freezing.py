"""What a training run trains: freezing the encoder, its lowest layers or task heads (TrainConfig's freeze_* fields and
zero loss weights), and the trainable parameters that are left. The rules are the trainer's module docstring's
"Freezing rules". Nothing here loads a model or data.
"""
from errors import InputError
from train_config import task_weight


def task_problems(model, config):
    """[message] for config fields naming tasks the model does not have (one place, before any work)."""
    names = set(model.tasks)
    problems = [f"{field}: the model has no task {name!r} (its tasks: {', '.join(model.tasks)})"
                for field, given in (("task_weights", config.task_weights or {}), ("freeze_tasks", config.freeze_tasks))
                for name in given if name not in names]
    if config.select_on != "mean" and config.select_on not in names:
        problems.append(f"select_on: {config.select_on!r} is neither 'mean' nor one of the tasks "
                        f"({', '.join(model.tasks)})")
    return problems


def apply_freezing(model, config):
    """Set requires_grad per the config (a loss weight of 0 freezes its head); return the trainable parameters."""
    c, m = config, model
    problems = task_problems(m, c)
    if problems:
        raise InputError("; ".join(problems) + ".")
    for p in m.parameters():
        p.requires_grad_(True)
    frozen = []
    if c.freeze_encoder and m.task_layers:
        raise InputError(f"freeze_encoder trains the heads on the frozen encoder's outputs, but with task_layers="
                         f"{m.task_layers} the tasks read their own top layers; freeze the shared lower layers with "
                         f"freeze_layers (main.py --freeze-layers N) instead.")
    if c.freeze_encoder:
        frozen += [m.encoder]
    elif c.freeze_layers:
        embeddings, layers = m.encoder.embeddings_and_layers()
        if c.freeze_layers > len(layers):
            raise InputError(f"freeze_layers={c.freeze_layers} but the encoder has {len(layers)} layers; "
                             f"use freeze_encoder=True to freeze all of it.")
        frozen += [embeddings, *layers[:c.freeze_layers]]
    if m.task_layers and not (c.keep_embedding > 0 and not c.freeze_encoder):
        _, layers = m.encoder.embeddings_and_layers()  # the shared top layers feed only the sentence embedding,
        frozen += layers[len(layers) - m.task_layers:]  # which no loss reads here: no gradient would reach them
    trained = trained_task_names(m, c)
    frozen += [m.heads[n] for n in m.tasks if n not in trained]  # weight 0: no gradient would reach it (DDP)
    frozen += [m.branches[n] for n in m.branches if n not in trained]  # a task's own top layers go with its head
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)
    trainable = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
    if (not trainable or not trained) and not c.eval_only:
        raise InputError("Nothing to train: every part is frozen (or every trainable task has loss weight 0). "
                         "Unfreeze a part, or set eval_only=True to only evaluate.")
    return trainable


def trained_task_names(model, config):
    """The tasks this run trains: not frozen, weight > 0."""
    return [n for n in model.tasks if n not in config.freeze_tasks and task_weight(config, n) > 0]
