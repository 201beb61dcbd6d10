"""The demo farm's job: submit it, follow it to the end, say where its outputs are."""
import json
import os
import sys
import time
import urllib.request

STATUS = {0: "BLOCKED", 1: "READY", 2: "RUNNING", 3: "DONE", 4: "ERROR", 5: "CANCELED", 6: "PAUSED"}


def call(url, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {os.environ['PULI_TOKEN']}"}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def graph(out):
    """Frames rendered in packets of two by 'render', then put together by 'assemble'."""
    frame = f"{out}/frame_%%MI_FRAME%%.txt"
    return {
        "name": "demo", "user": "demo", "root": 0,
        "tasks": [
            {"type": "TaskGroup", "name": "demo", "tasks": [1, 2]},
            {"type": "Task", "name": "render", "minNbCores": 1, "maxNbCores": 1,
             "arguments": {"start": 1, "end": 8, "packetSize": 2,
                           "cmd": f"mkdir -p {out} && sleep 1 && echo PULI_PROGRESS 50% && "
                                  f"echo \"frame %%MI_FRAME%% rendered on $(hostname) by command $PULI_COMMAND_ID\" > {frame}"}},
            {"type": "Task", "name": "assemble", "dependencies": [[1, [3]]],
             "arguments": {"cmd": f"cat {out}/frame_*.txt > {out}/sequence.txt"}},
        ],
    }


def main(server, out, timeout):
    job = call(f"{server}/graphs/", "POST", graph(out))["id"]
    print(f"==> submitted job {job} (GET {server}/nodes/{job})")
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        node = call(f"{server}/nodes/{job}")
        line = (f"    job {job} {STATUS[node['status']]:<8} {node['completion'] * 100:5.1f}%  "
                f"{node['doneCommandCount']}/{node['commandCount']} commands done")
        if line != last:
            print(line, flush=True)
            last = line
        if node["status"] in (3, 4, 5):
            return 0 if node["status"] == 3 else 1
        time.sleep(0.5)
    print(f"error: the demo job did not finish within {timeout} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
