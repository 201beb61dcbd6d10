"""Secrets out of what is printed and logged: a URL's password, a bearer token, a Puli token."""
import re

_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@'\"]*:)(?!password@)[^@\s'\"]*@")  # not the placeholder of a hint
_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)
_TOKEN = re.compile(r"\bpuli_[A-Za-z0-9_-]{8,}")
SECRET_WORDS = ("password", "token", "secret")      # settings whose values are never shown


def redact(text):
    """`text` with every URL password, bearer token and Puli token replaced by ***."""
    text = _URL_PASSWORD.sub(r"\1***@", str(text))
    text = _BEARER.sub(r"\1***", text)
    return _TOKEN.sub("puli_***", text)


def is_secret(name):
    """A setting or field whose value is a secret, by its name."""
    return any(word in name.lower() for word in SECRET_WORDS)
