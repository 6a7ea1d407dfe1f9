"""Configuration schemas, YAML loading and dotted overrides.

Every setting and its default lives here, once. A config is validated when it is loaded and is
frozen afterwards; unknown keys, wrong types and out-of-range values are rejected with a message
that names the file and the key.

Hostile input is refused the same way: YAML is read with a safe loader that also refuses duplicate
keys and nesting deeper than `MAX_NESTING`; every float must be finite and within float32's range; true/false
is never taken for a number nor a number for true/false; seeds are 32-bit; model sizes are bounded.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from han.errors import ConfigError
from han.util.files import read_user_file
from han.util.paths import absolute_path, looks_like_path, path_exists
from han.util.yaml_strict import MAX_NESTING, DuplicateKey, NestingTooDeep, check_nesting, load_yaml, yaml_problem

# Levels of nesting a config file, the data it is validated from, or an override value may have.
# han's settings need 4 (data.source as a mapping of lists); the bound keeps a hostile file from
# exhausting the stack (or memory) before validation can name the problem.
MAX_SEED = 2**32 - 1  # seeds are what NumPy's legacy seeding accepts: integers in 0..2**32-1
MAX_MODEL_SIZE = 4096  # upper bound of the hidden, attention and embedding sizes (the paper uses 50-200)
# The largest float32 (numpy.finfo(numpy.float32).max): rates, decays and clips become float32 tensors or
# torch optimizer values, where a larger number overflows; every float setting is bounded by it.
FLOAT32_MAX = 3.4028234663852886e38
# Bytes a config or search space file may have: they are a few KiB (1 MiB holds thousands of file names),
# and they are read whole, so /dev/zero or a mistaken multi-gigabyte file is refused before it is read.
MAX_CONFIG_BYTES = 1 << 20


def _check_seed(value: int) -> int:
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"a seed must be an integer from 0 to 2**32 - 1 = {MAX_SEED}")
    return value


Seed = Annotated[int, AfterValidator(_check_seed)]


def _scalar_types(annotation: Any) -> set[Any]:
    """The types a field's annotation admits, unions flattened (`int | None` -> {int, NoneType})."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set().union(*(_scalar_types(arg) for arg in typing.get_args(annotation)))
    return {annotation}


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_number_mixup(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads true as 1 and 1 as true; a config meaning one and saying the other is refused.
        field = cls.model_fields.get(info.field_name or "")
        if field is None or value is None:
            return value
        admitted = _scalar_types(field.annotation)
        if admitted & {bool} and not admitted & {int, float} and not isinstance(value, bool):
            raise ValueError("expected true or false")
        if admitted & {int, float} and bool not in admitted and isinstance(value, bool):
            raise ValueError("expected a number, not true/false")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _within_float32(cls, value: Any) -> Any:
        # finite is not enough: torch turns train.lr=1e39 into float32 and fails mid-training ("overflow").
        if isinstance(value, float) and abs(value) > FLOAT32_MAX:
            raise ValueError(
                f"must be at most {FLOAT32_MAX:.7g} in magnitude (float32's largest: han computes in float32)"
            )
        return value


class SplitNames(_Schema):
    """Names of the splits in the source data. A missing validation or test split is carved from train."""

    train: str = "train"  # the split training reads
    validation: str | None = "validation"  # null, or a split the data lacks: carved out of train
    test: str | None = "test"  # null, or a split the data lacks: carved out of train (before validation)


class DataConfig(_Schema):
    """Where the labelled documents come from, which columns hold text and label, and what to do with bad rows."""

    # One of:
    # - a table file (.csv .tsv .jsonl .json .parquet) or a glob of such files ("data/*.csv");
    # - a list of files/globs, read one after the other as the training data (or split by split_column);
    # - a mapping of split name -> file, glob or list of files ({train: "train-*.csv", test: test.csv});
    # - a folder of class sub-folders of text files (<label>/<doc>.txt, optionally under train/ and test/);
    # - a folder laid out like a hub dataset repository (data/*.parquet, README.md with a configs: block);
    # - "package:NAME/sub/dir" (a folder inside an installed Python package);
    # - a Hugging Face hub dataset id, read with datasets.load_dataset (no remote code; the datasets
    #   cache is used, and only the cache when HF_DATASETS_OFFLINE=1).
    # A relative path (here, in embeddings.path and extra_text.files) is read from the config file's folder, one
    # in a command-line override from the current folder; han saves it absolute (docs/guides/configs.md).
    source: str | list[str] | dict[str, str | list[str]]
    name: str | None = None  # hub dataset config name
    revision: str | None = None  # hub revision (branch, tag or commit)
    text_column: str | list[str] = Field("text", min_length=1)  # a column, or a non-empty list of columns
    text_separator: str = "\n\n"  # joins several text columns (empty parts are skipped)
    label_column: str = "label"  # the column holding each document's label (task multilabel: its labels)
    # task: multilabel only. A label column holding several labels as text joined by this separator
    # ("earn;acq"); a list-valued column (JSONL/Parquet lists, hub Sequence(ClassLabel)) needs none.
    label_separator: str | None = Field(None, min_length=1)
    # task: multilabel only: one 0/1 column per label (the column names are the label names), in place of label_column.
    label_columns: list[str] | None = Field(None, min_length=1)
    # task: multilabel only: a document without any label is kept (it teaches "none of these") instead of
    # being a bad row.
    allow_empty_labels: bool = False
    # task: multilabel only: labels with fewer training documents than this are removed from every
    # document (and from the label set); 1 keeps every label. Rare labels are listed in the summary either way.
    min_label_count: int = Field(1, ge=1)
    delimiter: str | None = Field(
        None, min_length=1, max_length=1
    )  # CSV field delimiter (one character); default "," for .csv and tab for .tsv
    split_column: str | None = None  # a column that names each row's split, for one-file datasets
    splits: SplitNames = SplitNames()
    # Shares carved out of train (stratified, seeded) for a split the data lacks: test first, then validation
    # from what is left.
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)  # see validation_fraction
    # Label order (class ids) fixed by hand; default: the ClassLabel names, else sorted (numerically if numbers).
    labels: list[str] | None = Field(None, min_length=2)
    # Rows with empty/whitespace-only text, without a label, or with no tokens after preprocessing:
    # "error" stops with a message naming the rows; "drop" removes them and counts them by reason.
    bad_rows: Literal["error", "drop"] = "error"
    # Validation/test rows whose label training never saw (or that is not in data.labels): same choice.
    unseen_labels: Literal["error", "drop"] = "error"

    @property
    def text_columns(self) -> list[str]:
        return [self.text_column] if isinstance(self.text_column, str) else list(self.text_column)

    @property
    def output_label_separator(self) -> str:
        """What joins a document's labels in han's CSV output (task multilabel): `label_separator`, else ";"."""
        return self.label_separator or ";"

    @property
    def label_source_columns(self) -> list[str]:
        """The columns labels are read from: `label_columns` when set, else `label_column`."""
        return list(self.label_columns) if self.label_columns else [self.label_column]

    @model_validator(mode="after")
    def _check_source(self) -> DataConfig:
        if isinstance(self.source, (list, dict)) and not self.source:
            raise ValueError("data.source is empty")
        if isinstance(self.source, dict) and self.split_column:
            raise ValueError("data.source names files per split, so data.split_column cannot be used too")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("data.labels has duplicates")
        if self.label_columns is not None and len(set(self.label_columns)) != len(self.label_columns):
            raise ValueError("data.label_columns has duplicates")
        return self


