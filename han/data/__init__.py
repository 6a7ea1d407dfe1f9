"""Files and hub datasets -> labelled splits.

`sources` names what `data.source` refers to; `inputs` checks a user file before any parser opens it;
`loading` reads it as Arrow datasets; `folders` reads folders of text files, one document a file;
`records` joins text columns into a document's text (the one place);
`rows` keeps the rows that survive the bad-row policy; `carving` cuts validation or test out of train;
`label_sets` reads multi-label labels; `fingerprint` hashes what shapes preprocessing; `splits` puts it
together: documents checked, split and counted.
"""
