"""`neuron-atlas report OUT [--site URI]`: a static HTML atlas over everything under OUT (default `OUT/site/`).

Site layout (every link relative, every page an explicit `.html` file, so it opens from disk, from
`python -m http.server` and from a bucket served as-is):

    index.html                                   models and snapshots, counts, the manifest's run summary
    query.html                                   DuckDB and pandas over this OUT's real paths
    <model>/<snapshot>/<layer>/index.html        the layer grid, page 1 (page-2.html, ... for the rest)
    <model>/<snapshot>/<layer>/unit-<n>.html     one unit: seeds and methods, facets, caricatures, top-k, ...
    thumbs/<px>/<path under OUT>.jpg             grid thumbnails, made once
    files/<path under OUT>                       copies of OUT's images, only when the site lies outside OUT
    assets/style.css, assets/site.js
    report-manifest.json                         a digest of each page's inputs: reruns rewrite changed pages only

Modules: `queries` (reading OUT's tables), `choice` (which seed a layer grid shows), `paths` (where things
live in the site and relative links), `media` (thumbnails and copies), `layer_pages`, `unit_pages` (with
`unit_groups`: seeds, facets and caricatures, by `starts`: how each image started; `unit_sections`: the
rest), `overview` (index and query pages, with each layer's strip of its strongest units), `render`
(Jinja2), `incremental` (the site manifest), `build` (the whole generation), `report_cmd` (the command line).
"""
