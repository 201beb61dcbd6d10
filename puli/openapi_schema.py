"""The building blocks of the OpenAPI 3.0 documents the dispatcher and the worker serve
(puli/dispatcher/openapi.py, puli/worker/openapi.py): JSON Schema fragments, written short."""


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def arr(items):
    return {"type": "array", "items": items}


def obj(properties=None, required=(), additional=None, description=None):
    out = {"type": "object"}
    if properties:
        out["properties"] = properties
    if required:
        out["required"] = list(required)
    if additional is not None:
        out["additionalProperties"] = additional
    if description:
        out["description"] = description
    return out


def nullable(schema):
    return dict(schema, nullable=True)


INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
ANY_OBJ = {"type": "object", "additionalProperties": True}
