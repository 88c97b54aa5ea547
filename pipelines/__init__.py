"""Fan-out over layers x units x seeds, output sink, resume and the `neuron-atlas` CLI."""
