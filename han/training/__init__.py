"""The train stage.

`train` holds the loop, read as a list of steps; `distributed` keeps the data-parallel concerns behind
one object the loop calls (`Ranks`); `prepare` checks and claims the run directory; `run_files` writes
what training leaves there (rank 0 only); `checkpoint` is the resumable state; `optim` the optimizer
and its schedule; `initial_model` builds the network a training starts from; `fit_linear` trains the
kind that is fitted rather than trained by gradient (and fits it beside every network, to compare the two
on validation); `wide_entries` reads the n-gram
channel's TF-IDF entries of the training split once; `weighting` the single-label class weights both use;
`calibrate` chooses multi-label thresholds once training ends.
"""
