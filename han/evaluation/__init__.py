"""Scoring and metrics.

`scoring` is the one loop that runs a model over an encoded split; `metrics` the figures of a split;
`thresholds` the multi-label decision thresholds; `significance` the paired test between two models.
"""
