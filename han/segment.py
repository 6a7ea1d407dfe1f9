"""Sentence splitting and tokenisation with spaCy.

The default pipeline is `spacy.blank(lang)` plus the rule-based `sentencizer`, which needs no model
download. A named installed pipeline (e.g. `en_core_web_sm`) can be used instead; its components
that do not decide sentence boundaries are disabled for speed.

Before segmentation each text is capped at `preprocess.max_chars` characters (so a 50 MB document
costs no more than a long one) and cleaned: invisible format characters (zero-width space, word
joiner, byte-order mark, soft hyphen, bidirectional controls) are removed, control characters
other than tab and line breaks become spaces, and lone surrogates become U+FFFD. Zero-width
joiners and non-joiners, which change how some scripts are written, and right-to-left text are
kept as they are. `TextStats` counts the documents each rule touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import spacy
from spacy.language import Language

from han.config import PreprocessConfig
from han.errors import ConfigError

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

    def as_dict(self) -> dict[str, int]:
        return {"documents": self.documents, "truncated": self.truncated, "cleaned": self.cleaned}


def clean_text(text: str) -> str:
    """`text` without invisible format characters, with control characters as spaces and lone surrogates as U+FFFD."""
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub(" ", text)
    return _SURROGATE.sub("\ufffd", text)


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


def segment(
    nlp: Language, texts: Iterable[str], config: PreprocessConfig, stats: TextStats | None = None
) -> Iterator[Document]:
    """Yield each text as sentences of tokens, lower-cased and capped as configured.

    Texts are capped at `max_chars` and cleaned first (counted in `stats`). Whitespace tokens (line
    breaks inside a sentence) are dropped; a sentence left empty is dropped. At most
    `max_sentences` sentences of at most `max_words` words are kept.
    """
    prepared = prepare_texts(texts, config, stats if stats is not None else TextStats())
    for doc in nlp.pipe(prepared, batch_size=config.pipe_batch_size):
        sentences: Document = []
        for sent in doc.sents:
            words = [t.lower_ if config.lowercase else t.text for t in sent if not t.is_space]
            if words:
                sentences.append(words[: config.max_words])
                if len(sentences) == config.max_sentences:
                    break
        yield sentences
