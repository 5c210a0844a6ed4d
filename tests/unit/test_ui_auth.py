"""Who may read the status page: API tokens (form or Bearer), the signed session cookie, a trusted
proxy header, a loopback listen without any of these. Real HTTP on loopback, a real SQLite store."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tfops.config import Settings
from tfops.config.checks import warnings
from tfops.config.summary import describe
from tfops.store import Store
from tfops.web import HttpOptions, WebServer, create_app
from tfops.web.api import ApiToken
from tfops.web.ui import UiContext, ui_router
from tfops.web.ui_auth import COOKIE, KEY_BYTES, SessionKeyError, UiAccess, load_session_key, safe_next
from tfops.web.ui_commits import CommitLookup
from tfops.web.ui_setup import SESSION_KEY_FILE, ui_router_for

READ = ApiToken(name="oncall", token="read-token-0123456789abcdef", scope="read")
OTHER = ApiToken(name="ci", token="write-token-fedcba9876543210", scope="write")
KEY = b"s" * 32
HTML = {"Accept": "text/html"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("ui-auth")
    store = Store(Store.sqlite_url(root / "tfops.db"))
    store.upgrade()
    store.sync_stacks([("network", "stacks/network")])
    yield store
    store.close()


@contextmanager
def served(store: Store, access: UiAccess, tmp_path: Path) -> Iterator[httpx.Client]:
    context = UiContext(
        store=store, stacks=dict, access=access, commits=CommitLookup(None), data_dir=tmp_path
    )
    server = WebServer(create_app([ui_router(context)]), HttpOptions(host="127.0.0.1", port=0))
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            yield client
    finally:
        server.stop(timeout=5.0)


def gate(**options: object) -> UiAccess:
    settings: dict = {"loopback": True, **options}
    tokens = settings.pop("tokens", [READ, OTHER])
    return UiAccess(tokens, settings.pop("key", KEY), **settings)


def test_a_browser_without_a_token_is_sent_to_the_login_page_and_a_script_gets_401(store, tmp_path) -> None:
    with served(store, gate(), tmp_path) as client:
        browser = client.get("/stacks/network?page=2", headers=HTML)
        script = client.get("/", headers={"Accept": "application/json"})
        login = client.get(browser.headers["location"])

    assert browser.status_code == 303
    assert browser.headers["location"] == "/login?next=%2Fstacks%2Fnetwork%3Fpage%3D2"
    assert script.status_code == 401 and "bearer" in script.headers["www-authenticate"].lower()
    assert login.status_code == 200
    assert '<input type="password" name="token"' in login.text
    assert 'name="next" value="/stacks/network?page=2"' in login.text


def test_an_api_token_works_as_a_bearer_and_a_bad_one_is_refused(store, tmp_path) -> None:
    with served(store, gate(), tmp_path) as client:
        good = client.get("/", headers={**HTML, "Authorization": f"Bearer {READ.token}"})
        bad = client.get("/", headers={**HTML, "Authorization": "Bearer not-a-token"})

    assert good.status_code == 200 and 'data-stack="network"' in good.text
    assert bad.status_code == 401


def test_logging_in_with_a_token_sets_a_strict_httponly_cookie_that_opens_the_pages(store, tmp_path) -> None:
    with served(store, gate(), tmp_path) as client:
        response = client.post("/login", data={"token": READ.token, "next": "/stacks/network"})
        cookie = response.headers["set-cookie"]
        page = client.get("/stacks/network", headers=HTML)
        out = client.post("/logout")
        after = client.get("/", headers=HTML)

    assert response.status_code == 303 and response.headers["location"] == "/stacks/network"
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert READ.token not in cookie
    assert page.status_code == 200 and "oncall" in page.text  # who is logged in
    assert out.status_code == 303
    assert after.status_code == 303 and after.headers["location"].startswith("/login")


def test_a_bad_token_on_the_form_gets_the_login_page_again_with_401(store, tmp_path) -> None:
    with served(store, gate(), tmp_path) as client:
        response = client.post("/login", data={"token": "guess", "next": "/"})

    assert response.status_code == 401
    assert "data-error" in response.text and 'name="token"' in response.text
    assert COOKIE not in response.headers.get("set-cookie", "")


def test_after_login_only_a_local_path_is_followed(store, tmp_path) -> None:
    with served(store, gate(), tmp_path) as client:
        response = client.post("/login", data={"token": READ.token, "next": "https://evil.example/"})

    assert response.headers["location"] == "/"
    tried = ("//evil.example", "/\\evil", "/runs/3", None)
    assert [safe_next(value) for value in tried] == ["/", "/", "/runs/3", "/"]


def test_a_tampered_expired_or_orphaned_cookie_is_refused() -> None:
    clock = Clock()
    access = gate(clock=clock, ttl=3600.0)
    cookie = access.issue(READ)
    body, _, signature = cookie.partition(".")
    forged_body = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]

    assert access.session_user(cookie) == "oncall"
    assert access.session_user(f"{forged_body}.{signature}") is None
    assert access.session_user(f"{body}.{signature[:-1]}x") is None
    assert gate(key=b"o" * 32).session_user(cookie) is None  # another key
    assert gate(tokens=[OTHER]).session_user(cookie) is None  # its token was removed
    renamed = ApiToken(name="oncall", token="a-new-secret-0123456789")
    assert gate(tokens=[renamed]).session_user(cookie) is None  # its token changed
    clock.now += 3601
    assert access.session_user(cookie) is None


def test_a_forged_cookie_over_http_is_sent_to_the_login_page(store, tmp_path) -> None:
    cookie = gate(key=b"x" * 32).issue(READ)  # signed with a key this daemon does not hold
    with served(store, gate(), tmp_path) as client:
        client.cookies.set(COOKIE, cookie)
        response = client.get("/", headers=HTML)

    assert response.status_code == 303


def test_the_proxy_header_is_ignored_unless_configured(store, tmp_path) -> None:
    headers = {**HTML, "X-Forwarded-User": "mallory@example.com"}
    with served(store, gate(), tmp_path) as client:
        ignored = client.get("/", headers=headers)
    with served(store, gate(proxy_header="X-Forwarded-User"), tmp_path) as client:
        trusted = client.get("/", headers=headers)
        without = client.get("/", headers=HTML)

    assert ignored.status_code == 303
    assert trusted.status_code == 200 and "mallory@example.com" in trusted.text
    assert without.status_code == 303


def test_without_any_login_the_page_is_open_on_loopback_and_refused_elsewhere(store, tmp_path) -> None:
    with served(store, gate(tokens=[]), tmp_path) as client:
        local = client.get("/", headers=HTML)
    with served(store, gate(tokens=[], loopback=False), tmp_path) as client:
        exposed = client.get("/", headers=HTML)
        script = client.get("/runs/1")
        login = client.post("/login", data={"token": "anything"})

    assert local.status_code == 200 and 'data-stack="network"' in local.text
    assert exposed.status_code == 403 and "not a loopback address" in exposed.text
    assert "frame-ancestors 'none'" in exposed.headers["content-security-policy"]
    assert script.status_code == 403 and "loopback" in script.json()["detail"]
    assert login.status_code == 401


def test_the_session_key_is_made_once_owner_only_and_then_reused(tmp_path) -> None:
    path = tmp_path / "ui-session.key"
    first = load_session_key(path)

    assert len(first) == KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_session_key(path) == first


def test_check_config_says_who_may_read_the_page_and_warns_when_exposed(tmp_path) -> None:
    def found(http: dict) -> list[str]:
        settings = Settings.model_validate({"data_dir": str(tmp_path), "http": http})
        return [line for line in warnings(settings) if "status page" in line or "proxy_user_header" in line]

    def described(http: dict) -> str:
        settings = Settings.model_validate({"data_dir": str(tmp_path), "http": http})
        return next(line for line in describe(settings).splitlines() if "status page" in line)

    assert "open to anyone on this machine" in described({"listen": "127.0.0.1:8080"})
    assert "refused (403)" in described({"listen": "0.0.0.0:8080"})
    assert "X-User" in described({"listen": "0.0.0.0:8080", "ui": {"proxy_user_header": "X-User"}})
    assert found({"listen": "127.0.0.1:8080"}) == []
    assert "answers 403" in found({"listen": "0.0.0.0:8080"})[0]
    assert "claim any user" in found({"listen": "0.0.0.0:8080", "ui": {"proxy_user_header": "X-User"}})[0]


def test_the_page_can_be_turned_off_and_its_key_file_chosen(store, tmp_path) -> None:
    def router(ui: dict) -> object:
        http = {"listen": "127.0.0.1:8080", "ui": ui}
        settings = Settings.model_validate({"data_dir": str(tmp_path / "data"), "http": http})
        return ui_router_for(
            settings, store=store, stacks=dict, tokens=[READ], next_check=lambda name: None,
            scrub=str, git=None,
        )  # fmt: skip

    off = router({"enabled": False})
    with pytest.raises(SessionKeyError, match=r"page\.key"):  # its folder is not there
        router({"session_key_file": str(tmp_path / "keys" / "page.key")})
    (tmp_path / "keys").mkdir()
    on = router({"session_key_file": str(tmp_path / "keys" / "page.key")})

    assert off is None and on is not None
    assert stat.S_IMODE((tmp_path / "keys" / "page.key").stat().st_mode) == 0o600
    assert not (tmp_path / "data" / SESSION_KEY_FILE).exists()
