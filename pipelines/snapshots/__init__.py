"""`neuron-atlas snapshots`: the same units across every training checkpoint under a prefix, once or while a
model trains (checkpoints.py: listing, steps, labels, selection; completeness.py: when a checkpoint may be read;
follow.py: the polling loop; sweep.py: one watcher's rounds on the shared runner; tracking.py and figures.py:
the tracking table, filmstrips and plots; snapshots_cmd.py: the command)."""
