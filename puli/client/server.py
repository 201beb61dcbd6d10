"""The HTTP client of the dispatcher's API, used by the job-script API and the CLIs.

Where the dispatcher is (`server_url`), first match wins: an explicit value (``host``,
``host:port`` or ``http://host:port``), the environment variable ``PULI_SERVER``, the ``server``
key of ``~/.config/puli/client.yml`` (``~`` being $HOME when it is read) then
``/etc/puli/client.yml``, else ``http://localhost:8004``. The token (`Authorization: Bearer`)
likewise: explicit, ``PULI_TOKEN``, ``token`` in those files (the user's file is refused when
others may read it); and the CA certificate an https dispatcher is checked against: explicit,
``PULI_CA_FILE``, ``ca_file`` in those files, else the system's CAs.

Every failure is a `PuliError` whose ``str()`` is one line for the user: `ServerUnreachable` when
the dispatcher cannot be reached (refused, timed out, bad address), `RequestError` when it answered
with an error status (its JSON ``title``/``description`` kept).
"""
import os
from urllib.parse import urlsplit

import requests

DEFAULT_PORT = 8004
DEFAULT_URL = f"http://localhost:{DEFAULT_PORT}"
CONFIG_FILES = ("~/.config/puli/client.yml", "/etc/puli/client.yml")


class PuliError(Exception):
    """Base of the client's errors; str() is a one-line message for the user."""


class ServerUnreachable(PuliError):
    """The dispatcher could not be reached (connection refused, timeout, bad address)."""

    def __init__(self, url, reason):
        super().__init__(f"cannot reach the dispatcher at {url}: {reason}")
        self.url = url
        self.reason = reason


class RequestError(PuliError):
    """The dispatcher answered with an error status."""

    def __init__(self, status, title="", description="", body=None):
        self.status = int(status)
        self.title = title or ""
        self.description = description or ""
        self.body = body
        text = f"{self.status} {self.title}" if self.title else str(self.status)
        if self.description:
            text += f": {self.description}"
        super().__init__(text)


class NoToken(PuliError):
    """The dispatcher wants a token and none was given."""

    def __init__(self, url):
        super().__init__(f"the dispatcher at {url} needs a token: set PULI_TOKEN, pass --token, "
                         "or put 'token: ...' in ~/.config/puli/client.yml (mode 600); an admin "
                         "makes one with 'puli-dispatcher tokens create --user NAME --role artist'")
        self.url = url


class ConfigError(PuliError):
    """The client configuration file cannot be read."""


def normalize_url(value, port=None):
    """``host``, ``host:port`` or ``http(s)://host[:port]`` as ``http://host:port`` (no trailing /).

    `port`, when given, replaces the one in `value`."""
    value = str(value).strip()
    if not value:
        raise PuliError("empty dispatcher address")
    if "://" not in value:
        value = "http://" + value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PuliError(f"bad dispatcher address {value!r}: expected host, host:port or http://host:port")
    try:
        url_port = parts.port
    except ValueError:
        raise PuliError(f"bad port in dispatcher address {value!r}") from None
    host = parts.hostname
    if ":" in host:                     # IPv6 literal
        host = f"[{host}]"
    if port is not None:
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise PuliError(f"bad port {port!r}: expected a number") from None
        if not 0 < port < 65536:
            raise PuliError(f"bad port {port}: expected 1..65535")
    else:
        port = url_port or (DEFAULT_PORT if parts.scheme == "http" else 443)
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{host}:{port}{path}"


def client_config(config_files=CONFIG_FILES):
    """server, token and ca_file from the client config files: for each, the first file that
    sets it. A token in the user's own file (the first) is refused when others may read it."""
    out = {}
    for index, name in enumerate(config_files):
        path = os.path.expanduser(name)
        if not os.path.isfile(path):
            continue
        import yaml
        try:
            with open(path) as f:
                data = yaml.safe_load(f)
            mode = os.stat(path).st_mode
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read it: {str(exc).splitlines()[0]}") from None
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping such as 'server: host:port'")
        if data.get("token") and index == 0 and mode & 0o077:
            raise ConfigError(f"{path} holds a token and others may read it (mode {mode & 0o777:o}): "
                              f"chmod 600 {path}")
        for key in ("server", "token", "ca_file"):
            if data.get(key) and key not in out:
                out[key] = str(data[key])
    return out


