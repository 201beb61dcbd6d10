"""GET /stats/history: the recorded farm samples as series (see puli/stats/history.py)."""
from ...stats import history
from ..errors import BadField


def source_of(service):
    """Where samples are read: the sampler's (database or memory), a memory one before start."""
    sampler = getattr(service, "sampler", None)
    if sampler is None:
        from ..sampler import Sampler
        sampler = service.sampler = Sampler(service)
    return sampler.source


def run_query(service, params, summaries=False):
    """history.query() with request parameters; a bad one is a 400 naming it."""
    try:
        return history.query(
            source_of(service), window=params.get("window") or "24h",
            resolution=params.get("resolution") or "auto", group_by=params.get("group_by") or None,
            series=params.get("series") or None, now=service.now(), summaries=summaries,
            minimum=1.0)
    except history.BadQuery as exc:
        raise BadField(exc.field, str(exc)) from None


class History:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        params = {k: req.get_param(k) for k in ("window", "resolution", "group_by", "series")}
        summaries = req.get_param_as_bool("jobs") or False
        resp.media = run_query(self.service, params, summaries)


def routes(service):
    return [("/stats/history", History(service))]
