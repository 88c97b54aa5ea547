"""Dataset examples: `neuron-atlas topk` (the real images that excite each unit most, with per-unit
activation statistics) and `neuron-atlas nearest` (the real images nearest to each synthesized one, the
memorization check), both as resumable sharded passes over an image set on the Ray workers.

Modules: `shards` (the resumable pass and crops), `worker` (the Ray actor), `records` (shard results as
tables), `topk_cmd` / `topk_out` and `nearest_cmd` / `nearest_out` (the two commands and their outputs),
`figures` (sheets).
"""
