"""The networks and nothing else: they import only `han.config`, `han.errors` and each other.

`hierarchical` is the HAN of Yang et al. (2016), top to bottom in one file; `packed` holds the packed
sequences and the CPU BiGRU under it; `ngrams` the TF-IDF n-gram (wide) channel; `flat`, `linear` and
`ensemble` are the other kinds; `build` picks one from `model.kind` and checks it fits in memory.
"""
