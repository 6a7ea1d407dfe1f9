"""Configuration schemas, YAML loading and dotted overrides.

Every setting and its default lives here, once. A config is validated when it is loaded and is
frozen afterwards; unknown keys, wrong types and out-of-range values are rejected with a message
that names the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from han.errors import ConfigError


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitNames(_Schema):
    """Names of the splits in the source data. A missing validation or test split is carved from train."""

    train: str = "train"
    validation: str | None = "validation"
    test: str | None = "test"


class DataConfig(_Schema):
    """Where the labelled documents come from and which columns hold text and label."""

    # A file (.csv .tsv .jsonl .json .parquet), a folder of class sub-folders of text files,
    # a folder laid out like a hub dataset repository, "package:NAME/sub/dir" (a folder inside an
    # installed Python package), or a Hugging Face hub dataset id.
    source: str
    name: str | None = None  # hub dataset config name
    revision: str | None = None  # hub revision (branch, tag or commit)
    text_column: str | list[str] = "text"
    text_separator: str = "\n\n"  # joins several text columns
    label_column: str = "label"
    split_column: str | None = None  # a column that names each row's split, for one-file datasets
    splits: SplitNames = SplitNames()
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)

    @property
    def text_columns(self) -> list[str]:
        return [self.text_column] if isinstance(self.text_column, str) else list(self.text_column)


class PreprocessConfig(_Schema):
    """Sentence splitting, tokenisation, caps and vocabulary."""

    lang: str = "en"
    spacy_model: str | None = None  # an installed pipeline; default: spacy.blank(lang) + sentencizer
    lowercase: bool = True
    max_sentences: int = Field(40, ge=1)
    max_words: int = Field(50, ge=1)
    min_count: int = Field(2, ge=1)
    max_vocab: int = Field(50_000, ge=3)
    pipe_batch_size: int = Field(256, ge=1)


class EmbeddingsConfig(_Schema):
    """Initial word vectors: word2vec trained on the training text, a vectors file, or random."""

    source: Literal["word2vec", "file", "random"] = "word2vec"
    dim: int = Field(200, ge=1)
    algorithm: Literal["cbow", "skipgram"] = "cbow"
    window: int = Field(5, ge=1)
    epochs: int = Field(5, ge=1)
    min_count: int = Field(2, ge=1)
    negative: int = Field(5, ge=0)
    # gensim is only deterministic with one worker; more workers are faster but not reproducible.
    workers: int = Field(1, ge=1)
    path: str | None = None  # vectors file, for source: file
    format: Literal["word2vec", "word2vec_binary", "glove"] = "word2vec"

    @model_validator(mode="after")
    def _path_for_file(self) -> EmbeddingsConfig:
        if self.source == "file" and not self.path:
            raise ValueError("embeddings.source is 'file' but embeddings.path is not set")
        return self


class ModelConfig(_Schema):
    """Sizes of the hierarchical attention network."""

    word_hidden: int = Field(50, ge=1)  # per direction
    sentence_hidden: int = Field(50, ge=1)  # per direction
    attention_dim: int = Field(100, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    freeze_embeddings: bool = False
    # GRU implementation: "fused" is the lock-step CPU kernel (han/packed.py), "torch" is nn.GRU on
    # packed sequences (cuDNN on CUDA); "auto" picks fused on CPU and torch on CUDA. Same weights.
    rnn: Literal["auto", "fused", "torch"] = "auto"


class TrainConfig(_Schema):
    """Optimisation, schedule and early stopping."""

    optimizer: Literal["adam", "sgd"] = "adam"
    # adam only: update just the embedding rows each batch uses (han.optim.LazyAdam, SparseAdam's
    # semantics for the embedding); much faster with large vocabularies. False: plain dense Adam.
    lazy_embedding_updates: bool = True
    lr: float = Field(2e-3, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # sgd only
    weight_decay: float = Field(0.0, ge=0.0)
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    max_epochs: int = Field(10, ge=1)
    grad_clip: float | None = Field(5.0, gt=0.0)
    scheduler: Literal["constant", "linear", "cosine"] = "cosine"
    warmup_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    early_stopping_metric: Literal["macro_f1", "accuracy", "loss"] = "macro_f1"
    early_stopping_patience: int = Field(3, ge=1)
    threads: int | None = Field(None, ge=1)  # torch CPU threads; default: all cores


class Config(_Schema):
    """A whole run: data, preprocessing, embeddings, model and training."""

    seed: int = 0
    # Where training and prediction run (han/device.py): "auto" is CUDA when present (the local rank's
    # GPU under torchrun), else CPU; or "cpu", "cuda", "cuda:N". The code never assumes CUDA.
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    # Autocast for training and prediction: "bf16" (CUDA, or CPUs with bf16 support), "fp16" (CUDA
    # only, with loss scaling); weights and optimizer state stay fp32. The CPU GRU kernel runs in fp32.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    data: DataConfig
    preprocess: PreprocessConfig = PreprocessConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key.path=value (e.g. train.lr=0.01)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with dotted `key.path=value` overrides applied (values parsed as YAML)."""
    result = yaml.safe_load(yaml.safe_dump(data))  # deep copy of plain data
    for item in overrides:
        keys, value = _parse_override(item)
        node = result
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                where = ".".join(keys[: depth + 1])
                raise ConfigError(f"override {item!r}: {where} is a value, not a section")
            node = child
        node[keys[-1]] = value
    return result


def _format_validation_error(source: str, error: ValidationError) -> str:
    parts = []
    for detail in error.errors():
        location = ".".join(str(part) for part in detail["loc"]) or "(top level)"
        message = detail["msg"]
        if detail["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see han/config.py for the settings)"
        elif detail["type"] == "missing":
            message = "required key is missing"
        elif "input" in detail and not isinstance(detail["input"], (dict, list)):
            message = f"{message} (got {detail['input']!r})"
        parts.append(f"{location}: {message}")
    return f"{source}: " + "; ".join(parts)


def config_from_dict(data: Any, source: str = "config", overrides: list[str] | None = None) -> Config:
    """Validate plain data (as read from YAML) plus overrides into a frozen `Config`."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of sections (data, preprocess, ...), got {type(data).__name__}"
        )
    data = apply_overrides(data, overrides or [])
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(source, error)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file, apply dotted overrides and validate the result."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{path}: not valid YAML ({first_line})") from None
    return config_from_dict(data if data is not None else {}, str(path), overrides)


def config_to_yaml(config: Config) -> str:
    """The resolved config (every default filled in) as YAML text."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
