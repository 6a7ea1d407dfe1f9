"""Carving a held-out split (validation or test) out of train: stratified and seeded, every class kept in train."""

from __future__ import annotations

import logging
import math
from collections import Counter

import numpy as np

from han.errors import DataError
from han.rows import RawSplit

log = logging.getLogger(__name__)


def _too_few(split: RawSplit, fraction: float, where: str) -> DataError:
    return DataError(
        f"{where}: {len(split)} training document(s) are too few to carve a {fraction:g} split from; "
        f"add documents or provide the split"
    )


def carve(
    split: RawSplit, fraction: float, seed: int, where: str = "data", name: str = "held-out"
) -> tuple[RawSplit, RawSplit]:
    """Carve a `fraction` of `split` into a new split `name`, stratified and seeded, keeping every class in train.

    When every class has 2 documents or more and sklearn's stratified split keeps each in train, that
    split is the result (the same call as always, so the splits of ordinary data never change).
    Otherwise a class with a single document stays in train whole, every other class keeps one
    document (a seeded pick) there, and the same number of documents is carved from the rest,
    stratified (classes with one document left share a stratum) where sklearn can, else plainly, always
    seeded; a warning names the classes the carved split lacks.
    """
    from sklearn.model_selection import train_test_split

    indices = list(range(len(split)))
    counts = Counter(split.labels)
    if min(counts.values(), default=0) >= 2:
        try:
            keep, carved = train_test_split(indices, test_size=fraction, random_state=seed, stratify=split.labels)
        except ValueError:  # fewer documents on one side than there are classes
            pass
        else:
            if {split.labels[i] for i in keep} == set(counts):
                return split.subset(sorted(keep)), split.subset(sorted(carved))
    reserved: dict[str, int] = {}  # class -> its document that stays in train
    for i in np.random.RandomState(seed).permutation(len(split)).tolist():
        reserved.setdefault(split.labels[i], i)
    kept = set(reserved.values())
    rest = [i for i in indices if i not in kept]
    if not rest:  # every document is the only one of its class: nothing can be carved without losing a class
        return carve_plainly(split, fraction, seed, where)
    wanted = min(len(rest), math.ceil(fraction * len(split)))  # as many as sklearn's split carves
    if wanted == len(rest):
        keep, carved = [], rest
    else:
        left = Counter(split.labels[i] for i in rest)  # classes with one document left form one stratum
        stratum = {label: n for n, label in enumerate(sorted(left)) if left[label] >= 2}
        strata = [stratum.get(split.labels[i], -1) for i in rest]
        try:
            keep, carved = train_test_split(rest, test_size=wanted, random_state=seed, stratify=strata)
        except ValueError:  # a stratum of one document, or fewer carved documents than strata
            keep, carved = train_test_split(rest, test_size=wanted, random_state=seed)
    absent = sorted(set(counts) - {split.labels[i] for i in carved})
    if absent:
        shown = ", ".join(map(repr, absent[:20])) + (f" and {len(absent) - 20} more" if len(absent) > 20 else "")
        log.warning(
            "%s: %d class(es) too small to appear in the carved %s split (train keeps at least one document of each): %s",
            where,
            len(absent),
            name,
            shown,
        )
    return split.subset(sorted([*kept, *keep])), split.subset(sorted(carved))


def carve_plainly(split: RawSplit, fraction: float, seed: int, where: str) -> tuple[RawSplit, RawSplit]:
    """A plain seeded split, for documents that are each the only one of their class (nothing can be kept whole)."""
    from sklearn.model_selection import train_test_split

    try:
        keep, carved = train_test_split(list(range(len(split))), test_size=fraction, random_state=seed)
    except ValueError:
        raise _too_few(split, fraction, where) from None
    return split.subset(sorted(keep)), split.subset(sorted(carved))
