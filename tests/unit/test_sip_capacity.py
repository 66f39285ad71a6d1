"""SIP capacity: a call the server cannot take is refused before anything is answered (486, or 503 while loading)."""

from __future__ import annotations

from aiosipua import SipResponse

from tests.unit.test_sip import OFFER, Harness, SipCall, _request, _settle
from voice_pipeline.app.host import SessionHost
from voice_pipeline.app.settings import Settings
from voice_pipeline.metrics import PipelineMetrics
from voice_pipeline.transports.sip import NOT_READY_RETRY_AFTER_S, sip_admission


def _server(max_sessions: int, ready: bool = True) -> SessionHost:
    """The session host `sip_admission()` asks; engines are never used here, only their presence."""
    settings = Settings()
    settings.server.max_sessions = max_sessions
    return SessionHost(settings, PipelineMetrics(), object() if ready else None)  # type: ignore[arg-type]


def _harness(server: SessionHost) -> Harness:
    h = Harness(admit=lambda answering: sip_admission(server, answering),  # type: ignore[arg-type]
                on_fault=lambda code: server.metrics.errors.labels(code).inc())

    async def take_call(call: SipCall) -> None:  # what host.session does: the session holds a place
        server.sessions[call.call_id] = call  # type: ignore[assignment]
        h.calls.append(call)
        try:
            await call.ended.wait()
        finally:
            server.sessions.pop(call.call_id)

    h.agent.on_call = take_call
    return h


def _invite(n: int) -> str:
    return _request("INVITE", 1, branch=f"z9hG4bK-{n}", body=OFFER).replace("call-1@", f"burst-{n}@")


def _by_call(h: Harness) -> dict[str, list[int]]:
    statuses: dict[str, list[int]] = {}
    for message, _ in h.transport.sent:
        if isinstance(message, SipResponse):
            statuses.setdefault(message.call_id or "", []).append(message.status_code)
    return statuses


async def test_a_burst_beyond_capacity_is_refused_486_before_any_200() -> None:
    server = _server(max_sessions=3)
    h = _harness(server)
    await h.agent.start()
    for n in range(50):  # all at once: none of them has a session yet when the others arrive
        h.transport.deliver(_invite(n))
    await _settle()
    statuses = sorted(_by_call(h).values())
    assert statuses == [[100, 200]] * 3 + [[486]] * 47
    assert len(h.calls) == 3 and h.transport.requests("BYE") == []  # nobody answered and then hung up
    assert server.metrics.errors.labels("server_busy")._value.get() == 47
    assert h.agent.answering == 0

    h.calls[0].hangup()
    await _settle()
    h.transport.deliver(_invite(99))  # a place is free again
    await _settle()
    assert _by_call(h)["burst-99@127.0.0.1"] == [100, 200] and len(h.calls) == 4
    await h.agent.stop()


async def test_a_call_while_the_models_load_gets_503_with_retry_after() -> None:
    server = _server(max_sessions=3, ready=False)
    h = _harness(server)
    await h.agent.start()
    h.transport.deliver(_invite(1))
    await _settle()
    [(response, _)] = h.transport.sent
    assert (response.status_code, response.reason_phrase) == (503, "Service Unavailable")
    assert response.get_header("retry-after") == str(NOT_READY_RETRY_AFTER_S)
    assert server.metrics.errors.labels("not_ready")._value.get() == 1
    await h.agent.stop()
