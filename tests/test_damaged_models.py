"""A saved model folder that was damaged in transit or edited by hand: an error from the project that names the file
and what is wrong (ModelLoadError), never a library's bare parse error; main.py shows it as one line."""
import json
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT
from helpers import tiny_multitask
from main_runs import env

from multi_task_sentence_transformer import MultiTaskSentenceTransformer
from sentence_transformer import ModelLoadError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "model"
    tiny_multitask().save_pretrained(folder)
    return folder


@pytest.fixture
def copy(saved, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(saved, target)
    return target


def cut_short(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def test_the_intact_copy_loads(copy):
    out = MultiTaskSentenceTransformer.from_pretrained(copy).predict("Apple opens a store in Paris.")
    assert out["topic"]["label"] and isinstance(out["ner"], list)


def test_heads_cut_short(copy):
    cut_short(copy / "heads.safetensors")
    with pytest.raises(ModelLoadError, match=r"heads\.safetensors' is not a complete safetensors file .*cut short"):
        MultiTaskSentenceTransformer.from_pretrained(copy)
    (copy / "heads.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"heads\.safetensors' is not a complete safetensors file"):
        MultiTaskSentenceTransformer.from_pretrained(copy)


@pytest.mark.parametrize("text, message", [
    ("{\"format_version\": 5, \"tasks\": [", r"multitask_config\.json' is not valid JSON \(.*line 1"),
    ("[1, 2]", r"multitask_config\.json' holds a JSON list, not an object"),
    ("{\"format_version\": 5}", r"multitask_config\.json' lacks tasks, pooling, max_length"),
    ("{\"format_version\": 4}", r"saved in format 4, this code reads formats 5, 6"),
    ("\udcff".encode("utf-8", "surrogateescape").decode("latin-1"), r"multitask_config\.json' is not valid JSON"),
])
def test_config_not_json_or_edited(copy, text, message):
    (copy / "multitask_config.json").write_text(text, encoding="latin-1")
    with pytest.raises(ModelLoadError, match=message):
        MultiTaskSentenceTransformer.from_pretrained(copy)


def test_a_config_key_removed_by_hand(copy):
    config = json.loads((copy / "multitask_config.json").read_text())
    del config["tasks"]
    (copy / "multitask_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"multitask_config\.json' lacks tasks; .*re-copy the folder"):
        MultiTaskSentenceTransformer.from_pretrained(copy)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_a_damaged_encoder_file(copy, name):
    cut_short(copy / "encoder" / name, keep=0.3)
    with pytest.raises(ModelLoadError, match=r"Cannot load the encoder in '.*encoder'.*damaged or missing"):
        MultiTaskSentenceTransformer.from_pretrained(copy)


def test_a_damaged_fast_folder(copy, tmp_path):
    model = MultiTaskSentenceTransformer.from_pretrained(copy)
    fast = model.export_fast(tmp_path / "fast", fuse=False)
    (tmp_path / "fast" / "fast" / "fast_config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"fast model in '.*fast' could not be loaded \(.*fast_config\.json' is "
                                             r"not valid JSON"):
        MultiTaskSentenceTransformer.from_pretrained(fast)


def test_main_names_the_damaged_file_in_one_line(copy, tmp_path):
    cut_short(copy / "heads.safetensors")
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--model-dir", str(copy), "--predict", "A text."],
                          cwd=tmp_path, capture_output=True, text=True, env=env(), timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "heads.safetensors' is not a complete safetensors file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_damaged_teacher_is_refused_before_any_work(copy, tmp_path, monkeypatch, capsys):
    from helpers import flag_error

    (copy / "multitask_config.json").write_text("{")
    (tmp_path / "empty").mkdir()
    err = flag_error(["--distil-from", str(copy), "--student-layers", "1"], tmp_path / "empty", monkeypatch, capsys)
    assert "--distil-from: '" in err and "multitask_config.json' is not valid JSON" in err
