"""What the worker tells the dispatcher about its host: hardware, OS, GPUs and current load."""

import logging
import os
import platform
import shutil
import socket
import subprocess

import psutil

import puli

log = logging.getLogger("puli.worker.sysinfo")

NVIDIA_SMI_QUERY = ["--query-gpu=index,name,memory.total,driver_version,uuid",
                    "--format=csv,noheader,nounits"]


def host_info(settings, isolation):
    """The registration's system information: cores, RAM (MB), speed (GHz) and caracteristics."""
    gpus = detect_gpus() if settings.gpu_detection else []
    caracteristics = {
        "os": platform.system().lower(),
        "distribution": distribution(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "hostname": socket.gethostname(),
        "cpuname": cpu_name(),
        "isolation": isolation,
        "softs": list(settings.softs),
        "gpus": gpus,
        "gpuCount": len(gpus),
    }
    if gpus:
        # Flat keys, so that a task can require {"gpuMemory": 8000} or {"gpuModel": "..."}.
        caracteristics["gpuModel"] = gpus[0]["name"]
        caracteristics["gpuMemory"] = min(gpu["memory"] for gpu in gpus)
    return {
        "cores": psutil.cpu_count(logical=True) or 1,
        "ram": psutil.virtual_memory().total // (1 << 20),
        "speed": cpu_speed(),
        "caracteristics": caracteristics,
        "puliversion": puli.__version__,
    }


def load_info():
    """The heartbeat's figures: free RAM (MB), swap use (%) and load averages."""
    return {
        "systemFreeRam": psutil.virtual_memory().available // (1 << 20),
        "systemSwapPercentage": psutil.swap_memory().percent,
        "load": list(os.getloadavg()),
    }


def distribution():
    """PRETTY_NAME of /etc/os-release, such as "Debian GNU/Linux 12 (bookworm)"; "" if unknown."""
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return ""
    return release.get("PRETTY_NAME") or release.get("NAME", "")


def _cpuinfo(key):
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as stream:
            for line in stream:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return ""


def cpu_name():
    return _cpuinfo("model name") or platform.processor()


def cpu_speed():
    """The CPU's speed in GHz: its nominal maximum where the kernel tells it, else the current one."""
    frequency = psutil.cpu_freq()
    if frequency is not None and (frequency.max or frequency.current):
        return round((frequency.max or frequency.current) / 1000, 2)
    try:
        return round(float(_cpuinfo("cpu MHz")) / 1000, 2)
    except ValueError:
        return 0.0


def detect_gpus():
    """NVIDIA GPUs as nvidia-smi lists them: [{index, name, memory (MB), driver, uuid}].

    None installed, or an answer we cannot read, is no GPU: a broken driver must not keep the
    node from working on CPU jobs, so it is logged rather than raised.
    """
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return []
    try:
        result = subprocess.run([executable, *NVIDIA_SMI_QUERY], capture_output=True, text=True,
                                timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("nvidia-smi failed, no GPU reported: %s", exc)
        return []
    gpus = parse_nvidia_smi(result.stdout) if result.returncode == 0 else None
    if gpus is None:
        answer = (result.stdout + result.stderr).strip().splitlines()
        log.warning("nvidia-smi exited with %d and an answer we cannot read, no GPU reported: %s",
                    result.returncode, answer[0] if answer else "(nothing)")
        return []
    return gpus


def parse_nvidia_smi(text):
    """The GPUs of nvidia-smi's CSV answer to NVIDIA_SMI_QUERY, or None if it is not that."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 5:
            return None
        index, name, memory, driver, uuid = fields
        try:
            gpus.append({"index": int(index), "name": name, "memory": int(float(memory)),
                         "driver": driver, "uuid": uuid})
        except ValueError:
            return None
    return gpus or None
