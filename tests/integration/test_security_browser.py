"""The browser page's side of security, in Debian's headless Chromium (no models): a crafted `?server=`
link cannot send the microphone to another host, and behind a token the page logs in with a cookie and
opens its socket with a signed session token."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web

from voice_pipeline.app.settings import ServerSettings
from voice_pipeline.security.gate import Gate

from .browser_support import CHROMIUM, REPO_ROOT, ScriptedServer, chromium_args, chromium_missing_reason, wait_until

pytestmark = pytest.mark.integration
TOKEN = "browser-test-token-0123456789abcdef"


class GatedServer(ScriptedServer):
    """The scripted stand-in (browser_support.py) behind the server's real gate, with an auth token."""

    def __init__(self) -> None:
        super().__init__()
        self.upgrade_queries: list[dict] = []

    async def _start(self) -> int:
        web_dir = REPO_ROOT / "client" / "web"
        app = web.Application()
        Gate(ServerSettings(auth_token=TOKEN)).install(app)

        async def index(_request):
            return web.FileResponse(web_dir / "index.html")

        async def realtime(request):
            self.upgrade_queries.append(dict(request.query))
            return await self._realtime(request)

        app.router.add_get("/", index)
        app.router.add_static("/static/", web_dir)
        app.router.add_get("/v1/realtime", realtime)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    reason = chromium_missing_reason()
    if reason:
        pytest.fail(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args(None))
        yield browser
        browser.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context()
    yield context.new_page()
    context.close()


def test_a_crafted_server_link_cannot_send_the_microphone_elsewhere(page):
    with socket.socket() as elsewhere, ScriptedServer() as url:
        elsewhere.bind(("127.0.0.1", 0))
        elsewhere.listen()
        elsewhere.setblocking(False)
        other = f"ws://127.0.0.1:{elsewhere.getsockname()[1]}/v1/realtime"
        page.goto(f"{url}/?server={other}")
        assert f"Ignored ?server={other}" in page.locator("#message").inner_text()
        page.get_by_role("button", name="Start").click()
        page.wait_for_function("() => window.__vp.state === 'listening'")  # its own server answered
        with pytest.raises(BlockingIOError):
            elsewhere.accept()  # and nothing ever connected to the other host


def test_the_page_needs_a_login_then_connects_with_a_session_token(page):
    server = GatedServer()
    with server as url:
        page.goto(f"{url}/")
        page.get_by_role("button", name="Start").click()
        page.wait_for_function("() => document.querySelector('#link').textContent === 'Not authorized'")
        assert "needs an access token" in page.locator("#message").inner_text()
        assert server.connections == 0  # no socket without a token

        page.goto(f"{url}/?token={TOKEN}")  # the operator's link: sets the cookie, then drops the token
        assert page.url == f"{url}/"
        page.get_by_role("button", name="Start").click()
        page.wait_for_function("() => window.__vp.state === 'listening'")
        wait_until(lambda: server.events("session.start"))
        assert server.upgrade_queries[-1]["session_token"].startswith("v1.ws.")
