"""Private files and directories: the modes the worker and the watcher give what they create,
whatever umask they inherited (which the commands keep: their frames are for others to read).

The state (``<data_dir>``: assignments holding the jobs' environments, the API's secret, the
runs' state) is the worker's user's alone: directories 0700, files 0600. The logs (``<log_dir>``)
are for the worker's group too, so that an operator or a log shipper added to it may read them
on the node: directories 0750, files 0640. A mode given at creation is masked by the umask, which
can only make it stricter; an existing directory is tightened with chmod (the umask does not
apply there), never loosened.
"""
import os

STATE_DIR = 0o700
STATE_FILE = 0o600
LOG_DIR = 0o750
LOG_FILE = 0o640


def make_dirs(path, mode):
    """Create `path` and any missing parent with `mode`; tighten it to `mode` if it exists."""
    path = os.fspath(path)
    parent = os.path.dirname(path.rstrip(os.sep))
    if parent and not os.path.isdir(parent):
        make_dirs(parent, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        tighten(path, mode)


def tighten(path, mode):
    """Take from an existing file or directory of ours the permissions `mode` does not give;
    one of someone else's is left alone. True when its mode changed."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False
    current = info.st_mode & 0o7777
    if info.st_uid != os.geteuid() or not current & ~mode & 0o777:
        return False
    os.chmod(path, (current & 0o7000) | (current & mode & 0o777))   # setgid etc. stay
    return True


def open_private(path, flags, mode=STATE_FILE):
    """os.open with O_CREAT and `mode`: a new file is born private, never readable for a moment."""
    return os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, mode)


def write_atomically(path, data, mode=STATE_FILE):
    """Replace `path` with `data` (bytes) at once, through a private temporary file beside it."""
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
