"""The data engine: recorded drives -> the frames most worth labelling, pre-labelled -> labelling
tools (CVAT COCO 1.0, Label Studio) -> reviewed labels back into the dataset layout.

Modules: :mod:`records` (what a scan keeps per frame, candidates, proposals), :mod:`scan` (the
detector with tiles and the tracker over any ``edge-detect --source`` URI), :mod:`signals`
(uncertainty, disagreement, flicker, known false events), :mod:`backfill` (confirmed tracks
followed backwards), :mod:`diversity` (perceptual hash, budget spread), :mod:`pipeline`
(shard and merge), :mod:`export` and :mod:`roundtrip` (the labelling tools), :mod:`report`
(summary table, contact sheet). ``docs/data_engine.md`` describes it end to end.
"""
