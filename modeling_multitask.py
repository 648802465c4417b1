"""The model folder as Hugging Face transformers loads it: AutoConfig / AutoModel classes for a saved multi-task model.

    from transformers import AutoModel
    model = AutoModel.from_pretrained("outputs/default/model", trust_remote_code=True)   # or a Hub repo id
    model.predict("Apple opens a store in Paris.")     # the same dicts as MultiTaskSentenceTransformer.predict
    model.encode(["A sentence."])                      # the shared encoder's sentence embeddings

save_pretrained writes this file and the model code it needs into the folder (model_code.py), with a config.json
naming these classes (auto_map), so the folder loads where this repository is not. The object wraps the project's
MultiTaskSentenceTransformer (`.multitask`) and answers with it: one implementation.
"""
import os

from transformers import PretrainedConfig, PreTrainedModel

from multi_task_sentence_transformer import MultiTaskSentenceTransformer

MODEL_TYPE = "multitask-sentence-transformer"


class MultiTaskConfig(PretrainedConfig):
    """config.json of a saved multi-task model: what transformers needs to find the classes. What the model is (its
    tasks, pooling, ...) lives in the folder's multitask_config.json, read by MultiTaskSentenceTransformer."""
    model_type = MODEL_TYPE


def _local_folder(name_or_path, **hub):
    """A local folder for a folder or a Hub repo id (downloaded with huggingface_hub, or found in its cache)."""
    if os.path.isdir(name_or_path):
        return os.fspath(name_or_path)
    from huggingface_hub import snapshot_download  # the Hub client: only for a repo id

    options = {k: hub[k] for k in ("revision", "cache_dir", "token", "local_files_only") if hub.get(k) is not None}
    return snapshot_download(str(name_or_path), **options)


class MultiTaskModel(PreTrainedModel):
    """A saved MultiTaskSentenceTransformer behind transformers' AutoModel: predict / predict_tags / encode / run and
    forward are the project model's; save_pretrained writes the same folder again."""
    config_class = MultiTaskConfig
    base_model_prefix = "multitask"

    def __init__(self, config, multitask=None):
        super().__init__(config)
        self.multitask = multitask

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, **kwargs):
        """Load a saved folder (or a Hub repo id) with MultiTaskSentenceTransformer.from_pretrained, in eval mode.
        device_map (a device name, e.g. 'cuda') places it; other transformers options are not used."""
        folder = _local_folder(pretrained_model_name_or_path, **kwargs)
        device = kwargs.get("device_map") if isinstance(kwargs.get("device_map"), str) else None
        multitask = MultiTaskSentenceTransformer.from_pretrained(folder, device=device)
        model = cls(config if isinstance(config, MultiTaskConfig) else MultiTaskConfig.from_pretrained(folder),
                    multitask)
        return model.eval()

    def save_pretrained(self, save_directory, **kwargs):
        """The whole folder again (MultiTaskSentenceTransformer.save_pretrained): it loads as this was loaded."""
        return self.multitask.save_pretrained(save_directory)

    def forward(self, *args, **kwargs):
        return self.multitask(*args, **kwargs)

    def predict(self, texts, batch_size=32, precision="auto", tasks=None):
        return self.multitask.predict(texts, batch_size=batch_size, precision=precision, tasks=tasks)

    def predict_tags(self, words_batch, batch_size=32, precision="auto", task=None):
        return self.multitask.predict_tags(words_batch, batch_size=batch_size, precision=precision, task=task)

    def encode(self, texts, batch_size=32, normalize=False, convert_to="numpy", precision="auto"):
        return self.multitask.encode(texts, batch_size=batch_size, normalize=normalize, convert_to=convert_to,
                                     precision=precision)

    def run(self, rows, outputs=None, batch_size=32, precision="auto"):
        return self.multitask.run(rows, outputs, batch_size, precision)

    @property
    def tasks(self):
        return self.multitask.tasks
