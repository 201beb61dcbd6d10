"""The one error of the OpenJD translation: the template or a value refused, with the reason."""


class OpenJDError(ValueError):
    """An invalid submission body, template or parameter value; the message names the place
    (openjd-model's own message where the library found the fault)."""
