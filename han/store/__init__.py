"""The run directory and its on-disk formats: the only channel between stages.

`rundir` is the layout (one folder per run); `manifest` is han's marker with versions and checksums;
`ownership` says what han may remove (only what it made); `vocab`, `encoded` (splits as token ids) and
`weights` (safetensors) are the formats; `model_card` writes MODEL_CARD.md from a run's files; `outputs` are
the files han writes for a user outside run directories.
"""