def server_url(server=None, port=None, config_files=CONFIG_FILES):
    """The dispatcher's base URL (see the module doc for the precedence); `config_files` are
    the client config files, first found first."""
    value = server or os.environ.get("PULI_SERVER") or client_config(config_files).get("server")
    if not value:
        return normalize_url(DEFAULT_URL, port)
    return normalize_url(value, port)


def _error_from_response(response):
    title = description = ""
    body = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        title = str(body.get("title") or "")
        description = str(body.get("description") or "")
    if not title:
        title = response.reason or ""
    if not description and body is None and response.text:
        description = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    return RequestError(response.status_code, title, description, body)


class Server:
    """The dispatcher's API. Methods return the decoded JSON body (None when empty)."""

    def __init__(self, url=None, timeout=10.0, token=None, ca_file=None, config_files=CONFIG_FILES):
        self.url = server_url(url, config_files=config_files)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        configured = None if token and ca_file else client_config(config_files)
        token = token or os.environ.get("PULI_TOKEN") or configured.get("token")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token.strip()}"
        ca_file = ca_file or os.environ.get("PULI_CA_FILE") or configured.get("ca_file")
        if ca_file:
            self.session.verify = os.path.expanduser(ca_file)

    def __repr__(self):
        return f"Server({self.url!r})"

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _url(self, path):
        if path.startswith(("http://", "https://")):
            return path
        return self.url + "/" + path.lstrip("/")

    def request(self, method, path, body=None, params=None, timeout=None):
        """The requests.Response of a successful (2xx) request; raises PuliError otherwise."""
        kwargs = {"params": params, "timeout": self.timeout if timeout is None else timeout}
        if isinstance(self.session.verify, str):
            # Given per request, the CA file wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE,
            # which requests would otherwise prefer to the session's own.
            kwargs["verify"] = self.session.verify
        if body is not None:
            kwargs["json"] = body
        try:
            response = self.session.request(method, self._url(path), **kwargs)
        except requests.Timeout:
            raise ServerUnreachable(self.url, f"no answer within {kwargs['timeout']:g} s") from None
        except requests.ConnectionError as exc:
            raise ServerUnreachable(self.url, _reason(exc)) from None
        except requests.RequestException as exc:
            raise ServerUnreachable(self.url, _reason(exc)) from None
        if not 200 <= response.status_code < 300:
            error = _error_from_response(response)
            if error.status == 401 and "Authorization" not in self.session.headers:
                raise NoToken(self.url) from None
            raise error
        return response

    def _json(self, response):
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise PuliError(f"the dispatcher at {self.url} sent a body that is not JSON "
                            f"({response.status_code}, {response.headers.get('Content-Type', '?')})") from None

    def get(self, path, params=None):
        return self._json(self.request("GET", path, params=params))

    def post(self, path, body=None, params=None):
        return self._json(self.request("POST", path, body, params))

    def put(self, path, body=None, params=None):
        return self._json(self.request("PUT", path, body, params))

    def delete(self, path, body=None, params=None):
        return self._json(self.request("DELETE", path, body, params))

    def get_text(self, path, params=None):
        """(text, headers) of a GET, for logs and other plain-text answers; the headers are a
        case-insensitive mapping."""
        response = self.request("GET", path, params=params)
        if "charset=" not in response.headers.get("Content-Type", "").lower():
            response.encoding = "utf-8"     # not requests' ISO-8859-1 default for text/*
        return response.text, response.headers


def _reason(exc):
    """A short reason for a connection failure, without urllib3's nested reprs."""
    text = str(exc)
    for marker, reason in (("Connection refused", "connection refused"),
                           ("Name or service not known", "unknown host"),
                           ("nodename nor servname", "unknown host"),
                           ("Temporary failure in name resolution", "unknown host"),
                           ("No route to host", "no route to host"),
                           ("Network is unreachable", "network is unreachable"),
                           ("timed out", "timed out"),
                           ("RemoteDisconnected", "the connection was closed without an answer"),
                           ("Connection reset", "connection reset")):
        if marker in text:
            return reason
    return text.splitlines()[0][:200] if text else type(exc).__name__
