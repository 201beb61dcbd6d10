"""The web monitor's sessions, CSRF, roles and pages, in-process (the real Falcon app over a real
in-memory farm); tests/test_ui_browser.py drives it in Chromium against real workers."""
import urllib.parse

import pytest

from puli.dispatcher import sessions
from test_api_support import Api, task

NO_BEARER = {"Authorization": ""}       # the Api's client sends the admin's token unless told not to
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def api():
    return Api()


def sign_in(api, token, next_page=None):
    """The form's round trip: (answer to the POST, session cookie or None)."""
    form = api.client.simulate_get("/ui/signin", headers=NO_BEARER)
    secret = form.cookies[sessions.SIGNIN_COOKIE].value
    fields = {"token": token, "csrf": secret, **({"next": next_page} if next_page else {})}
    answer = api.client.simulate_post("/ui/signin", body=urllib.parse.urlencode(fields), headers={
        **NO_BEARER, "Content-Type": FORM}, cookies={sessions.SIGNIN_COOKIE: secret})
    cookie = answer.cookies.get(sessions.COOKIE)
    return answer, cookie.value if cookie is not None else None


def page(api, path, session, **headers):
    return api.client.simulate_get(path, headers={**NO_BEARER, **headers}, cookies={sessions.COOKIE: session})


def csrf_of(html):
    return html.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


def test_signing_in_gives_a_strict_http_only_session_cookie_and_never_the_token(api):
    answer, session = sign_in(api, api.tokens["wrangler"], "/ui/rendernodes")
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/rendernodes"
    cookie = answer.cookies[sessions.COOKIE]
    assert cookie.http_only and cookie.same_site == "Strict" and cookie.path == "/" and not cookie.secure
    assert api.tokens["wrangler"] not in answer.headers.get("set-cookie", "") + answer.text
    shown = page(api, "/ui/jobs", session)
    assert shown.status_code == 200 and "wes" in shown.text
    over_tls = api.client.simulate_get("/ui/signin", headers=NO_BEARER, protocol="https")
    assert over_tls.cookies[sessions.SIGNIN_COOKIE].secure


def test_a_sign_in_is_refused_without_its_forms_secret_a_good_token_or_a_human_role(api):
    # A form posted from another site carries no SameSite=Strict cookie of ours.
    forged = api.client.simulate_post("/ui/signin", body=urllib.parse.urlencode(
        {"token": api.tokens["admin"], "csrf": "guess"}), headers={**NO_BEARER, "Content-Type": FORM})
    assert forged.status_code == 400 and sessions.COOKIE not in forged.cookies
    assert "expired" in forged.text
    repeated = api.client.simulate_post("/ui/signin", body="token=a&token=b&csrf=x&csrf=y", headers={
        **NO_BEARER, "Content-Type": FORM}, cookies={sessions.SIGNIN_COOKIE: "x"})
    assert repeated.status_code == 400 and sessions.COOKIE not in repeated.cookies
    for token, words in (("puli_madeup", "unknown token"), (api.tokens["worker"], "worker token"), ("", "paste")):
        answer, session = sign_in(api, token)
        assert session is None and answer.status_code in (400, 401) and words in answer.text, answer.text
    # Where it goes after: a page of the monitor, never another site.
    for elsewhere in ("https://evil.example/", "//evil.example/ui/", "/reports/../ui"):
        answer, _ = sign_in(api, api.tokens["viewer"], elsewhere)
        assert answer.headers["location"] == "/ui/jobs", elsewhere


def test_an_action_from_a_session_needs_its_csrf_token(api):
    job = api.submit(task("t", frames=(1, 2)))
    _, session = sign_in(api, api.tokens["wrangler"])
    csrf = csrf_of(page(api, "/ui/jobs", session).text)
    put = api.client.simulate_put
    bare = put(f"/nodes/{job}/paused", json={"paused": True}, headers=NO_BEARER, cookies={sessions.COOKIE: session})
    wrong = put(f"/nodes/{job}/paused", json={"paused": True}, headers={**NO_BEARER, "X-CSRF-Token": "x" + csrf},
                cookies={sessions.COOKIE: session})
    assert bare.status_code == wrong.status_code == 403 and "CSRF" in bare.json["description"]
    assert api.node(job)["paused"] is False
    good = put(f"/nodes/{job}/paused", json={"paused": True}, headers={**NO_BEARER, "X-CSRF-Token": csrf},
               cookies={sessions.COOKIE: session})
    assert good.status_code == 200 and api.node(job)["paused"] is True
    record = api.get("/audit").json["records"][0]
    assert record["user"] == "wes" and record["route"] == "/nodes/{id}/paused"


