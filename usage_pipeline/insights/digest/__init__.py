"""The weekly digest: one HTML and one Markdown page per organization, for the producer's team.

`asset.write_digests` reads the published read-only DuckDB copy and writes, for the ISO week of the report date,
``<slug>-<YYYY>-W<WW>.html``, ``.md`` and the ``<slug>-<YYYY>-W<WW>-<chart>.svg`` charts the Markdown links
(the HTML inlines them). One module a concern, each tested on its own: `queries` (what is read), `figures`
(what is computed, no I/O), `charts` (SVG), `formatting` (numbers, dates, safe text), `render` (templates), `asset`.
"""
