"""`neuron-atlas video`: preferred videos of video (CNN + LSTM) classifiers and the frame-order analysis.

video_cmd (flags), plan (spec and validation), run (the Ray driver), outputs (files and the `videos/` table),
media (WebP / MP4 / strip encoding and decoding), sources (real videos), order (real-video order analysis),
demo and figures (`make video-demo`).
"""
