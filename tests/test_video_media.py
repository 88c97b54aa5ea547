"""Video files and real-video listing: lossless WebP round trip, MP4 frame count, strips, folders of videos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from models.errors import UserInputError
from pipelines.video.media import (decode_frames, fit_frame, mp4_bytes, strip_indices, strip_png, webp_bytes,
                                   webp_frames)
from pipelines.video.sources import list_videos, pick_frames, read_video


def frames(t=7, h=10, w=12, seed=0):
    f = np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    f[2] = f[1]  # libwebp merges repeated frames: the reader must split them again
    f[3] = f[1]
    return f


def test_webp_is_lossless_frame_for_frame():
    f = frames()
    for fps in (25.0, 8.0, 30.0):
        back = webp_frames(webp_bytes(f, fps), fps)
        assert back.shape == f.shape and np.array_equal(back, f)
    assert np.array_equal(webp_frames(webp_bytes(f, 25.0)), f)  # durations alone tell the count


def test_mp4_decodes_to_every_frame():
    f = frames(t=9, h=11, w=13)  # odd sizes are padded to even for H.264
    data = mp4_bytes(f, 25.0)
    assert data[4:8] == b"ftyp"
    back = decode_frames(data)
    assert back.shape == (9, 12, 14, 3)
    ramp = np.broadcast_to(np.linspace(0, 255, 16).astype(np.uint8)[None, :, None], (16, 16, 3))
    clip = np.stack([np.roll(ramp, k, 1) for k in range(5)])  # smooth content survives H.264 closely
    back = decode_frames(mp4_bytes(clip, 10.0))
    assert back.shape == clip.shape and np.abs(back.astype(int) - clip).mean() < 6


def test_strip_shows_every_nth_frame():
    assert strip_indices(160, 8) == list(range(0, 160, 20))
    assert strip_indices(5, 8) == [0, 1, 2, 3, 4]
    with Image.open(io.BytesIO(strip_png(frames(t=16, h=4, w=5), 8, gap=2, scale=3))) as im:
        assert im.size == (8 * 15 + 7 * 2, 12)


def test_fit_frame_keeps_net_sized_frames_and_crops_others():
    f = frames()[0]
    assert fit_frame(f, (10, 12)) is f
    assert fit_frame(f, (8, 8)).shape == (8, 8, 3)
    assert pick_frames(10, 4) == [0, 2, 5, 7] and pick_frames(3, 4) == [0, 1, 2]


def test_listing_labels_reading_and_unreadable_videos(tmp_path):
    root = tmp_path / "vids"
    (root / "left").mkdir(parents=True)
    (root / "right" / "clip2").mkdir(parents=True)
    f = frames(t=4, h=8, w=8)
    (root / "left" / "clip1.mp4").write_bytes(mp4_bytes(f, 25.0))
    (root / "left" / "notes.txt").write_text("not a video")
    for i, fr in enumerate(f):
        Image.fromarray(fr).save(root / "right" / "clip2" / f"{i:03d}.png")
    vs = list_videos(str(root), {})
    assert [(v.name, v.label, len(v.files)) for v in vs.videos] == [("left/clip1.mp4", "left", 1),
                                                                     ("right/clip2", "right", 4)]
    assert np.array_equal(read_video(vs, vs.videos[1], (8, 8)), f)
    assert read_video(vs, vs.videos[0], (8, 8), frames=2).shape == (2, 8, 8, 3)
    (root / "left" / "clip3.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really")
    vs = list_videos(str(root), {})
    bad = next(v for v in vs.videos if v.name.endswith("clip3.mp4"))
    with pytest.raises(UserInputError, match=r"cannot read video '.*clip3.mp4'"):
        read_video(vs, bad, (8, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no videos under --videos"):
        list_videos(str(tmp_path / "empty"), {})
    with pytest.raises(UserInputError, match="not found"):
        list_videos(str(tmp_path / "missing"), {})
