"""Text -> sentences -> token ids, word vectors, and the preprocess stage.

`segment` is the one place that splits sentences and tokens (spaCy); `segment_datasets` runs it over
whole datasets in worker processes; `corpus` turns segmented text into capped id arrays; `embeddings`
trains or loads word vectors; `batching` buckets encoded documents into padded batches; `preprocess` is
the preprocess stage and `inspection` the `han data inspect` stage.
"""
