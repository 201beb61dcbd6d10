"""Synthetic farms for the benchmarks: N render nodes in a few pools, jobs of frame commands."""
import random

from puli.model import worker_protocol
from puli.model.build import build_job
from puli.model.farm import Farm
from puli.model.graph import parse_graph


def make_farm(nodes=5000, jobs=10000, commands_per_job=100, pools=5, cores=8, seed=1, now=0.0):
    """A farm with every node registered and every job submitted through the real build path."""
    rng = random.Random(seed)
    farm = Farm()
    pool_names = [f"pool{i}" for i in range(pools)]
    for i in range(nodes):
        worker_protocol.register(farm, f"rn{i:05d}:8000",
                         {"cores": cores, "ram": 65536, "speed": 3.0,
                          "caracteristics": {"os": "linux", "softs": ["blender"]},
                          "pools": [pool_names[i % pools]]}, [], now)
    for j in range(jobs):
        job = build_job(farm, parse_graph(job_graph(j, commands_per_job, pool_names[j % pools], rng)), now)
        farm.publish(job, now)
    farm.take_dirty()
    farm.take_outbox()
    return farm


def job_graph(j, commands, pool, rng):
    return {
        "name": f"job{j}", "user": f"user{j % 50}", "poolName": pool, "root": 0,
        "tasks": [{
            "type": "Task", "name": f"render{j}", "dispatchKey": rng.randint(0, 10),
            "minNbCores": 1, "maxNbCores": 1,
            "requirements": {"softs": ["blender"]},
            "arguments": {"cmd": "blender -b scene.blend -f %%MI_FRAME%%", "start": 1, "end": commands},
        }],
    }
