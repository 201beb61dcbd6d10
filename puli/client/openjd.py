"""Submitting an Open Job Description template: `submit_openjd(template, parameters)`.

The template is a file (YAML or JSON), its text, or the object itself; the dispatcher validates
and expands it with openjd-model (POST /openjd/jobs) and refuses it whole, with the library's
message, when it or a parameter value is invalid."""
import json
import os

import yaml

from .errors import GraphError, GraphSubmissionError, SubmissionUnreachable
from .server import PuliError, RequestError, Server, ServerUnreachable, server_url


def load_template(template):
    """The template as an object: from a dict, a path to a .yaml/.json file, or YAML/JSON text."""
    if isinstance(template, dict):
        return template
    text = str(template)
    if isinstance(template, os.PathLike) or (("\n" not in text) and os.path.exists(text)):
        try:
            with open(template, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise GraphError(f"cannot read the template {template}: {exc}") from None
    try:
        data = yaml.safe_load(text)         # JSON is YAML too
    except yaml.YAMLError as exc:
        raise GraphError(f"the template is neither YAML nor JSON: {exc}") from None
    if not isinstance(data, dict):
        raise GraphError("the template must be a YAML or JSON object")
    return data


def submit_openjd(template, parameters=None, pool=None, priority=None, host=None, port=None, timeout=60.0,
                  token=None):
    """Submit an OpenJD job; returns (location URL, body) — the body holds the new job's `id`,
    `name`, `nodes`, `commands` and `openjd` (its name and parameter values). Raises
    GraphSubmissionError (SubmissionUnreachable when the dispatcher cannot be reached)."""
    body = {"template": load_template(template), "parameters": dict(parameters or {})}
    if pool:
        body["pool"] = pool
    if priority is not None:
        body["priority"] = priority
    json.dumps(body)                        # a value that is not JSON fails here, not on the wire
    try:
        server = Server(server_url(host, port), timeout=timeout, token=token)
    except PuliError as exc:
        raise GraphSubmissionError(str(exc)) from None
    try:
        response = server.request("POST", "/openjd/jobs", body)
    except ServerUnreachable as exc:
        raise SubmissionUnreachable(exc.url, exc.reason) from None
    except RequestError as exc:
        raise GraphSubmissionError(f"the dispatcher refused the OpenJD job: {exc}", exc.status, exc.title,
                                   exc.description) from None
    except PuliError as exc:
        raise GraphSubmissionError(str(exc)) from None
    finally:
        server.close()
    created = response.json()
    location = response.headers.get("Location") or f"/nodes/{created['id']}"
    if location.startswith("/"):
        location = server.url + location
    return location, created
