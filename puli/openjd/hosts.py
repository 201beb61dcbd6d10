"""A step's hostRequirements as Puli's: cores and RAM reserved per command, and requirements
matched against the render nodes' caracteristics (RenderNode.matches)."""
import math

from .errors import OpenJDError

RUNNER_OS = {"linux": "linux", "windows": "windows", "macos": "darwin"}      # platform.system().lower()
RUNNER_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}                      # platform.machine()


def host_requirements(step):
    """{"minNbCores", "maxNbCores", "ramUse", "requirements"} of the graph's task for `step`."""
    out = {"minNbCores": 1, "maxNbCores": 0, "ramUse": 0, "requirements": {}}
    req = step.hostRequirements
    if req is None:
        return out
    where = f"steps[{step.name}].hostRequirements"
    requirements = out["requirements"]
    for amount in req.amounts or ():
        name, low, high = amount.name, amount.min, amount.max
        here = f"{where}.amounts[{name}]"
        if name == "amount.worker.vcpu":
            out["minNbCores"] = max(1, math.ceil(low)) if low is not None else 1
            if high is not None:
                out["maxNbCores"] = max(out["minNbCores"], math.floor(high))
        elif name in ("amount.worker.memory", "amount.worker.gpu", "amount.worker.gpu.memory"):
            if high is not None:
                raise OpenJDError(f"{here}: a maximum is not supported (Puli reserves and matches minimums)")
            if low is None:
                continue
            if name == "amount.worker.memory":
                out["ramUse"] = math.ceil(low)                      # MiB, Puli's MB
            else:
                requirements["gpuCount" if name == "amount.worker.gpu" else "gpuMemory"] = math.ceil(low)
        else:
            raise OpenJDError(f"{here}: not supported by Puli (supported: amount.worker.vcpu, "
                              "amount.worker.memory, amount.worker.gpu, amount.worker.gpu.memory)")
    for attribute in req.attributes or ():
        name = attribute.name
        here = f"{where}.attributes[{name}]"
        values = list(attribute.anyOf or attribute.allOf or ())
        if name in ("attr.worker.os.family", "attr.worker.cpu.arch"):
            table, key = (RUNNER_OS, "os") if name.endswith("os.family") else (RUNNER_ARCH, "arch")
            if len(values) != 1:
                raise OpenJDError(f"{here}: Puli matches one value here, not {values}")
            requirements[key] = table[values[0].lower()] if values[0].lower() in table else values[0]
        elif name.startswith("attr.worker."):
            raise OpenJDError(f"{here}: not supported by Puli (supported: attr.worker.os.family, "
                              "attr.worker.cpu.arch, and custom attributes)")
        else:
            # A custom attribute: each value is a soft the render node must have (its `softs`
            # setting); Puli requires all of them, so anyOf takes a single value.
            if attribute.anyOf is not None and len(values) != 1:
                raise OpenJDError(f"{here}: anyOf with several values is not supported (Puli requires "
                                  "every listed soft); use allOf, or a single value")
            softs = requirements.setdefault("softs", [])
            softs.extend(v for v in values if v not in softs)
    return out
