"""Repeatability: the same flags and seed twice give the same dataset cache key, tag ids, metrics and weights (CPU)."""
import json
import os
import subprocess
import sys

import pytest
from main_runs import ROOT, command, comparable, env

FRESH_PROCESS = ("import json, sys; from create_ner_dataset import dataset_cache_key; "
                 "from ner_tags import build_tag_list; "
                 "print(json.dumps([dataset_cache_key(sys.argv[1], 300, 80), build_tag_list()]))")


def test_cache_key_and_tags_are_the_same_in_every_process(ag_news_dir):
    """Other hash seeds (set and dict order of strings) must not change the key or the tag ids."""
    from create_ner_dataset import dataset_cache_key
    from ner_tags import build_tag_list

    runs = [json.loads(subprocess.run([sys.executable, "-c", FRESH_PROCESS, ag_news_dir], cwd=ROOT, check=True,
                                      env=dict(env(), PYTHONHASHSEED=seed), capture_output=True, text=True).stdout)
            for seed in ("1", "2")]
    assert runs[0] == runs[1] == [dataset_cache_key(ag_news_dir, 300, 80), build_tag_list()]
    assert runs[0][0] != dataset_cache_key(ag_news_dir, 300, 81)


@pytest.mark.slow
def test_same_flags_and_seed_repeat_exactly(tmp_path, tiny_model_dir, ag_news_dir, reference):
    from safetensors.torch import load_file

    subprocess.run(command(tiny_model_dir, ag_news_dir), cwd=tmp_path, env=env(), check=True, capture_output=True)
    a = json.loads((tmp_path / "out" / "results.json").read_text())
    b = json.loads((reference / "out" / "results.json").read_text())
    assert comparable(a) == comparable(b)
    assert os.listdir(tmp_path / ".cache" / "ner_datasets") == os.listdir(reference / ".cache" / "ner_datasets")
    config_a = json.loads((tmp_path / "out" / "model" / "multitask_config.json").read_text())
    config_b = json.loads((reference / "out" / "model" / "multitask_config.json").read_text())
    tags = [next(t["labels"] for t in config["tasks"] if t["name"] == "ner") for config in (config_a, config_b)]
    assert tags[0] == tags[1] and tags[0][0] == "O" and len(tags[0]) > 1  # the same tag ids, in the same order
    assert config_a["tasks"] == config_b["tasks"]
    for name in ("heads.safetensors", "encoder/model.safetensors"):
        wa, wb = load_file(tmp_path / "out" / "model" / name), load_file(reference / "out" / "model" / name)
        assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa), name
