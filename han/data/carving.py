"""Carving a held-out split (validation or test) out of train: stratified and seeded, every class kept in train."""

from __future__ import annotations

import logging
import math
from collections import Counter

import numpy as np

from han.data.rows import RawSplit, names_text
from han.errors import DataError

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
        log.warning(
            "%s: %d class(es) too small to appear in the carved %s split (train keeps at least one document of each): %s",
            where,
            len(absent),
            name,
            names_text(absent),
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


def _label_sets(split: RawSplit) -> list[tuple[str, ...]]:
    """Each document's labels as a tuple without repeats (a plain string label counts as a one-label tuple)."""
    return [(labels,) if isinstance(labels, str) else tuple(dict.fromkeys(labels)) for labels in split.labels]


def carve_multilabel(
    split: RawSplit, fraction: float, seed: int, where: str = "data", name: str = "held-out"
) -> tuple[RawSplit, RawSplit]:
    """Carve a `fraction` of a multi-label `split` into a new split `name` by iterative stratification, seeded.

    `split.labels` holds, per document, a tuple of label strings (possibly empty). The carved split has
    `round(fraction * len(split))` documents (at least 1, at most `len(split) - 1`) and is drawn by
    iterative stratification (Sechidis, Tsoumakas & Vlahavas 2011, "On the stratification of multi-label
    data", ECML PKDD): every subset desires `proportion * count` documents of each label and `proportion *
    len(split)` documents overall; the label with the fewest documents left (ties: seeded random) has its
    documents dealt, one by one, to the subset desiring that label most (ties: the larger overall desire,
    then seeded random), desires going down as documents are placed; documents without labels come last
    and go by overall desire. A subset that is full takes no more documents, so the sizes come out exact.
    Documents are visited in a seeded random order.

    Before stratifying, train keeps every label: rarest label first, a label not yet covered gets one
    seeded-random document of it reserved in train (a label with a single document keeps it there). Then,
    rarest first, a label with 2 documents or more not yet in the carved split gets one of its other
    documents reserved there, while the carved split has room. Reserved documents count against the
    desires, so the rest is stratified around them. Only when train cannot hold the reserved documents
    (about one document per label) does the carved split shrink, with a warning; a warning also names
    the labels the carved split lacks.
    """
    n = len(split)
    if n < 2:
        raise _too_few(split, fraction, where)
    wanted = min(max(round(fraction * n), 1), n - 1)
    rng = np.random.default_rng(seed)
    sets = _label_sets(split)
    names = sorted({label for labels in sets for label in labels})
    code = {label: j for j, label in enumerate(names)}
    doc_labels = [[code[label] for label in labels] for labels in sets]
    n_labels = len(names)
    members: list[list[int]] = [[] for _ in range(n_labels)]  # label -> its documents, in a seeded random order
    order = rng.permutation(n).tolist()
    for i in order:
        for j in doc_labels[i]:
            members[j].append(i)
    counts = np.array([len(docs) for docs in members], dtype=np.int64)
    rarest_first = np.lexsort((rng.random(n_labels), counts)).tolist()  # ties: seeded random

    side = [-1] * n  # 0: train, 1: carved
    in_train = np.zeros(n_labels, dtype=bool)
    reserved_train: list[int] = []
    for j in rarest_first:
        if not in_train[j]:
            i = members[j][0]  # the first in a seeded random order: a seeded-random pick
            side[i] = 0
            reserved_train.append(i)
            in_train[doc_labels[i]] = True
    if len(reserved_train) == n:  # every document is needed in train: give up the one that costs the fewest labels
        cover = np.zeros(n_labels, dtype=np.int64)
        for i in reserved_train:
            cover[doc_labels[i]] += 1
        losses = [int(np.count_nonzero(cover[doc_labels[i]] == 1)) for i in reserved_train]
        i = reserved_train.pop(len(losses) - 1 - int(np.argmin(losses[::-1])))  # ties: the latest reserved
        side[i] = -1
    if n - len(reserved_train) < wanted:
        log.warning(
            "%s: the carved %s split gets %d document(s) instead of %d so that train keeps every label",
            where,
            name,
            n - len(reserved_train),
            wanted,
        )
        wanted = n - len(reserved_train)
    in_carved = np.zeros(n_labels, dtype=bool)
    reserved_carved: list[int] = []
    for j in rarest_first:
        if len(reserved_carved) >= wanted:
            break
        if counts[j] >= 2 and not in_carved[j]:
            free = next((i for i in members[j] if side[i] < 0), None)
            if free is not None:
                side[free] = 1
                reserved_carved.append(free)
                in_carved[doc_labels[free]] = True

    proportions = ((n - wanted) / n, wanted / n)
    desire = [(counts * p).tolist() for p in proportions]  # subset -> label -> documents still desired
    room = [n - wanted - len(reserved_train), wanted - len(reserved_carved)]  # subset -> documents still desired
    left = counts.tolist()  # label -> documents not yet placed
    for s, reserved in enumerate((reserved_train, reserved_carved)):
        for i in reserved:
            for j in doc_labels[i]:
                desire[s][j] -= 1
                left[j] -= 1

    def place(i: int, s: int) -> None:
        side[i] = s
        room[s] -= 1
        wish = desire[s]
        for j in doc_labels[i]:
            wish[j] -= 1
            left[j] -= 1

    while True:
        remaining = np.asarray(left)
        active = np.flatnonzero(remaining > 0)
        if not active.size:
            break
        fewest = active[remaining[active] == remaining[active].min()]
        j = int(fewest[rng.integers(len(fewest))]) if len(fewest) > 1 else int(fewest[0])
        for i in members[j]:
            if side[i] >= 0:
                continue
            if room[0] <= 0 or room[1] <= 0:
                s = 0 if room[0] > 0 else 1
            elif desire[0][j] != desire[1][j]:
                s = 0 if desire[0][j] > desire[1][j] else 1
            elif room[0] != room[1]:
                s = 0 if room[0] > room[1] else 1
            else:
                s = int(rng.integers(2))
            place(i, s)
    for i in order:  # documents without labels, by overall desire
        if side[i] < 0:
            place(i, 0 if room[0] > room[1] else 1 if room[1] > room[0] else int(rng.integers(2)))

    keep = [i for i in range(n) if side[i] == 0]
    carved = [i for i in range(n) if side[i] == 1]
    lost = sorted(set(names) - {label for i in keep for label in sets[i]})
    if lost:  # only when train could not hold one document per label
        log.warning("%s: %d label(s) could not be kept in train: %s", where, len(lost), names_text(lost))
    absent = sorted(set(names) - {label for i in carved for label in sets[i]})
    if absent:
        log.warning(
            "%s: %d label(s) too small to appear in the carved %s split (train keeps at least one document of each): %s",
            where,
            len(absent),
            name,
            names_text(absent),
        )
    return split.subset(keep), split.subset(carved)
