"""Progress, messages and stats read from a command's output, one line at a time.

Two sources, both fed the same decoded line (no line ending):
- the explicit protocol, always on: ``PULI_PROGRESS 0.42`` or ``PULI_PROGRESS 42%``,
  ``PULI_MESSAGE text``, ``PULI_STATS {"json": 1}``, and OpenJD's ``openjd_progress: 42.5``
  (percent) and ``openjd_status: text``;
- one renderer parser chosen per task by name (``parser`` argument): see ``PARSERS``.

Completion is always a fraction 0..1 of the current process's run.
"""
import json
import re
from collections import namedtuple

# What one output line says; None fields say nothing. (A namedtuple rather than a dataclass:
# importing dataclasses would add to every command's start-up.)
Progress = namedtuple("Progress", "completion message stats", defaults=(None, None, None))


def _fraction(value):
    return min(1.0, max(0.0, value))


_NUMBER = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_PULI_PROGRESS = re.compile(r"PULI_PROGRESS\s+" + _NUMBER + r"\s*(%?)\s*$")
_OPENJD_PROGRESS = re.compile(r"openjd_progress:\s*" + _NUMBER + r"\s*$")


def protocol(line):
    """The explicit protocol; None when the line is not a protocol line (or is malformed)."""
    # A cheap prefix test first: almost every line is plain output.
    if line.startswith("PULI_"):
        if line.startswith("PULI_PROGRESS"):
            match = _PULI_PROGRESS.match(line)
            if match:
                value = float(match.group(1))
                return Progress(completion=_fraction(value / 100.0 if match.group(2) else value))
        elif line.startswith("PULI_MESSAGE"):
            return Progress(message=line[len("PULI_MESSAGE"):].strip())
        elif line.startswith("PULI_STATS"):
            try:
                stats = json.loads(line[len("PULI_STATS"):])
            except (ValueError, RecursionError):    # RecursionError: nested too deep to decode
                return None
            if isinstance(stats, dict):
                return Progress(stats=stats)
    elif line.startswith("openjd_"):
        if line.startswith("openjd_progress:"):
            match = _OPENJD_PROGRESS.match(line)
            if match:
                return Progress(completion=_fraction(float(match.group(1)) / 100.0))
        elif line.startswith("openjd_status:"):
            return Progress(message=line[len("openjd_status:"):].strip())
    return None


class Parser:
    """A renderer's output parser; `arguments` are the command's arguments (some parsers need a
    total, e.g. ffmpeg's `frames` or `duration`)."""

    def __init__(self, arguments=None):
        self.arguments = arguments or {}

    def parse(self, line):
        raise NotImplementedError


class BlenderParser(Parser):
    """Blender: ``Fra:12 Mem:... | Sample 32/128`` (Cycles), ``Rendered 3/16 Tiles``,
    ``Saved: '/out/f_0012.png'`` when the frame is written."""

    _SAMPLE = re.compile(r"\bSample (\d+)\s*/\s*(\d+)")
    _TILES = re.compile(r"\bRendered (\d+)\s*/\s*(\d+) Tiles")
    _FRAME = re.compile(r"^Fra:\s*(\d+)")

    def parse(self, line):
        if line.startswith("Saved:"):
            return Progress(completion=1.0, message="saved " + line[len("Saved:"):].strip().strip("'\""))
        if not line.startswith("Fra:"):
            return None
        match = self._SAMPLE.search(line) or self._TILES.search(line)
        if not match or int(match.group(2)) == 0:
            return None
        frame = self._FRAME.match(line).group(1)
        done, total = int(match.group(1)), int(match.group(2))
        return Progress(completion=_fraction(done / total), message=f"frame {frame}: {done}/{total}")


class ArnoldParser(Parser):
    """Arnold (kick): ``00:00:12  1024MB  |   40% done - 12 rays/pixel``."""

    _DONE = re.compile(r"(\d+(?:\.\d+)?)\s*% done - ")

    def parse(self, line):
        if "% done" not in line:
            return None
        match = self._DONE.search(line)
        return Progress(completion=_fraction(float(match.group(1)) / 100.0)) if match else None


class VRayParser(Parser):
    """V-Ray: ``[2024/Mar/5|10:02:15] Rendering image...: 42.0% [ 0h  0m  5.2s] [ 0h  0m  7.1s est]``."""

    _IMAGE = re.compile(r"Rendering image\.\.\.:\s*(\d+(?:\.\d+)?)%")

    def parse(self, line):
        if "Rendering image" not in line:
            return None
        match = self._IMAGE.search(line)
        if match:
            return Progress(completion=_fraction(float(match.group(1)) / 100.0))
        if "Rendering image...: done" in line:
            return Progress(completion=1.0)
        return None


class NukeParser(Parser):
    """Nuke: ``Frame 12 (3 of 10)`` once frame 12, the third of ten, is written."""

    _FRAME = re.compile(r"^Frame (-?\d+) \((\d+) of (\d+)\)")

    def parse(self, line):
        if not line.startswith("Frame "):
            return None
        match = self._FRAME.match(line)
        if not match or int(match.group(3)) == 0:
            return None
        index, total = int(match.group(2)), int(match.group(3))
        return Progress(completion=_fraction(index / total), message=f"frame {match.group(1)} ({index} of {total})")


class FFmpegParser(Parser):
    """ffmpeg's status line ``frame=  123 fps= 25 ... time=00:00:05.00 ...`` against the total
    given in the arguments: ``frames`` (a frame count) or ``duration`` (seconds)."""

    _FRAME = re.compile(r"frame=\s*(\d+)")
    _TIME = re.compile(r"time=\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")

    def __init__(self, arguments=None):
        super().__init__(arguments)
        self.frames = _positive(self.arguments.get("frames"))
        self.duration = _positive(self.arguments.get("duration"))

    def parse(self, line):
        if self.frames:
            match = self._FRAME.search(line)
            if match:
                return Progress(completion=_fraction(int(match.group(1)) / self.frames))
        if self.duration:
            match = self._TIME.search(line)
            if match:
                hours, minutes, seconds = match.groups()
                elapsed = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
                return Progress(completion=_fraction(elapsed / self.duration))
        return None


def _positive(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


PARSERS = {
    "blender": BlenderParser,
    "arnold": ArnoldParser,
    "vray": VRayParser,
    "nuke": NukeParser,
    "ffmpeg": FFmpegParser,
}


class UnknownParser(ValueError):
    pass


def make_reader(parser_name, arguments):
    """A function line -> Progress | None: the protocol, then the named parser (if any)."""
    if not parser_name:
        return protocol
    try:
        parser = PARSERS[parser_name](arguments)
    except KeyError:
        raise UnknownParser(f"unknown progress parser {parser_name!r} (known: {', '.join(sorted(PARSERS))})") from None

    def read(line):
        return protocol(line) or parser.parse(line)
    return read
