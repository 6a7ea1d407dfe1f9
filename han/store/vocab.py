"""Word vocabulary built from the training split: id 0 is padding, id 1 stands for unknown words."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from han.errors import RunDirError
from han.util.atomic import read_json, write_json_atomic

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1


@dataclass
class Vocab:
    """A frozen id <-> word mapping."""

    words: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.words[:2] != [PAD, UNK]:
            raise ValueError("a vocabulary starts with the padding and unknown tokens")
        self.index = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, counts: Counter[str], min_count: int, max_size: int) -> Vocab:
        """Most frequent words first (ties alphabetical), at least `min_count` occurrences, `max_size` ids in all."""
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK, *ranked[: max_size - 2]])

    def encode(self, words: Iterable[str]) -> list[int]:
        """Vocabulary ids of `words` (UNK_ID for words outside the vocabulary)."""
        get = self.index.get
        return [get(w, UNK_ID) for w in words]

    def save(self, path: Path) -> None:
        """Write the vocabulary to `path` as {"words": [...]} (id = index), atomically."""
        write_json_atomic(path, {"words": self.words})

    @classmethod
    def load(cls, path: Path) -> Vocab:
        """Read a vocabulary written by `save`; raises `RunDirError` when the file is not one."""
        data = read_json(path)
        words = data.get("words") if isinstance(data, dict) else None
        if not isinstance(words, list) or words[:2] != [PAD, UNK] or not all(isinstance(w, str) for w in words):
            raise RunDirError(f'{path}: not a han vocabulary (expected {{"words": ["{PAD}", "{UNK}", ...]}})')
        return cls(words)
