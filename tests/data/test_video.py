"""Video frames for the tools (multitask_pose/data/video.py): a written video read back frame by
frame at its own frame rate, and one error naming the source for a missing file, a file that is
not a video, and a missing camera."""

import cv2
import numpy as np
import pytest

from multitask_pose.data.video import VideoError, frames, open_capture


def write_video(path, n, fps=5.0, size=(64, 48)):
    """``n`` frames of flat grey levels 40, 80, ... (MPEG-4, as tools/demo.py writes)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((size[1], size[0], 3), 40 * (i + 1), np.uint8))
    writer.release()


def test_frames_of_a_video_at_its_frame_rate(tmp_path):
    video = tmp_path / "walk.mp4"
    write_video(video, 4)
    cap, fps = open_capture(video)
    got = list(frames(cap, video))
    assert fps == pytest.approx(5.0)
    assert [i for i, _ in got] == [0, 1, 2, 3]
    for i, frame in got:  # (lossy MPEG-4: flat frames come back within a few grey levels)
        assert frame.shape == (48, 64, 3)
        assert abs(float(frame.mean()) - 40 * (i + 1)) < 4
    cap, _ = open_capture(str(video))
    assert [i for i, _ in frames(cap, video, max_frames=2)] == [0, 1]


def test_errors_name_the_source(tmp_path):
    with pytest.raises(VideoError, match=r"^video .*none\.mp4: no such file$"):
        open_capture(tmp_path / "none.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    # OpenCV refuses it at opening, or opens it and decodes no frame, by build: either is named.
    with pytest.raises(VideoError, match=rf"^video {bad}: (OpenCV cannot open it|no frame)"):
        cap, _ = open_capture(bad)
        list(frames(cap, bad))
    # A video with no frame (an AVI OpenCV opens): named at its first frame.
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (64, 48)).release()
    cap, _ = open_capture(empty)
    with pytest.raises(VideoError, match=rf"^video {empty}: no frame could be decoded"):
        list(frames(cap, empty))
    if not cv2.VideoCapture(0).isOpened():
        with pytest.raises(VideoError, match=r"^camera 0: OpenCV cannot open it \(no camera"):
            open_capture(0)