class PreprocessConfig(_Schema):
    """Sentence splitting, tokenisation, caps and vocabulary."""

    lang: str = "en"  # spaCy language of the blank pipeline (sentencizer and tokenizer)
    spacy_model: str | None = None  # an installed pipeline; default: spacy.blank(lang) + sentencizer
    lowercase: bool = True  # tokens are lowercased before they are counted and looked up
    max_sentences: int = Field(40, ge=1)  # sentences of a document the model reads; later ones are cut
    max_words: int = Field(50, ge=1)  # words of a sentence the model reads; later ones are cut
    # Characters of a document read before segmentation; the rest is dropped (and counted), so a
    # huge document costs bounded time and memory. Far above max_sentences * max_words words.
    max_chars: int = Field(100_000, ge=1, le=10_000_000)
    min_count: int = Field(2, ge=1)  # occurrences in the training split a word needs to enter the vocabulary
    max_vocab: int = Field(50_000, ge=3)  # vocabulary size, padding and unknown-word ids included; most frequent first
    pipe_batch_size: int = Field(256, ge=1)  # documents per spaCy `nlp.pipe` batch (speed only)
    # Worker processes for tokenisation; default: every core for inputs of 2,000+ documents, else 1.
    # The output does not depend on it.
    workers: int | None = Field(None, ge=1)
    # Reuse the run directory's preprocessing when its input fingerprint and settings are unchanged.
    cache: bool = True


