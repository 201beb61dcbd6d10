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
    finally:
        subprocess.run([demo, "stop"], env=env, capture_output=True, timeout=60)
    assert not list((tmp_path / "demo").glob("*.pid"))
