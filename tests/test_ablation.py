"""The ablation benchmark (benchmarks/ablation.py): every cell's config loads, and its table reads compare.json."""

from __future__ import annotations

import json

import pytest

from benchmarks.ablation import CORPORA, ROOT, SETTINGS, summary
from han.config import load_config


@pytest.mark.parametrize("corpus", sorted(CORPORA))
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_every_cell_is_a_valid_config(corpus, setting, tmp_path):
    config, *overrides = (part.format(dir=tmp_path) for part in CORPORA[corpus])
    loaded = load_config(
        ROOT / config, [*overrides, *(part.format(dir=tmp_path, corpus=corpus) for part in SETTINGS[setting])]
    )
    if setting.startswith(("learnt", "fitted")):
        assert loaded.model.wide and loaded.model.wide_weights == setting.split("+")[0]
    if setting.startswith("linear"):  # the linear kind on the corpus's config, or on (nearly) whole documents
        shipped = load_config(ROOT / config, overrides).preprocess
        caps = (400, 400) if setting == "linear+uncapped" else (shipped.max_sentences, shipped.max_words)
        assert (loaded.preprocess.max_sentences, loaded.preprocess.max_words) == caps
    elif not setting.startswith("shipped"):
        expected = 0.4 if setting.endswith("_0.4") else 0.2 if setting.endswith("+word_dropout") else 0.0
        assert loaded.model.word_dropout == expected
    if setting.startswith("shipped"):  # the corpus's own config: its model settings untouched
        shipped = load_config(ROOT / config, overrides).model
        frozen, ensemble = setting.endswith("+frozen_embeddings"), 3 if setting.endswith("+ensemble_3") else 1
        update = {"freeze_embeddings": frozen, "ensemble": ensemble}
        if "+wide" in setting:  # the n-gram channel on, learnt unless the setting says fitted
            update |= {"wide": True, "wide_weights": "fitted" if "+wide_fitted" in setting else "learnt"}
        if setting.endswith(("+out_of_fold", "+calibrated", "+in_sample")):
            update |= {"wide_training_scores": setting.split("+")[-1]}
        if "+word_dropout_" in setting or "+dropout_" in setting:
            name = "word_dropout" if "+word_dropout_" in setting else "dropout"
            update |= {name: float(setting.split("_")[-1])}
        assert loaded.model == shipped.model_copy(update=update)
    own_wide_lr = load_config(ROOT / config, overrides).train.wide_lr
    rate = setting.split("_")[-1]
    expected_rate = (rate if rate == "auto" else float(rate)) if "+wide_lr_" in setting else own_wide_lr
    assert loaded.train.wide_lr == expected_rate
    assert loaded.embeddings.subwords == setting.endswith("+subwords")
    assert loaded.model.freeze_embeddings == setting.endswith("+frozen_embeddings")
    if "+lr_" in setting:
        assert loaded.train.lr == float(setting.split("_")[-1])
    own = load_config(ROOT / config, overrides).train.weight_decay  # the corpus's config's own, unless the setting's
    assert loaded.train.weight_decay == (float(setting.split("_")[-1]) if "+weight_decay_" in setting else own)
    assert loaded.model.ensemble == (3 if setting.endswith("+ensemble_3") else 1)
    smoothing = float(setting.split("_")[-1]) if "+label_smoothing_" in setting else 0.0
    assert loaded.train.label_smoothing == smoothing
    unlabelled = [str(tmp_path / f"{corpus}_unlabelled.jsonl")] if "+unlabelled" in setting else []
    assert loaded.embeddings.extra_text.files == unlabelled
    assert loaded.embeddings.extra_text.splits == (["validation", "test"] if setting.endswith("+extra_text") else [])


def test_summary_gives_mean_and_sample_std_over_seeds(tmp_path):
    runs = [
        {"validation_accuracy": v, "validation_macro_f1": vf, "test_accuracy": t, "test_macro_f1": f}
        for v, vf, t, f in [(0.9, 0.5, 0.8, 0.5), (1.0, 0.6, 0.9, 0.7), (0.8, 0.4, 1.0, 0.6)]
    ]
    (tmp_path / "compare.json").write_text(json.dumps({"rows": [{"runs": runs}]}))
    expected = {"validation": "0.900 ± 0.100", "validation_f1": "0.500 ± 0.100", "test": "0.900 ± 0.100", "f1": "0.600"}
    assert summary(tmp_path) == expected


def test_the_patience_reading_stops_and_keeps_as_training_does():
    from benchmarks.patience import kept_epoch

    def epoch(number, f1, loss=1.0):
        return {"epoch": number, "validation_macro_f1": f1, "validation_loss": loss}

    # epoch 0 (the linear kind) is the best; the network climbs, then falls
    records = [epoch(0, 0.9), epoch(1, 0.5), epoch(2, 0.6), epoch(3, 0.55), epoch(4, 0.58), epoch(5, 0.95)]
    assert kept_epoch(records, "macro_f1", 1) == (0, 3)  # epoch 3 does not beat epoch 2: stop there
    assert kept_epoch(records, "macro_f1", 2) == (0, 4)
    assert kept_epoch(records, "macro_f1", 3) == (5, 5)  # epoch 5 is reached, and beats epoch 0
    records[-1]["beats_start"] = False  # ... but not beyond chance (train.beat_linear_start significantly)
    assert kept_epoch(records, "macro_f1", 3) == (0, 5)
    ties = [epoch(1, 0.7, loss=0.5), epoch(2, 0.7, loss=0.4), epoch(3, 0.6)]
    assert kept_epoch(ties, "macro_f1", 1) == (2, 3)  # an equal F1 with a lower loss is better