class ExtraTextConfig(_Schema):
    """Text word2vec reads besides the training split's (embeddings.source word2vec only; never any labels)."""

    # The text of these splits of the data (their labels are never read): more in-domain text for the vectors.
    # With test, test figures are transductive: the test text, not its labels, was seen before testing.
    splits: list[Literal["validation", "test"]] = Field([], max_length=2)
    # Unlabelled text files (paths or globs), read like `han predict`'s input: .txt one document a line, or
    # CSV/TSV/JSONL/Parquet with data.text_column. Read after the splits, cut at preprocess.max_chars, uncapped.
    files: list[str] = Field([], max_length=1000)

    @field_validator("splits")
    @classmethod
    def _once_each(cls, splits: list[str]) -> list[str]:
        if len(set(splits)) != len(splits):
            raise ValueError(f"a split is named twice: {splits}")
        return splits


class EmbeddingsConfig(_Schema):
    """Initial word vectors: word2vec trained on the training text, a vectors file, or random."""

    # word2vec: trained by gensim in `han preprocess` on the training text (and extra_text); file: read from path;
    # random: random vectors.
    source: Literal["word2vec", "file", "random"] = "word2vec"
    dim: int = Field(200, ge=1, le=MAX_MODEL_SIZE)  # vector size (source file: must match the file's)
    algorithm: Literal["cbow", "skipgram"] = "cbow"  # word2vec's training algorithm
    window: int = Field(5, ge=1)  # word2vec: words either side of a word that form its context
    # Passes over the training text; auto: enough to train on ~20M words, 1 to 10 (han/text/embeddings.py:
    # 10 for corpora under 2M training words, fewer for larger ones).
    epochs: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    min_count: int = Field(2, ge=1)  # word2vec: occurrences a word needs to get a vector of its own
    negative: int = Field(5, ge=0)  # word2vec: negative samples per word
    # word2vec threads; default: every core (faster, but gensim is then not bit-for-bit repeatable:
    # set 1 for identical vectors from identical input; docs/guides/reproducibility.md).
    workers: int | None = Field(None, ge=1)
    path: str | None = None  # vectors file, for source: file
    # word2vec: the text format (fastText's .vec files too); word2vec_binary; glove: text without a header line;
    # fasttext_binary: a fastText .bin model, whose subword n-grams give vectors to words the file does not list
    format: Literal["word2vec", "word2vec_binary", "glove", "fasttext_binary"] = "word2vec"
    # source word2vec: train gensim FastText instead (word2vec that also learns character 3-6-grams, so rare and
    # misspelt words get vectors from their pieces; Bojanowski et al. 2017). Its n-gram table is gensim's 2M buckets
    # x dim floats: 1.6 GB at dim 200, while preprocessing.
    subwords: bool = False
    extra_text: ExtraTextConfig = ExtraTextConfig()

    @model_validator(mode="after")
    def _path_for_file(self) -> EmbeddingsConfig:
        if self.source == "file" and not self.path:
            raise ValueError("embeddings.source is 'file' but embeddings.path is not set")
        for name, used in (("subwords", self.subwords), ("extra_text", self.extra_text != ExtraTextConfig())):
            if used and self.source != "word2vec":
                raise ValueError(
                    f"embeddings.{name} is for vectors han trains (embeddings.source word2vec), not {self.source}"
                )
        return self


ModelKind = Literal["han", "han_avg", "han_max", "rnn", "cnn", "mean", "linear"]


