"""The frames of a video file or a camera for the tools that read them (``tools/demo.py
--video-input / --webcam``): one error, :class:`VideoError`, naming the source and what failed
(no such file, OpenCV cannot open it, no frame decodes), and the frame rate a drawn video is
written at (the container's, 25 when it gives none)."""

from pathlib import Path

import cv2

__all__ = ["DEFAULT_FPS", "VideoError", "frames", "open_capture"]

DEFAULT_FPS = 25.0  # a container without a frame rate (e.g. some camera streams)


class VideoError(RuntimeError):
    """A video or camera OpenCV cannot open or read."""


def open_capture(source):
    """cv2.VideoCapture of a file path or a camera index, and its frame rate (DEFAULT_FPS when
    the container gives none); VideoError when OpenCV cannot open it."""
    what = f"camera {source}" if isinstance(source, int) else f"video {source}"
    if not isinstance(source, int) and not Path(source).is_file():
        raise VideoError(f"{what}: no such file")
    cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    if not cap.isOpened():
        raise VideoError(
            f"{what}: OpenCV cannot open it"
            + (" (no camera on this machine?)" if isinstance(source, int)
               else " (not a video, damaged, or a codec this OpenCV build lacks)")
        )  # fmt: skip
    fps = cap.get(cv2.CAP_PROP_FPS)
    return cap, fps if fps and fps > 0 else DEFAULT_FPS


def frames(cap, source, max_frames=None):
    """(index, BGR frame) of an opened capture until its end or ``max_frames``; VideoError when
    not even the first frame decodes."""
    i = 0
    while max_frames is None or i < max_frames:
        ok, frame = cap.read()
        if not ok:
            if i == 0:
                raise VideoError(f"video {source}: no frame could be decoded (damaged?)")
            return
        yield i, frame
        i += 1
