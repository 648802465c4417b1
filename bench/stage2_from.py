"""Stage 2 of the "joint, then NER" schedule from an existing model: NER alone (topic head frozen) for --stage2-epochs
epochs from a saved model, with main.py's flags; writes a run folder like main.py's (results.json, model/).

Used for the full-size "joint, then NER" row when a run's epoch-3 model already exists: the default run's best_model
(epoch 3 of a 4-epoch schedule) + 1 NER epoch is 4 epochs in all, the budget of every other row.

    python bench/stage2_from.py outputs/default/best_model --stage2-epochs 1 \
        --output-dir outputs/joint3_then_ner1
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    import main as flags
    from experiment import load_data, run_experiment

    start_from, argv = sys.argv[1], sys.argv[2:]
    if not os.path.isdir(start_from):
        sys.exit(f"error: no saved model at {start_from}")
    import run_info

    run_info.record_start()
    recipe = flags.parse_args(argv)
    results, model = run_experiment(recipe, load_data(recipe), recipe.training.output_dir, start_from=start_from,
                                epochs=recipe.training.stage2_epochs, freeze_tasks=("topic",))
    flags.print_results(results, model.tasks)


if __name__ == "__main__":
    main()
