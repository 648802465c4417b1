"""A saved model as a pip-installable spaCy pipeline package (main.py --export-spacy OUT --model-dir DIR).

    wheel = export_spacy("outputs/default/model", "outputs/spacy")   # OUT/en_multitask-1.0.0-py3-none-any.whl
    # pip install outputs/spacy/en_multitask-1.0.0-py3-none-any.whl; spacy.load("en_multitask")

A blank English pipeline with the model's component (spacy_component.py) is written with nlp.to_disk (the component
writes the model folder, which carries its code) and packaged by spaCy's own `spacy package --build wheel`, with
spacy_component.py as the package's code. The package needs spaCy, torch and transformers where it is installed.
"""
import glob
import os
import subprocess
import sys
import tempfile

from errors import InputError, ProjectError

PACKAGE_NAME = "multitask"  # the package is en_<name>: spacy.load("en_multitask")
PACKAGE_VERSION = "1.0.0"
COMPONENT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spacy_component.py")


def pipeline(model, name=PACKAGE_NAME, version=PACKAGE_VERSION):
    """A blank English spaCy pipeline holding the model (a MultiTaskSentenceTransformer) as its one component."""
    import spacy  # spaCy: only to build a package

    from spacy_component import FACTORY

    nlp = spacy.blank("en")
    nlp.meta.update(name=name, version=version, description="A multi-task sentence transformer: " + ", ".join(
        f"{t.name} ({t.kind})" for t in model.tasks.values()), requirements=["torch", "transformers"])
    nlp.add_pipe(FACTORY).model = model
    return nlp


def export_spacy(model, output_dir, name=PACKAGE_NAME, version=PACKAGE_VERSION):
    """Build the wheel of the pipeline package into output_dir (spacy package); returns the wheel's path."""
    if not name.isidentifier() or name != name.lower():
        raise InputError(f"a spaCy package name is lower-case letters, digits and _, got {name!r}")
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spacy-pipeline-") as tmp:
        pipeline_dir, build_dir = os.path.join(tmp, "pipeline"), os.path.join(tmp, "build")
        os.makedirs(build_dir)
        pipeline(model, name, version).to_disk(pipeline_dir)
        command = [sys.executable, "-m", "spacy", "package", pipeline_dir, build_dir, "--code", COMPONENT_FILE,
                   "--build", "wheel", "--force"]
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = glob.glob(os.path.join(build_dir, "*", "dist", "*.whl"))
        if done.returncode or not wheels:
            raise ProjectError(f"spacy package failed (exit {done.returncode}): "
                               f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}; run `{' '.join(command)}` "
                               "to see why (it needs the build package: pip install build)")
        target = os.path.join(output_dir, os.path.basename(wheels[0]))
        os.replace(wheels[0], target)
    return target
