"""A job template and its parameter values through openjd-model: decoded, checked against the
parameters' types, constraints and defaults, and instantiated into a Job (format strings of the
job's scope resolved). Every refusal carries the library's message."""
from pathlib import Path

from openjd.model import (DecodeValidationError, ParameterValue, ParameterValueType, TemplateSpecificationVersion,
                          create_job, decode_job_template, preprocess_job_parameters)

from .errors import OpenJDError

# The extensions Puli implements; a template naming another is refused by the library.
SUPPORTED_EXTENSIONS = ("TASK_CHUNKING",)


def decode(template):
    """The decoded JobTemplate of a template object."""
    try:
        decoded = decode_job_template(template=template, supported_extensions=SUPPORTED_EXTENSIONS)
    except (DecodeValidationError, NotImplementedError) as exc:
        raise OpenJDError(f"invalid job template: {exc}") from None
    if decoded.specificationVersion != TemplateSpecificationVersion.JOBTEMPLATE_v2023_09:
        raise OpenJDError(f"unsupported specificationVersion {decoded.specificationVersion}")
    return decoded


def parameter_values(decoded, values):
    """The job parameters' values: given ones checked against their definitions, defaults for
    the others. Paths are taken as the submitter wrote them (the dispatcher sees no workstation
    file system)."""
    try:
        return preprocess_job_parameters(job_template=decoded, job_parameter_values=dict(values),
                                         job_template_dir=Path(), current_working_dir=Path(),
                                         allow_job_template_dir_walk_up=True)
    except (DecodeValidationError, ValueError, KeyError, TypeError) as exc:
        raise OpenJDError(f"invalid job parameter values: {exc}") from None


def instantiate(decoded, values):
    """The Job (its name, steps, parameter spaces and host requirements resolved)."""
    try:
        return create_job(job_template=decoded, job_parameter_values=values)
    except (DecodeValidationError, ValueError) as exc:
        raise OpenJDError(f"the template cannot be instantiated with these values: {exc}") from None


def values_to_wire(values):
    """{name: {"type": ..., "value": ...}}: what the job keeps and a node rebuilds them from."""
    return {name: {"type": v.type.value, "value": v.value} for name, v in values.items()}


def values_from_wire(wire):
    return {name: ParameterValue(type=ParameterValueType(v["type"]), value=v["value"]) for name, v in wire.items()}