def test_signing_out_or_revoking_the_token_ends_the_session(api):
    _, session = sign_in(api, api.tokens["viewer"])
    csrf = csrf_of(page(api, "/ui/jobs", session).text)
    out = api.client.simulate_post("/ui/signout", body=urllib.parse.urlencode({"csrf": csrf}),
                                   headers={**NO_BEARER, "Content-Type": FORM}, cookies={sessions.COOKIE: session})
    assert out.status_code == 303 and out.headers["location"] == "/ui/signin"
    again = page(api, "/ui/jobs", session)
    assert again.status_code == 303 and again.headers["location"] == "/ui/signin?next=%2Fui%2Fjobs"

    token, row = api.service.tokens.create("tess", "viewer")
    _, session = sign_in(api, token)
    assert page(api, "/ui/jobs", session).status_code == 200
    api.delete(f"/tokens/{row['id']}")
    api.clock += 60                     # past the tokens' recheck delay
    assert page(api, "/ui/jobs", session).status_code == 303


def test_a_role_is_offered_only_what_it_may_do(api):
    theirs = api.submit(task("bobs", frames=(1, 1)), user="bob")
    own = api.submit(task("anns", frames=(1, 1)), role="artist")
    viewer = api.get("/ui/jobs", role="viewer").text
    assert "data-action" not in viewer and 'name="job"' not in viewer and "/ui/audit" not in viewer
    artist = api.get("/ui/jobs", role="artist").text
    assert f'name="job" value="{own}"' in artist and f'name="job" value="{theirs}"' not in artist
    assert "data-action" not in api.get(f"/ui/jobs/{theirs}", role="artist").text
    assert 'data-action="command-cancel"' in api.get(f"/ui/jobs/{own}", role="artist").text
    wrangler = api.get("/ui/jobs", role="wrangler").text
    assert f'value="{theirs}"' in wrangler and f'value="{own}"' in wrangler and "/ui/audit" in wrangler
    assert api.get("/ui/audit", role="artist").status_code == 403
    api.register("a:8000")
    assert 'data-action="rn-pause"' in api.get("/ui/rendernodes", role="wrangler").text
    assert "data-action" not in api.get("/ui/rendernodes", role="artist").text


def test_the_live_part_of_a_page_costs_nothing_when_unchanged(api):
    api.submit(task("t", frames=(1, 3)))
    first = api.get("/ui/jobs", headers={"X-Puli-Live": "1"})
    assert first.status_code == 200 and first.text.lstrip().startswith("<p class=\"summary\">")
    assert "<html" not in first.text and first.headers["etag"]
    same = api.get("/ui/jobs", headers={"X-Puli-Live": "1", "If-None-Match": first.headers["etag"]})
    assert same.status_code == 304 and not same.text
    api.submit(task("u", frames=(1, 1)))
    changed = api.get("/ui/jobs", headers={"X-Puli-Live": "1", "If-None-Match": first.headers["etag"]})
    assert changed.status_code == 200 and "2 of 2 jobs" in changed.text


def test_bad_input_shows_a_message_and_names_are_escaped(api):
    api.submit(task("<script>alert(1)</script>", frames=(1, 1)))
    shown = api.get("/ui/jobs")
    assert "<script>alert" not in shown.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in shown.text
    assert "script-src 'self'" in shown.headers["content-security-policy"]
    assert shown.headers["x-frame-options"] == "DENY"
    for params, words in ((dict(constraint_status="42"), "42"), (dict(constraint_nope="1"), "constraint_nope"),
                          (dict(sort="secret"), "cannot sort on")):
        answer = api.get("/ui/jobs", **params)
        assert answer.status_code == 200 and words in answer.text and 'class="error"' in answer.text, params
    assert api.get("/ui/jobs", offset="many", limit="-5").status_code == 200
    missing = api.get("/ui/jobs/424242")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "no job 424242" in missing.text and "Traceback" not in missing.text
    assert api.get("/ui/static/../app.py").status_code == 404
    assert api.get("/ui/static/ui.js").headers["content-type"].startswith("text/javascript")


def test_the_jobs_page_filters_sorts_and_pages(api):
    for shot in range(30):
        api.submit(task(f"comp_{shot:02d}", frames=(1, 1), tags={"prod": "wolf", "shot": f"sh{shot:03d}"}))
    api.submit(task("light_00", frames=(1, 1), tags={"prod": "bear", "shot": "sh000"}))
    shown = api.get("/ui/jobs", constraint_prod="wolf", sort="name", limit="25").text
    names = [part.split("<", 1)[0] for part in shown.split('">comp_')[1:]]
    assert names == [f"{n:02d}" for n in range(25)] and "30 of 31 jobs" in shown
    assert "next →" in shown and "light_00" not in shown
    rest = api.get("/ui/jobs", constraint_prod="wolf", sort="name", limit="25", offset="25").text
    assert "comp_29" in rest and "comp_24" not in rest
    assert "comp_" not in api.get("/ui/jobs", constraint_name="light*").text
    assert api.get("/ui/jobs", constraint_shot="sh000").text.count("sh000</td>") == 2
