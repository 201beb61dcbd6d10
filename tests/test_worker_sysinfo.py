"""The system information the worker registers with, NVIDIA GPUs included (a fake nvidia-smi on
PATH prints recorded answers, see tests/fixtures/nvidia-smi/README.md)."""
import logging
import os
import stat

import pytest

from puli.worker import sysinfo
from puli.worker.settings import load_settings
from test_worker_support import FIXTURES, farm, ready_worker, registered  # noqa: F401


def fake_nvidia_smi(directory, answer, status=0):
    """An nvidia-smi that prints `answer` (a fixture file) to the worker's query, and only to it."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "nvidia-smi"
    expected = " ".join(sysinfo.NVIDIA_SMI_QUERY)
    script.write_text(f"#!/bin/sh\n"
                      f"[ \"$*\" = \"{expected}\" ] || {{ echo \"unexpected arguments: $*\" >&2; exit 2; }}\n"
                      f"cat '{answer}'\nexit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return directory


def test_the_gpus_nvidia_smi_lists_reach_the_dispatcher(farm, tmp_path):
    bin_dir = fake_nvidia_smi(tmp_path / "bin", FIXTURES / "two-quadro-rtx-4000.csv")
    worker = ready_worker(farm, env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    caracteristics = registered(farm, worker.name)["caracteristics"]
    assert caracteristics["gpuCount"] == 2
    assert caracteristics["gpuModel"] == "Quadro RTX 4000" and caracteristics["gpuMemory"] == 8192
    assert [(g["index"], g["name"], g["memory"], g["driver"]) for g in caracteristics["gpus"]] == [
        (0, "Quadro RTX 4000", 8192, "535.129.03"), (1, "Quadro RTX 4000", 8192, "535.129.03")]
    assert caracteristics["gpus"][1]["uuid"] == "GPU-d6de6afc-bdfe-75c4-5273-0544439153fc"
    assert caracteristics["isolation"] == "pgroup"
    assert worker.get("/sysinfos/")[1]["caracteristics"]["gpus"] == caracteristics["gpus"]


def test_an_unreadable_answer_means_no_gpu_and_a_warning(tmp_path, monkeypatch, caplog):
    bin_dir = fake_nvidia_smi(tmp_path / "bin", FIXTURES / "driver-not-loaded.txt", status=9)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with caplog.at_level(logging.WARNING, logger="puli.worker.sysinfo"):
        assert sysinfo.detect_gpus() == []
    assert "NVIDIA-SMI has failed" in caplog.text and "exited with 9" in caplog.text


def test_without_nvidia_smi_there_is_no_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert sysinfo.detect_gpus() == []


@pytest.mark.parametrize("answer", ["", "0, Quadro RTX 4000, lots, 535.129.03, GPU-1\n", "0, one field short, 1, 2\n"])
def test_parse_refuses_what_is_not_the_querys_answer(answer):
    assert sysinfo.parse_nvidia_smi(answer) is None


def test_host_information_describes_this_machine(tmp_path):
    info = sysinfo.host_info(load_settings(data_dir=tmp_path, softs=["nuke"], gpu_detection=False), "cgroup1")
    assert info["cores"] >= 1 and info["ram"] > 0 and info["speed"] >= 0
    caracteristics = info["caracteristics"]
    assert caracteristics["os"] == "linux" and caracteristics["distribution"]
    assert caracteristics["cpuname"] and caracteristics["isolation"] == "cgroup1"
    assert caracteristics["softs"] == ["nuke"] and caracteristics["gpus"] == []
    load = sysinfo.load_info()
    assert load["systemFreeRam"] > 0 and 0 <= load["systemSwapPercentage"] <= 100 and len(load["load"]) == 3
