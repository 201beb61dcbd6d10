"""The README's first command: a local farm runs the demo job to DONE, then stops."""
import os
import subprocess

from processes import ROOT, free_port


def test_demo_farm_runs_the_demo_job_to_done_and_stops(tmp_path):
    env = dict(os.environ, PULI_DEMO_DIR=str(tmp_path / "demo"), PULI_DEMO_PORT=str(free_port()),
               PULI_DEMO_WORKER_PORT=str(free_port() - 1), PULI_DEMO_TIMEOUT="90")
    demo = os.path.join(ROOT, "scripts", "demo-farm")
    try:
        out = subprocess.run([demo], env=env, capture_output=True, text=True, timeout=240)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "the demo job is DONE" in out.stdout
        sequence = (tmp_path / "demo" / "output" / "sequence.txt").read_text().splitlines()
        assert [line.split()[1] for line in sequence] == [str(f) for f in range(1, 9)]
        # The running farm's command lines (which ps shows to every user) hold no token.
        farm = []
        for pidfile in (tmp_path / "demo").glob("*.pid"):
            with open(f"/proc/{pidfile.read_text().strip()}/cmdline", "rb") as cmdline:
                farm.append(cmdline.read())
        assert farm and not [line for line in farm if b"puli_" in line]
        assert (os.stat(tmp_path / "demo" / "worker.token").st_mode & 0o777) == 0o600
    finally:
        subprocess.run([demo, "stop"], env=env, capture_output=True, timeout=60)
    assert not list((tmp_path / "demo").glob("*.pid"))