class ModelConfig(_Schema):
    """Which network (`kind`) and its sizes. Settings a kind does not use are ignored by it."""

    # han: the hierarchical attention network (HN-ATT); han_avg / han_max: the same hierarchy with mean /
    # max pooling instead of attention at both levels (the paper's HN-AVE / HN-MAX); rnn: one recurrent
    # network over the whole (capped) token sequence; cnn: Kim (2014) convolutions with max-over-time;
    # mean: the average word vector and a linear layer (fastText-style); linear: TF-IDF n-grams with a
    # linear SVM or logistic regression (scikit-learn). See han/models/build.py.
    kind: ModelKind = "han"
    cell: Literal["gru", "lstm", "rnn"] = "gru"  # recurrent kinds (han*, rnn); rnn is the Elman cell
    bidirectional: bool = True  # kind rnn (the hierarchical kinds are always bidirectional)
    pooling: Literal["last", "max", "attention"] = "attention"  # kind rnn: how token states become a document
    # Bounded by MAX_MODEL_SIZE; han.models.build also checks the whole network fits in the available memory.
    word_hidden: int = Field(50, ge=1, le=MAX_MODEL_SIZE)  # per direction; for kind rnn, the document RNN
    sentence_hidden: int = Field(50, ge=1, le=MAX_MODEL_SIZE)  # per direction
    attention_dim: int = Field(100, ge=1, le=MAX_MODEL_SIZE)  # size of the attention's hidden layer (context vector)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)  # dropout probability of the network's layers
    # Kinds han*: in training, each distinct word of a batch is left out (its vector zeroed everywhere in the
    # batch) with this probability: embedding dropout by word type (Gal & Ghahramani 2016). The default raised
    # validation accuracy on the shipped corpora (docs/results/long-documents.md).
    word_dropout: float = Field(0.2, ge=0.0, lt=1.0)
    freeze_embeddings: bool = False  # keep the initial word vectors fixed in training
    # GRU implementation: "fused" is the lock-step CPU kernel (han/models/packed.py), "torch" is nn.GRU on
    # packed sequences (cuDNN on CUDA); "auto" picks fused on CPU and torch on CUDA. Same weights.
    # Only a bidirectional GRU has the fused kernel; other cells always run through torch.
    rnn: Literal["auto", "fused", "torch"] = "auto"
    cnn_widths: list[Annotated[int, Field(ge=1, le=64)]] = Field([3, 4, 5], min_length=1, max_length=16)  # kind cnn
    cnn_maps: int = Field(100, ge=1, le=MAX_MODEL_SIZE)  # kind cnn: feature maps per filter width
    # kind linear: TF-IDF of word n-grams up to linear_ngrams long (train-split vocabulary, smoothed idf,
    # L2-normalised rows) and a linear SVM (probabilities: softmax of the margins, not calibrated) or
    # logistic regression, with inverse regularisation strength linear_c.
    linear_classifier: Literal["svm", "logistic"] = "svm"
    # kind linear (and wide_weights fitted): see linear_classifier; auto: 1, 0.3 or 3, whichever scores best on
    # validation (early stopping's metric), as each corpus wants its own (docs/results/wide-and-deep.md)
    linear_c: Annotated[float, Field(gt=0.0)] | Literal["auto"] = "auto"
    linear_ngrams: int = Field(2, ge=1, le=3)  # kind linear and the wide channel: longest n-gram
    linear_sublinear_tf: bool = False  # kind linear and the wide channel: 1 + log(tf) in place of tf
    # kind linear and the wide channel: an n-gram is a feature only if at least this many training documents hold it
    linear_min_df: int = Field(2, ge=1)
    # all: every token; words: tokens of 2+ word characters (scikit-learn's default token pattern)
    linear_tokens: Literal["all", "words"] = "all"
    # Wide and deep (kinds han, han_avg, han_max): class scores linear in the document's TF-IDF n-grams (the
    # linear kind's features: linear_ngrams, linear_tokens, linear_sublinear_tf) added to the network's logits
    # (han/models/ngrams.py). wide_weights fitted: the linear kind's classifier (linear_classifier, linear_c)
    # fitted on the training split before training and held fixed, the network's output layer starting at zero, so
    # the starting model is the linear kind, scored on validation as epoch 0: a run is never behind it there, and
    # the network learns what the n-grams miss; learnt: from zero with the network, at train.wide_lr (it trailed
    # the linear kind where many classes are rare). On by default: it raised validation accuracy on every
    # single-label corpus measured (docs/results/wide-and-deep.md); false leaves every decision to the attention path.
    wide: bool = True
    wide_weights: Literal["learnt", "fitted"] = "fitted"  # how the wide channel gets its weights: see wide
    # wide_weights fitted: the channel's class scores of the training documents while the network learns.
    # in_sample: the fitted classifier's own (it fits those documents almost perfectly); out_of_fold: each training
    # document's from a classifier fitted on the other 4 of 5 folds of the training split (stacking), so the
    # network learns from the classifier's real errors; calibrated: out_of_fold, and the channel (its weights, the
    # starting class biases, the training scores) multiplied by the factor that best fits the training labels from
    # the out-of-fold scores, so the sum starts as sure as the classifier deserves. Validation, test and prediction
    # read the classifier fitted on the whole training split. Costs 5 more fits (docs/results/wide-and-deep.md).
    # Applies to a single network with a fitted channel (wide true, wide_weights fitted, ensemble 1); else unused.
    wide_training_scores: Literal["in_sample", "out_of_fold", "calibrated"] = "in_sample"
    # Gradient-trained kinds: this many networks of the kind, initialised one after another from the seed and
    # trained side by side, each on its own loss and its own order of the epoch's batches; they score as the mean
    # of their logits and attention (han/models/ensemble.py). Each costs one network's training and scoring time and memory.
    ensemble: int = Field(1, ge=1, le=32)

    @model_validator(mode="after")
    def _check_ensemble(self) -> ModelConfig:
        if self.ensemble > 1 and self.kind == "linear":
            raise ValueError(
                "model.ensemble applies to the networks han trains; kind linear is one fitted model (set 1)"
            )
        return self


