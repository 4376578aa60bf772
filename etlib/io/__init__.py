"""Video and audio I/O through the ffmpeg that ships with ``imageio-ffmpeg`` (no system ffmpeg).

- :func:`probe`: size, frame count, fps (variable frame rate detected), audio rate and channels.
- :func:`iter_frames`: a streaming frame reader (optional resize, optional re-timing to a fps).
- :func:`read_audio` / :func:`write_wav`: float32 audio at any rate, mono by default.
- :func:`write_video`: mp4 (libx264, yuv420p) with the audio muxed in as AAC, written atomically.
"""

from etlib.io._ffmpeg import MediaError, NoAudioStreamError, NotAVideoError, atomic_output, ffmpeg_exe
from etlib.io.audio import read_audio, write_wav
from etlib.io.probe import AudioStreamInfo, MediaInfo, VideoStreamInfo, probe
from etlib.io.video import iter_frames, read_frames, write_video

__all__ = [
    "AudioStreamInfo",
    "MediaError",
    "MediaInfo",
    "NoAudioStreamError",
    "NotAVideoError",
    "VideoStreamInfo",
    "atomic_output",
    "ffmpeg_exe",
    "iter_frames",
    "probe",
    "read_audio",
    "read_frames",
    "write_video",
    "write_wav",
]
