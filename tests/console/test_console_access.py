"""The console's access rules, through the app in-process (no browser): nothing of the plant without the token,
the login cookie, Bearer for API clients, CSRF and origin guards on changes; and `ssad serve`'s safe defaults."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ssad.console import create_app
from ssad.console.auth import COOKIE, Access
from ssad.history import History

TOKEN = "test-console-token-123"
NOW = time.time() - 3600  # an hour ago: the machine is silent now
MACHINE = "plant/secret-press"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The console over a history of one machine with one alarm; its detector folder is empty (no change succeeds)."""
    folder = tmp_path_factory.mktemp("console-access")
    history = History(str(folder / "history.db"))
    for i in range(5):
        history.add_window(MACHINE, t=NOW + i, score=3.0, threshold=2.0, smoothed=3.0, alert=True, drift=False,
                           learning=False, summary="2.1-2.6 kHz +9 dB, throughout, new narrowband line")
    history.open_alarm(MACHINE, NOW, kind="new narrowband line", summary="2.1-2.6 kHz +9 dB", detail={},
                       picture=b"\x89PNG")
    history.flush()
    (folder / "detector").mkdir()
    app = create_app(history, folder / "detector", Access(TOKEN), allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:8765", follow_redirects=False) as test_client:
        yield test_client
    history.close()


@pytest.mark.parametrize("path", ["/", "/machine/plant/secret-press", "/api/machines", "/api/alarms",
                                  "/api/trend?machine=plant/secret-press", "/alarm/1/picture.png", "/?token=wrong"])
def test_without_the_token_nothing_of_the_plant_is_shown(client: TestClient, path: str) -> None:
    client.cookies.clear()
    response = client.get(path)
    assert response.status_code == 401
    assert "secret-press" not in response.text and b"PNG" not in response.content
    assert Access(TOKEN).csrf not in response.text


def test_the_token_in_the_address_logs_a_browser_in_with_a_strict_httponly_cookie(client: TestClient) -> None:
    client.cookies.clear()
    response = client.get(f"/?token={TOKEN}")
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    page = client.get("/")
    assert page.status_code == 200 and MACHINE in page.text and "2.1-2.6 kHz" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_api_clients_use_the_bearer_header(client: TestClient) -> None:
    client.cookies.clear()
    assert client.get("/api/machines", headers={"Authorization": "Bearer nope"}).status_code == 401
    listed = client.get("/api/machines", headers={"Authorization": f"Bearer {TOKEN}"}).json()["machines"]
    assert [(m["name"], m["state"]) for m in listed] == [(MACHINE, "silent")]


def test_changes_need_the_login_and_the_csrf_token_from_our_own_origin(client: TestClient) -> None:
    client.cookies.clear()
    assert client.post("/api/alarm/1/normal").status_code == 403  # nobody
    client.get(f"/?token={TOKEN}")
    assert COOKIE in client.cookies
    assert client.post("/api/alarm/1/normal").status_code == 403  # the cookie alone: a forged cross-site form
    csrf = Access(TOKEN).csrf
    foreign = client.post("/api/alarm/1/normal", headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert foreign.status_code == 403
    # past the guards, the action itself runs (and fails here: the alarm kept no audio to learn from)
    allowed = client.post("/api/alarm/1/normal", headers={"X-CSRF-Token": csrf, "Origin": "http://127.0.0.1:8765"})
    assert allowed.status_code == 409 and "kept no audio" in allowed.json()["error"]


def test_a_page_asked_for_under_another_host_name_is_refused(client: TestClient) -> None:
    rebound = client.get(f"/?token={TOKEN}", headers={"Host": "attacker.example:8765"})
    assert rebound.status_code == 400 and "set-cookie" not in rebound.headers


def test_serve_binds_this_computer_only_unless_told(tmp_path: Path) -> None:
    from ssad.cli.main import _parser

    args = _parser().parse_args(["serve", "--history", "h.db", "--detector", "d"])
    assert args.host == "127.0.0.1"
    with pytest.raises(ValueError, match="at least 8"):
        Access("short")
