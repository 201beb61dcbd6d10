"""Progress from output lines: the explicit protocol and the renderer parsers, on recorded-looking
samples in tests/fixtures/commandwatcher/."""
from pathlib import Path

import pytest

from puli.commandwatcher.progress import Progress, UnknownParser, make_reader, protocol

FIXTURES = Path(__file__).parent / "fixtures" / "commandwatcher"


def lines_of(name):
    # ffmpeg ends its status lines with \r, as on a terminal: split like the watcher does.
    return [line.decode() for line in (FIXTURES / name).read_bytes().splitlines() if line]


def updates(parser_name, fixture, arguments=None):
    read = make_reader(parser_name, arguments or {})
    return [progress for progress in map(read, lines_of(fixture)) if progress is not None]


@pytest.mark.parametrize("line, expected", [
    ("PULI_PROGRESS 0.42", Progress(completion=0.42)),
    ("PULI_PROGRESS 42%", Progress(completion=0.42)),
    ("PULI_PROGRESS 42 %", Progress(completion=0.42)),
    ("PULI_PROGRESS 1.5", Progress(completion=1.0)),            # clamped
    ("PULI_PROGRESS .5", Progress(completion=0.5)),
    ("PULI_MESSAGE rendering pass 2", Progress(message="rendering pass 2")),
    ('PULI_STATS {"samples": 128, "gpu": "A100"}', Progress(stats={"samples": 128, "gpu": "A100"})),
    ("openjd_progress: 42.5", Progress(completion=0.425)),
    ("openjd_status: Rendering tile 3", Progress(message="Rendering tile 3")),
])
def test_protocol_lines(line, expected):
    assert protocol(line) == expected


@pytest.mark.parametrize("line", [
    "PULI_PROGRESS", "PULI_PROGRESS half", "PULI_PROGRESS -0.5", "PULI_STATS [1, 2]", "PULI_STATS {not json",
    "openjd_progress: lots", "progress 0.5", "  PULI_PROGRESS 0.5", "Fra:1 Sample 1/2",
])
def test_protocol_ignores_other_and_malformed_lines(line):
    assert protocol(line) is None


def test_blender_samples_and_saved():
    found = updates("blender", "blender.log")
    assert [u.completion for u in found] == [0.25, 0.5, 1.0, 1.0]
    assert found[0].message == "frame 12: 32/128"
    assert found[-1].message == "saved /renders/shot010/lighting.0012.exr"


def test_blender_tiles():
    read = make_reader("blender", {})
    assert read("Fra:3 Mem:12.00M (Peak 12.00M) | Time:00:01.00 | Rendered 4/16 Tiles").completion == 0.25


def test_arnold_percent_done():
    assert [u.completion for u in updates("arnold", "arnold.log")] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_vray_rendering_image():
    assert [u.completion for u in updates("vray", "vray.log")] == [0.0, 0.42, 0.975, 1.0]


def test_nuke_frames():
    found = updates("nuke", "nuke.log")
    assert [u.completion for u in found] == [0.25, 0.5, 0.75, 1.0]
    assert found[2].message == "frame 12 (3 of 4)"


def test_ffmpeg_against_frames_or_duration():
    assert [u.completion for u in updates("ffmpeg", "ffmpeg.log", {"frames": 240})] == [0.25, 0.5, 1.0]
    assert [u.completion for u in updates("ffmpeg", "ffmpeg.log", {"duration": "10"})] == [0.25, 0.5, 1.0]
    assert updates("ffmpeg", "ffmpeg.log", {}) == []                 # no total: no progress


def test_protocol_still_works_with_a_parser():
    read = make_reader("arnold", {})
    assert read("PULI_MESSAGE hi") == Progress(message="hi")
    assert read("00:00:01  10MB  |    10% done - 3 rays/pixel") == Progress(completion=0.1)


def test_unknown_parser_is_refused():
    with pytest.raises(UnknownParser, match="unknown progress parser 'renderman' \\(known: arnold, blender"):
        make_reader("renderman", {})
