"""Encoded splits: a split's documents as vocabulary ids in three flat arrays, and their Arrow storage.

A split is held as every token id of every sentence in order, the offsets of sentences into that
token array, and the offsets of documents into the sentence list, plus one label per document.
On disk it is an Arrow dataset (`datasets.save_to_disk`), one row per document: nested ids and label.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from han.errors import RunDirError
from han.util.atomic import TEMPORARY_MARK


def encoded_schema(num_labels: int | None = None) -> pa.Schema:
    """The Arrow schema of an encoded split: one class id per document, or (multi-label, `num_labels` given)
    a fixed-size list of `num_labels` 0/1 flags."""
    import datasets  # only writing a split needs it (for its features metadata); reading is pyarrow alone

    features = datasets.Features(
        {"ids": datasets.List(datasets.List(datasets.Value("int32"))), "label": datasets.Value("int64")}
    )
    if num_labels is None:
        return features.arrow_schema
    ids = features.arrow_schema.field("ids")
    return pa.schema([ids, pa.field("label", pa.list_(pa.int8(), num_labels))])


def label_array(labels: Sequence[int] | np.ndarray | None, documents: int) -> np.ndarray:
    """Labels as stored: (N,) int64 class ids, or an (N, C) int8 0/1 matrix for label sets; -1s when not given."""
    array = np.full(documents, -1, dtype=np.int64) if labels is None else np.asarray(labels)
    return array.astype(np.int8 if array.ndim == 2 else np.int64)


@dataclass
class EncodedSplit:
    """Token ids of a split's documents in flat arrays."""

    tokens: np.ndarray  # (T,) int64 token ids
    sentence_offsets: np.ndarray  # (N_sent + 1,) into tokens
    document_offsets: np.ndarray  # (N_doc + 1,) into sentences
    labels: np.ndarray  # (N_doc,) int64 class ids, -1 when unknown; multi-label: (N_doc, C) int8 0/1, -1 when unknown

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def multilabel(self) -> bool:
        """Whether each document has a set of labels (an (N_doc, C) 0/1 matrix) rather than one class id."""
        return self.labels.ndim == 2

    @property
    def sentence_counts(self) -> np.ndarray:
        return np.diff(self.document_offsets)

    @property
    def document_lengths(self) -> np.ndarray:
        """Tokens per document."""
        return self.sentence_offsets[self.document_offsets[1:]] - self.sentence_offsets[self.document_offsets[:-1]]

    @classmethod
    def from_documents(
        cls, documents: Sequence[Sequence[Sequence[int]]], labels: Sequence[int] | np.ndarray
    ) -> EncodedSplit:
        """A split built from documents given as sentences of token ids, and their labels (class ids, or an
        (N_doc, C) 0/1 matrix)."""
        sentence_lengths = [len(s) for doc in documents for s in doc]
        tokens = np.fromiter(
            (t for doc in documents for s in doc for t in s), dtype=np.int64, count=sum(sentence_lengths)
        )
        sentence_offsets = np.zeros(len(sentence_lengths) + 1, dtype=np.int64)
        np.cumsum(sentence_lengths, out=sentence_offsets[1:])
        document_offsets = np.zeros(len(documents) + 1, dtype=np.int64)
        np.cumsum([len(doc) for doc in documents], out=document_offsets[1:])
        return cls(tokens, sentence_offsets, document_offsets, label_array(labels, len(documents)))

    def arrow_table(self) -> pa.Table:
        """One row per document: nested ids and label, in the schema of `encoded_schema`."""
        sentences = pa.ListArray.from_arrays(
            pa.array(self.sentence_offsets, pa.int32()), pa.array(self.tokens, pa.int32())
        )
        documents = pa.ListArray.from_arrays(pa.array(self.document_offsets, pa.int32()), sentences)
        if self.multilabel:
            width = self.labels.shape[1]
            flat = pa.array(np.ascontiguousarray(self.labels, dtype=np.int8).reshape(-1), pa.int8())
            label = pa.FixedSizeListArray.from_arrays(flat, width)
            return pa.table({"ids": documents, "label": label}).cast(encoded_schema(width))
        table = pa.table({"ids": documents, "label": pa.array(self.labels, pa.int64())})
        return table.cast(encoded_schema())

    def save(self, path: Path) -> None:
        """Write as an Arrow dataset (one row per document: nested ids and label)."""
        import datasets

        datasets.Dataset(self.arrow_table()).save_to_disk(str(path))

    @classmethod
    def load(cls, path: Path) -> EncodedSplit:
        """Read a split saved as a dataset folder; a missing folder raises `RunDirError`."""
        # The folder `datasets.save_to_disk` wrote: state.json names the Arrow stream files, read here
        # with pyarrow alone (memory-mapped), so scoring a split does not import `datasets`.
        try:
            state = json.loads((Path(path) / "state.json").read_text(encoding="utf-8"))
            tables = [
                pa.ipc.open_stream(pa.memory_map(str(Path(path) / entry["filename"]))).read_all()
                for entry in state["_data_files"]
            ]
        except FileNotFoundError:
            raise RunDirError(f"{path}: encoded split missing; run `han preprocess` first") from None
        except (ValueError, KeyError, TypeError, pa.ArrowInvalid) as error:
            raise RunDirError(
                f"{path}: not a readable encoded split ({error}); run `han preprocess --overwrite`"
            ) from None
        table = pa.concat_tables(tables)
        documents = table.column("ids").combine_chunks()
        sentences = documents.flatten()
        tokens = _numbers(sentences.flatten()).astype(np.int64)
        sentence_offsets = _numbers(sentences.offsets).astype(np.int64)
        document_offsets = _numbers(documents.offsets).astype(np.int64)
        label_column = table.column("label").combine_chunks()
        if pa.types.is_fixed_size_list(label_column.type):  # multi-label: C flags per document
            width = label_column.type.list_size
            flat = label_column.flatten().to_numpy(zero_copy_only=False)
            labels = flat.astype(np.int8).reshape(len(label_column), width)
        else:
            labels = _numbers(label_column).astype(np.int64)
        return cls(tokens, sentence_offsets - sentence_offsets[0], document_offsets - document_offsets[0], labels)