class TrainConfig(_Schema):
    """Optimisation, schedule and early stopping."""

    optimizer: Literal["adam", "sgd"] = "adam"  # adam: LazyAdam (see lazy_embedding_updates); sgd with momentum
    # adam only: update just the embedding rows each batch uses (han.training.optim.LazyAdam, SparseAdam's
    # semantics for the embedding); much faster with large vocabularies. False: plain dense Adam.
    lazy_embedding_updates: bool = True
    lr: float = Field(2e-3, gt=0.0)  # peak learning rate (after warm-up, before the schedule's decay)
    # The wide channel's weights (model.wide_weights: learnt), same schedule. auto: 1 / the steps of an epoch
    # (ceil(training documents / batch_size); han.training.optim.wide_learning_rate): Adam moves a weight about the
    # learning rate a step, so an n-gram in every batch moves about 1 an epoch whatever the corpus's size (that
    # reasoning is Adam's: with optimizer sgd, give a number).
    wide_lr: Annotated[float, Field(gt=0.0)] | Literal["auto"] = "auto"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # sgd only
    weight_decay: float = Field(0.0, ge=0.0)  # L2 penalty added to the gradient (LazyAdam: of the rows a batch updates)
    batch_size: int = Field(64, ge=1)  # documents per training step (under torchrun: the global batch)
    eval_batch_size: int = Field(512, ge=1)  # documents per scoring batch, at most (and at most 16,384 tokens)
    max_epochs: int = Field(10, ge=1)  # passes over the training split, at most (early stopping may end sooner)
    grad_clip: float | None = Field(5.0, gt=0.0)  # largest gradient norm; null: no clipping
    scheduler: Literal["constant", "linear", "cosine"] = "cosine"  # learning-rate decay after the warm-up, to 0
    warmup_fraction: float = Field(0.05, ge=0.0, lt=1.0)  # share of the steps with a linear warm-up from 0
    # Default macro_f1; micro_f1 for task multilabel (there, accuracy is exact match: every label right).
    early_stopping_metric: Literal["macro_f1", "micro_f1", "accuracy", "loss"] = "macro_f1"
    early_stopping_patience: int = Field(3, ge=1)  # epochs without a better validation metric before stopping
    # After training a network, fit han's linear kind on the same run's n-gram features (seconds) and record its
    # validation score beside the network's (the manifest's train.linear_kind, metrics.json's validation): a network
    # behind the simplest model in the toolbox is said, not hidden. With model.wide_weights fitted it is epoch 0.
    linear_baseline: bool = True
    # model.wide_weights fitted: how a network epoch must beat epoch 0 (the linear kind) on validation to be kept
    # instead. significantly: ahead on early_stopping_metric in a paired bootstrap over the validation documents
    # (two-sided, 5%; han.evaluation.significance), so a small split's noise does not pick the network; at_all: ahead.
    beat_linear_start: Literal["significantly", "at_all"] = "significantly"
    threads: int | None = Field(None, ge=1)  # torch CPU threads; default: all cores
    # A checkpoint (han/training/checkpoint.py) every this many steps and at each epoch end; `--resume` continues from it.
    checkpoint_every_steps: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1)  # the newest this many are kept
    # task multiclass: weight of each class in the cross-entropy, from the training split's counts (n_c of N
    # documents, C classes present; han/training/weighting.py). none: 1; balanced: N / (C * n_c) (scikit-learn's);
    # sqrt: sqrt(N / (C * n_c)) scaled so the mean weight over training documents is 1, as balanced's already is.
    # A class absent from training weighs 0. Kind linear passes them as scikit-learn's class_weight; the
    # validation loss stays unweighted. See docs/guides/imbalance.md.
    class_weight: Literal["none", "balanced", "sqrt"] = "none"
    # task multiclass: the cross-entropy's target puts this share of its mass evenly on every class (PyTorch's
    # label_smoothing), so the loss stops rewarding ever larger margins on documents already learnt; 0: off.
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    # task multilabel: weight of each label's positive documents in the binary cross-entropy. none: 1;
    # balanced: negatives / positives in the training split (capped at 100); sqrt: its square root.
    positive_weight: Literal["none", "sqrt", "balanced"] = "none"
    # task multilabel: decision thresholds chosen on the validation split after training (han/evaluation/thresholds.py):
    # one for every label (global), or one per label (per_label) for labels with at least
    # threshold_min_positives validation documents, the global one for the others.
    thresholds: Literal["global", "per_label"] = "per_label"
    threshold_min_positives: int = Field(5, ge=1)  # task multilabel: see thresholds


