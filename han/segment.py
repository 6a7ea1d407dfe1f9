"""Sentence splitting and tokenisation with spaCy.

The default pipeline is `spacy.blank(lang)` plus the rule-based `sentencizer`, which needs no model
download. A named installed pipeline (e.g. `en_core_web_sm`) can be used instead; its components
that do not decide sentence boundaries are disabled for speed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import spacy
from spacy.language import Language

from han.config import PreprocessConfig
from han.errors import ConfigError

Document = list[list[str]]  # sentences of tokens


def build_pipeline(config: PreprocessConfig) -> Language:
    """The spaCy pipeline that splits documents into sentences and tokens."""
    if config.spacy_model is None:
        try:
            nlp = spacy.blank(config.lang)
        except (ImportError, KeyError, ValueError) as error:
            raise ConfigError(f"preprocess.lang: spaCy has no language {config.lang!r} ({error})") from None
        nlp.add_pipe("sentencizer")
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
    return nlp


def segment(nlp: Language, texts: Iterable[str], config: PreprocessConfig) -> Iterator[Document]:
    """Yield each text as sentences of tokens, lower-cased and capped as configured.

    Whitespace tokens (line breaks inside a sentence) are dropped; a sentence left empty is dropped.
    At most `max_sentences` sentences of at most `max_words` words are kept.
    """
    for doc in nlp.pipe(texts, batch_size=config.pipe_batch_size):
        sentences: Document = []
        for sent in doc.sents:
            words = [t.lower_ if config.lowercase else t.text for t in sent if not t.is_space]
            if words:
                sentences.append(words[: config.max_words])
                if len(sentences) == config.max_sentences:
                    break
        yield sentences
