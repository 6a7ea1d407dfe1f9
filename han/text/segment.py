"""Sentence splitting and tokenisation with spaCy: the one place that decides sentences and tokens.

`segment_chunk` is the rule every path uses (preprocessing, its worker processes, predict,
evaluate --data and the attention reports): spaCy's sentences, whitespace tokens (line breaks
inside a sentence) dropped, sentences left empty dropped. It returns flat int arrays rather than one
Python string per token, so chunks are cheap to move between processes.

The default pipeline is `spacy.blank(lang)` plus the rule-based `sentencizer`, which needs no model
download. A named installed pipeline (e.g. `en_core_web_sm`) can be used instead; its components
that do not decide sentence boundaries are disabled for speed.

Before segmentation each text is capped at `preprocess.max_chars` characters (so a 50 MB document
costs no more than a long one) and cleaned: invisible format characters (zero-width space, word
joiner, byte-order mark, soft hyphen, bidirectional controls) are removed, control characters
other than tab and line breaks become spaces, and lone surrogates become U+FFFD. Zero-width
joiners and non-joiners, which change how some scripts are written, and right-to-left text are
kept as they are. `TextStats` counts the documents each rule touched, `EmptyDocuments` those left with no text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice, pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from han.config import PreprocessConfig
from han.errors import ConfigError

if TYPE_CHECKING:  # spaCy is imported where text is segmented: scoring an encoded split never pays for it
    from spacy.language import Language

log = logging.getLogger(__name__)
Document = list[list[str]]  # sentences of tokens

_INVISIBLE = re.compile("[\u200b\u2060\ufeff\u00ad\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class TextStats:
    """How many documents were truncated at max_chars and how many had characters removed or replaced."""

    documents: int = 0
    truncated: int = 0
    cleaned: int = 0
    # What the caps (max_sentences, max_words) cut, counted where documents are capped (han.text.corpus.tally_cuts).
    tokens: int = 0  # tokens before the caps
    capped_documents: int = 0  # documents that lost at least one token
    sentences_cut: int = 0  # whole sentences past max_sentences
    tokens_cut: int = 0  # tokens past either cap

    def as_dict(self) -> dict[str, int]:
        """The counts as a dict."""
        return {
            "documents": self.documents,
            "truncated": self.truncated,
            "cleaned": self.cleaned,
            "tokens": self.tokens,
            "capped_documents": self.capped_documents,
            "sentences_cut": self.sentences_cut,
            "tokens_cut": self.tokens_cut,
        }


EMPTY_ROWS_SHOWN = 10  # rows an empty-documents warning names


@dataclass
class EmptyDocuments:
    """Documents with no text once cleaned (empty or whitespace only), counted by `han predict` and `han report`:
    the model reads no word of them (one unknown word instead, `TrainedRun.encode_segmented`), so their labels
    say nothing about them."""

    count: int = 0
    rows: list[int] = field(default_factory=list)  # the first EMPTY_ROWS_SHOWN of them (1-based)

    def add(self, row: int) -> None:
        """Count the document of `row` (1-based)."""
        self.count += 1
        if len(self.rows) < EMPTY_ROWS_SHOWN:
            self.rows.append(row)

    def warn(self, where: str, documents: int) -> None:
        """One warning counting the empty documents among `documents` (none when there are none)."""
        if self.count:
            more = ", ..." if self.count > len(self.rows) else ""
            log.warning(
                "%s: %d of %d documents are empty (row%s %s%s); their labels are the model's guess from no text, "
                "not a reading of them",
                where,
                self.count,
                documents,
                "s" if self.count > 1 else "",
                ", ".join(map(str, self.rows)),
                more,
            )


def clean_text(text: str) -> str:
    """`text` without invisible format characters, with control characters as spaces and lone surrogates as U+FFFD."""
    if not text.isascii():  # (a flag of the string: free) the invisible characters and surrogates are not ASCII
        text = _SURROGATE.sub("\ufffd", _INVISIBLE.sub("", text))
    return _CONTROL.sub(" ", text)


def prepare_texts(texts: Iterable[str], config: PreprocessConfig, stats: TextStats) -> Iterator[str]:
    """Cap each text at `config.max_chars` characters and clean it, counting both in `stats`."""
    for text in texts:
        stats.documents += 1
        if len(text) > config.max_chars:
            text = text[: config.max_chars]
            stats.truncated += 1
        cleaned = clean_text(text)
        if cleaned != text:
            stats.cleaned += 1
        yield cleaned


def build_pipeline(config: PreprocessConfig) -> Language:
    """The spaCy pipeline that splits documents into sentences and tokens."""
    import spacy

    if config.spacy_model is None:
        try:
            nlp = spacy.blank(config.lang)
        except (ImportError, KeyError, ValueError) as error:
            raise ConfigError(f"preprocess.lang: spaCy has no language {config.lang!r} ({error})") from None
        nlp.add_pipe("sentencizer")
        nlp.max_length = max(nlp.max_length, config.max_chars + 1)
        return nlp
    try:
        nlp = spacy.load(config.spacy_model, exclude=["ner", "lemmatizer", "textcat", "attribute_ruler"])
    except OSError:
        raise ConfigError(
            f"preprocess.spacy_model: spaCy pipeline {config.spacy_model!r} is not installed "
            f"(install it with `python -m spacy download {config.spacy_model}`, or unset it to use the sentencizer)"
        ) from None
    if not (nlp.has_pipe("parser") or nlp.has_pipe("senter") or nlp.has_pipe("sentencizer")):
        nlp.add_pipe("sentencizer")
    nlp.max_length = max(nlp.max_length, config.max_chars + 1)
    return nlp


@dataclass
class ChunkTokens:
    """A chunk of documents as sentences of tokens; ids are local to the chunk (index into `words`).

    With `surface`, also every token as written and whether whitespace follows it (for reports).
    """

    local_ids: np.ndarray  # (T,) int32, the model's token (lower-cased or verbatim)
    sentence_lengths: np.ndarray  # (S,) int32, every sentence has >= 1 token
    sentence_counts: np.ndarray  # (D,) int32, a document may have 0 sentences
    words: list[str]  # distinct model tokens of the chunk
    surface_ids: np.ndarray | None = None  # (T,) int32 into `surface_words`: the token as written
    surface_words: list[str] = field(default_factory=list)
    space_after: np.ndarray | None = None  # (T,) bool: whitespace follows the token in the text


def _local_ids(nlp: Language, hashes: np.ndarray) -> tuple[np.ndarray, list[str]]:
    unique, local_ids = np.unique(hashes, return_inverse=True)
    strings = nlp.vocab.strings
    return local_ids.astype(np.int32).ravel(), [strings[int(h)] for h in unique]


def sentencizer_punctuation(nlp: Language) -> np.ndarray | None:
    """The hashes of the rule-based sentencizer's punctuation when it is the pipeline's only component, else None.

    Then `segment_chunk` runs spaCy's tokenizer alone and applies the sentencizer's rule to whole arrays
    (`rule_sentence_starts`): the sentencizer itself visits every token as a Python object, 60% of segmenting.
    """
    if nlp.pipe_names != ["sentencizer"]:
        return None
    punct_chars = nlp.get_pipe("sentencizer").punct_chars  # type: ignore[attr-defined]
    return np.array(sorted(nlp.vocab.strings[c] for c in punct_chars), dtype=np.uint64)  # ORTH hashes


def rule_sentence_starts(
    orth: np.ndarray, is_punct: np.ndarray, token_counts: np.ndarray, punctuation: np.ndarray
) -> np.ndarray:
    """(N,) bool: the tokens spaCy's `sentencizer` marks as sentence starts, for documents laid end to end.

    Its rule: a document's first token starts a sentence, and so does every token that is neither
    punctuation (`is_punct`) nor one of the sentence-ending characters, when such a character came after the
    previous such token of the document (or after the document's start).
    """
    # orth (N,) uint64 token-text hashes; is_punct (N,) bool; token_counts (D,) tokens per document, laid end to end
    ending = np.isin(orth, punctuation)  # (N,) a sentence-ending character
    plain = ~is_punct & ~ending  # (N,)
    endings_before = np.concatenate([[0], np.cumsum(ending)])  # (N + 1,) endings among tokens [0, i)
    first_tokens = np.cumsum(token_counts) - token_counts  # (D,) each document's first token
    document_start = np.repeat(first_tokens, token_counts)  # (N,) the first token of each token's document
    positions = np.flatnonzero(plain)  # (M,) ascending
    previous = np.concatenate([[-1], positions[:-1]])  # the plain token before each, in any document
    previous = np.maximum(previous, document_start[positions] - 1)  # ... or just before its document
    starts = np.zeros(len(orth), dtype=bool)
    starts[positions[endings_before[positions] - endings_before[previous + 1] > 0]] = True
    starts[first_tokens[token_counts > 0]] = True
    return starts


def segment_chunk(
    nlp: Language, texts: Sequence[str], lowercase: bool, batch_size: int, surface: bool = False
) -> ChunkTokens:
    """Sentences of tokens of `texts` (whitespace tokens and empty sentences dropped, no caps), chunk-local ids.

    One `Doc.to_array` call per document reads every token's form, whitespace flag and sentence
    start; numpy then drops whitespace tokens and empty sentences and numbers the distinct words.
    With the default pipeline the sentence starts come from the sentencizer's rule on those arrays
    (`rule_sentence_starts`), the same starts spaCy's component sets.
    """
    from spacy.attrs import IS_PUNCT, IS_SPACE, LOWER, ORTH, SENT_START, SPACY

    punctuation = sentencizer_punctuation(nlp)
    # Columns: 0 the model's token, 1 is_space, 2 sentence start (or, by rule, is_punct), then the rule's ORTH,
    # then (surface) ORTH and SPACY.
    attributes = [LOWER if lowercase else ORTH, IS_SPACE, SENT_START if punctuation is None else IS_PUNCT]
    attributes += [] if punctuation is None else [ORTH]
    surface_column = len(attributes)
    attributes += [ORTH, SPACY] if surface else []
    tokenizer: Any = nlp.tokenizer  # typed as a plain callable; spaCy's Tokenizer also has `pipe`
    docs = nlp.pipe(texts, batch_size=batch_size) if punctuation is None else tokenizer.pipe(texts, batch_size)
    arrays = []
    token_counts = np.zeros(len(texts), dtype=np.int64)
    for i, doc in enumerate(docs):
        token_counts[i] = len(doc)
        if len(doc):
            arrays.append(doc.to_array(attributes).reshape(len(doc), len(attributes)))
    if not arrays:
        empty = np.zeros(0, dtype=np.int32)
        counts = np.zeros(len(texts), dtype=np.int32)
        if surface:
            return ChunkTokens(empty, empty, counts, [], empty, [], empty.astype(bool))
        return ChunkTokens(empty, empty, counts, [])
    table = np.concatenate(arrays)  # (N, A) uint64: word hash, is_space, sent_start (1 = starts a sentence), ...
    ends = np.cumsum(token_counts)[token_counts > 0]
    if punctuation is None:
        starts = table[:, 2] == 1
        starts[(ends - token_counts[token_counts > 0])] = True  # a document's first token starts a sentence (Doc.sents)
    else:
        starts = rule_sentence_starts(table[:, 3], table[:, 2] == 1, token_counts, punctuation)
    sentence_of_token = np.cumsum(starts) - 1
    document_of_token = np.repeat(np.arange(len(texts)), token_counts)
    keep = table[:, 1] == 0
    hashes = table[keep, 0]
    kept_sentences = sentence_of_token[keep]
    # kept tokens of one sentence are contiguous: new sentence wherever the sentence number changes
    boundaries = np.flatnonzero(np.diff(kept_sentences)) + 1
    sentence_starts = np.concatenate([[0], boundaries]) if len(hashes) else np.zeros(0, dtype=np.int64)
    sentence_lengths = np.diff(np.concatenate([sentence_starts, [len(hashes)]]))
    sentence_counts = np.bincount(document_of_token[keep][sentence_starts], minlength=len(texts))
    local_ids, words = _local_ids(nlp, hashes)
    chunk = ChunkTokens(local_ids, sentence_lengths.astype(np.int32), sentence_counts.astype(np.int32), words)
    if surface:
        # Whitespace follows a token when it carries some, or when a whitespace token (a line break) follows it.
        next_is_space = np.zeros(len(table), dtype=bool)
        next_is_space[:-1] = table[1:, 1] == 1
        next_is_space[ends - 1] = False  # the next token belongs to another document
        chunk.surface_ids, chunk.surface_words = _local_ids(nlp, table[keep, surface_column])
        chunk.space_after = ((table[:, surface_column + 1] != 0) | next_is_space)[keep]
    return chunk


SEGMENT_CHUNK = 256  # texts per `segment_chunk` call in `segment`


def segment(
    nlp: Language, texts: Iterable[str], config: PreprocessConfig, stats: TextStats | None = None
) -> Iterator[Document]:
    """Yield each text as sentences of tokens (strings), lower-cased and capped as configured.

    Texts are capped at `max_chars` and cleaned first (counted in `stats`), then split by
    `segment_chunk`. At most `max_sentences` sentences of at most `max_words` words are kept.
    """
    prepared = prepare_texts(texts, config, stats if stats is not None else TextStats())
    while chunk := list(islice(prepared, SEGMENT_CHUNK)):
        tokens = segment_chunk(nlp, chunk, config.lowercase, config.pipe_batch_size)
        words = np.asarray(tokens.words, dtype=object)
        sentence_offsets = np.concatenate([[0], np.cumsum(tokens.sentence_lengths)])
        sentences = [words[tokens.local_ids[a:b]].tolist() for a, b in pairwise(sentence_offsets)]
        start = 0
        for count in tokens.sentence_counts.tolist():
            yield [
                sentence[: config.max_words] for sentence in sentences[start : start + min(count, config.max_sentences)]
            ]
            start += count