class PredictConfig(_Schema):
    """How predictions are made from the model's scores."""

    # task multilabel: a document whose labels all fall below their thresholds gets its most probable label.
    at_least_one: bool = False


MULTILABEL_ONLY = {
    "data": ("label_separator", "label_columns", "allow_empty_labels", "min_label_count"),
    "train": ("positive_weight", "thresholds", "threshold_min_positives"),
    "predict": ("at_least_one",),
}


class Config(_Schema):
    """A whole run: data, preprocessing, embeddings, model and training."""

    seed: Seed = 0  # 0..2**32-1
    # Where training and prediction run (han/util/device.py): "auto" is CUDA when present (the local rank's
    # GPU under torchrun), else CPU; or "cpu", "cuda", "cuda:N". The code never assumes CUDA.
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    # Autocast for training and prediction: "bf16" (CUDA, or CPUs with bf16 support), "fp16" (CUDA
    # only, with loss scaling); weights and optimizer state stay fp32. The CPU GRU kernel runs in fp32.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # Experiment tracking of `han run` (han/workflows/tracking.py): "mlflow" logs the config, per-epoch and final
    # metrics, the manifest and the model to the tracking server named by MLFLOW_TRACKING_URI (default a
    # local mlruns/ folder), under `tracking_experiment`.
    tracking: Literal["none", "mlflow"] = "none"
    tracking_experiment: str = Field("han", min_length=1, max_length=200)  # the MLflow experiment runs are logged to
    # multiclass: one label per document (softmax); multilabel: any number of labels per document
    # (sigmoid per label, binary cross-entropy, thresholds chosen on validation).
    task: Literal["multiclass", "multilabel"] = "multiclass"
    data: DataConfig
    preprocess: PreprocessConfig = PreprocessConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    predict: PredictConfig = PredictConfig()

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    @model_validator(mode="before")
    @classmethod
    def _multilabel_stopping_metric(cls, data: Any) -> Any:
        # The default stopping metric follows the task: micro-F1 for multilabel, unless the config names one.
        if isinstance(data, dict) and data.get("task") == "multilabel":
            train = data.get("train")
            if train is None or (isinstance(train, dict) and "early_stopping_metric" not in train):
                data = {**data, "train": {**(train or {}), "early_stopping_metric": "micro_f1"}}
        return data

    @model_validator(mode="after")
    def _multilabel_settings(self) -> Config:
        if self.multilabel:
            separator = self.data.output_label_separator
            joined = [name for name in self.data.labels or () if separator in name]
            if joined:
                raise ValueError(
                    f"data.labels: {joined[0]!r} holds {separator!r}, which joins a document's labels in han's CSV "
                    "output; rename the label, or set data.label_separator to text no label holds"
                )
            if self.train.class_weight != "none":
                raise ValueError(
                    "train.class_weight applies to task: multiclass; for task multilabel weight each label's "
                    "positives with train.positive_weight"
                )
            if self.train.label_smoothing:
                raise ValueError("train.label_smoothing applies to task: multiclass; set 0 for task multilabel")
            return self
        for section, names in MULTILABEL_ONLY.items():
            schema = getattr(self, section)
            for name in names:
                if getattr(schema, name) != type(schema).model_fields[name].default:
                    raise ValueError(f"{section}.{name} applies to task: multilabel (this config's task is multiclass)")
        return self


