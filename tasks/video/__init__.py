"""Preferred videos: the parameterization and time pooling (`parameterization`), the chunked checkpointed
forward pass (`forward`), the frame-order scores (`order`), the actor (`actor`), and the demo's procedural
clips and classifier training (`activities`, `train`)."""

from .parameterization import (TIME_POOLS, VideoConfig, frame_seed, frame_seeds, pool_time, temporal_change,
                               video_parameterization)

__all__ = ["VideoConfig", "TIME_POOLS", "frame_seed", "frame_seeds", "video_parameterization", "pool_time",
           "temporal_change"]
