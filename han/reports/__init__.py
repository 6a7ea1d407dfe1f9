"""Attention reports and pictures of runs, as self-contained HTML or JSON.

`documents` (per-document weights), `statistics` and `faithfulness` (corpus-wide) compute; `pages` and
`html` render; `output` writes them; `run_page` is `han show`; `comparison` renders a `han compare` result.
"""