class DocumentReportConfig(_Schema):
    """Which documents an attention report shows, in which order (`han report`)."""

    # input: input order; confidence: lowest top probability first (multi-label: smallest margin between a
    # label's probability and its threshold first); misclassified: misclassified (multi-label: predicted set
    # differs from the true set) first, then lowest confidence first (needs true labels).
    # Multi-label: true_label / predicted_label keep documents whose true / predicted set holds that label.
    sort: Literal["input", "confidence", "misclassified"] = "input"
    only: Literal["all", "misclassified", "correct"] = "all"  # misclassified/correct need true labels
    true_label: str | None = None  # keep documents of this true label
    predicted_label: str | None = None  # keep documents predicted as this label
    limit: int | None = Field(None, ge=1)  # at most this many documents, after filtering and sorting


class CorpusReportConfig(_Schema):
    """Attention statistics of a whole split and the faithfulness check (`han corpus-report`)."""

    group_by: Literal["true", "predicted"] = "true"  # class of a document: its true label, or the prediction
    top_words: int = Field(15, ge=1, le=10_000)  # words listed per class
    min_word_count: int = Field(5, ge=1)  # occurrences a word needs in a class to be listed
    words: list[
        str
    ] = []  # words whose weight distribution is plotted; default: the top word of the first and last class
    positions: int = Field(10, ge=1, le=1000)  # sentence positions shown; later sentences count in the last one
    bins: int = Field(20, ge=2, le=1000)  # histogram bins
    faithfulness_documents: int = Field(1000, ge=0)  # documents sampled for the faithfulness check; 0 skips it
    seed: Seed = 0  # sampling of documents and of the random sentence removed; 0..2**32-1


def validate_options(schema: type[_Schema], values: dict[str, Any], source: str) -> Any:
    """Validate command options (None means "use the default") into a frozen schema; errors name the option."""
    try:
        return schema.model_validate({key: value for key, value in values.items() if value is not None})
    except ValidationError as error:
        raise ConfigError(_format_validation_error(source, error)) from None


# Settings that change how fast preprocessing runs but never its output: they are left out of the
# preprocessing cache key and of the "same preprocessing" check before training.
OUTPUT_NEUTRAL_SETTINGS = {"preprocess": {"workers", "pipe_batch_size", "cache"}}


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key.path=value (e.g. train.lr=0.01)")
    name = key.strip()
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except (NestingTooDeep, RecursionError):
        raise ConfigError(
            f"override {name}: the value is nested more than {MAX_NESTING} levels deep; han's settings need at most 4"
        ) from None
    except DuplicateKey as error:
        raise ConfigError(f"override {name}: key {error.key!r} appears twice in the value; keep one") from None
    except yaml.YAMLError:
        value = raw
    return name.split("."), value


def _absolute_files(files: Any, base: Path) -> Any:
    """A path or glob, or a list of them, made absolute against `base` (values of other types are kept)."""
    if isinstance(files, str):
        return absolute_path(files, base)
    if isinstance(files, list):
        return [absolute_path(item, base) if isinstance(item, str) else item for item in files]
    return files


def _absolute_source(source: Any, base: Path) -> Any:
    """data.source with its local paths made absolute against `base`; a hub id or `package:` name is kept."""
    if isinstance(source, dict):  # split -> files or globs (never hub ids)
        return {split: _absolute_files(files, base) for split, files in source.items()}
    if isinstance(source, str) and (
        source.startswith("package:") or not (looks_like_path(source) or path_exists(base / source))
    ):
        return source  # a hub dataset id (imdb, user/dataset), unless a file or folder of that name is there
    return _absolute_files(source, base)


def resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """A copy of config data whose relative file paths are made absolute against the folder `base`.

    The settings that name files: data.source (see `han.util.paths.looks_like_path` for a hub id),
    embeddings.path, embeddings.extra_text.files and a preprocess.spacy_model given as a folder. Absolute paths
    and ~ are kept; values of the wrong type are left for validation to name.
    """
    result = dict(data)

    def section(*keys: str) -> dict[str, Any] | None:
        node: Any = result
        for key in keys:
            child = node.get(key) if isinstance(node, dict) else None
            if not isinstance(child, dict):
                return None
            node[key] = child = dict(child)
            node = child
        return node

    if (data_section := section("data")) is not None and "source" in data_section:
        data_section["source"] = _absolute_source(data_section["source"], base)
    embeddings = section("embeddings")
    if embeddings is not None and isinstance(embeddings.get("path"), str):
        embeddings["path"] = absolute_path(embeddings["path"], base)
    extra_text = section("embeddings", "extra_text")
    if extra_text is not None and isinstance(extra_text.get("files"), list):
        extra_text["files"] = _absolute_files(extra_text["files"], base)
    preprocess = section("preprocess")
    model = preprocess.get("spacy_model") if preprocess is not None else None
    if preprocess is not None and isinstance(model, str) and (model.startswith(".") or "/" in model):
        preprocess["spacy_model"] = absolute_path(model, base)  # a pipeline folder; an installed name has no /
    return result


def apply_overrides(data: dict[str, Any], overrides: list[str], base: Path | None = None) -> dict[str, Any]:
    """Return a copy of `data` with dotted `key.path=value` overrides applied (values parsed as YAML).

    With `base`, the file paths an override sets are made absolute against that folder (`resolve_paths`).
    """
    result = yaml.safe_load(yaml.safe_dump(data))  # deep copy of plain data
    for item in overrides:
        keys, value = _parse_override(item)
        if base is not None:
            nested = value
            for key in reversed(keys):
                nested = {key: nested}
            nested = resolve_paths(nested, base)
            for key in keys:
                nested = nested[key]
            value = nested
        node = result
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                where = ".".join(keys[: depth + 1])
                raise ConfigError(f"override {item!r}: {where} is a value, not a section")
            node = child
        node[keys[-1]] = value
    return result


def _shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


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
            message = f"{message.removeprefix('Value error, ')} (got {_shown(detail['input'])})"
        else:
            message = message.removeprefix("Value error, ")
        parts.append(f"{location}: {message}")
    more = f"; and {len(parts) - 5} more problem(s)" if len(parts) > 5 else ""
    return f"{source}: " + "; ".join(parts[:5]) + more


def config_from_dict(
    data: Any, source: str = "config", overrides: list[str] | None = None, *, base: str | Path | None = None
) -> Config:
    """Validate plain data (as read from YAML) plus overrides into a frozen `Config`.

    Relative file paths in `data` are made absolute against the folder `base` (default: the current folder),
    those the overrides set against the current folder (`resolve_paths`), so the config names its files
    wherever it is used later.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of sections (data, preprocess, ...), got {type(data).__name__}"
        )
    check_nesting(data, source)
    here = Path.cwd()
    data = resolve_paths(data, Path(base).absolute() if base is not None else here)
    data = apply_overrides(data, overrides or [], here)
    check_nesting(data, f"{source} with its overrides" if overrides else source)
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(source, error)) from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deep to validate; han's settings need at most 4 levels") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file, apply dotted overrides and validate the result.

    The file is read with a safe loader: no Python tags, no duplicate keys, at most MAX_NESTING levels.
    Relative paths in the file are read from the file's folder, those in an override from the current folder.
    """
    path = Path(path)
    text = read_user_file(path, "config file", ConfigError, max_bytes=MAX_CONFIG_BYTES)  # no pipe, device, folder
    try:
        data = load_yaml(text.decode("utf-8"))
    except (NestingTooDeep, RecursionError) as error:
        where = f" (at line {error.line})" if isinstance(error, NestingTooDeep) else ""
        raise ConfigError(
            f"{path}: nested more than {MAX_NESTING} levels deep{where}; han's settings need at most 4"
        ) from None
    except DuplicateKey as error:
        raise ConfigError(
            f"{path}: line {error.line}: duplicate key {error.key!r} (first set at line {error.first_line}); "
            "a key may appear once per section, remove one"
        ) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(error)})") from None
    folder = Path(os.path.abspath(path)).parent
    return config_from_dict(data if data is not None else {}, str(path), overrides, base=folder)


def config_to_yaml(config: Config) -> str:
    """The resolved config (every default filled in) as YAML text."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
