"""requirements.lock pins every runtime dependency Puli installs, and what the tests run (like
the packages and the Ansible roles' wheel install, which install with it) is what it pins."""
import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement

LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned():
    out = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not name==version"
            out[canonical(name)] = version
    return out


def runtime_closure():
    """The distributions Puli's runtime requirements bring, transitively, as installed here."""
    seen, todo = set(), ["puli"]
    while todo:
        for text in importlib.metadata.requires(todo.pop()) or ():
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue                    # an extra (test) or another platform's
            name = canonical(requirement.name)
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def test_every_runtime_dependency_is_pinned_and_installed_at_its_pin():
    lock = pinned()
    closure = runtime_closure()
    assert closure - set(lock) == set(), "run scripts/update-lock: these are not pinned"
    installed = {name: importlib.metadata.version(name) for name in closure}
    assert {name: lock[name] for name in closure} == installed