def _numbers(array: pa.Array) -> np.ndarray:
    """An integer Arrow array without nulls as a numpy view of its buffer.

    pyarrow's `to_numpy` imports pandas on first use (0.3 s of every `han evaluate`); the buffer is all it needs.
    """
    if array.null_count or not pa.types.is_integer(array.type):
        return array.to_numpy(zero_copy_only=False)
    dtype = np.dtype(f"{'int' if pa.types.is_signed_integer(array.type) else 'uint'}{array.type.bit_width}")
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


class EncodedSplitWriter:
    """Writes a split part by part into the dataset folder `EncodedSplit.load` reads, in bounded memory.

    The parts go to an Arrow stream file, which `datasets` then memory-maps and saves as a dataset.
    """

    def __init__(self, path: Path, num_labels: int | None = None) -> None:
        self.path = Path(path)
        self.stream_path = self.path.parent / f".{self.path.name}{TEMPORARY_MARK}stream.tmp"  # han's temporary
        self.writer = pa.ipc.new_stream(str(self.stream_path), encoded_schema(num_labels))

    def write(self, part: EncodedSplit) -> None:
        """Append `part` (whole documents) to the stream file."""
        self.writer.write_table(part.arrow_table())

    def __enter__(self) -> EncodedSplitWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        """Turn the stream into the dataset folder; on an error, only remove the stream file."""
        self.writer.close()
        try:
            if exc_type is None:
                import datasets

                datasets.Dataset.from_file(str(self.stream_path)).save_to_disk(str(self.path))
        finally:
            self.stream_path.unlink(missing_ok=True)
