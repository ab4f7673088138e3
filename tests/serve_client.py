"""Drives `deputy serve` through a client that openapi-python-client generated from the live
/openapi.json (tests/serve.rs generates it, then runs this with the package on sys.path).

Usage: serve_client.py BASE_URL TOKEN PACKAGE_DIR

The mock model's script (in tests/serve.rs) plays, in order: a write that waits for approval,
an answer, the answer to a continuation, then a long command that is cancelled.
"""

import sys
import time

base, token, package = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, package)

from deputy_client import AuthenticatedClient  # noqa: E402
from deputy_client.api.agents import list_agents  # noqa: E402
from deputy_client.api.approvals import answer_approval, list_approvals  # noqa: E402
from deputy_client.api.sessions import (  # noqa: E402
    cancel_session,
    continue_session,
    create_session,
    delete_session,
    get_session,
    list_sessions,
    session_events,
)
from deputy_client.models import (  # noqa: E402
    AnswerIn,
    CreateSession,
    CreateSessionMetadata,
    Created,
    MessageIn,
    Phase,
    Problem,
    SessionList,
    SessionView,
)

client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)


def wait(pred, what, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def finished(sid):
    def poll():
        v = get_session.sync(sid, client=client)
        assert isinstance(v, SessionView), v
        return v if v.phase == Phase.FINISHED else None

    return wait(poll, f"session {sid} to finish")


agents = list_agents.sync(client=client)
assert any(a.name == "general" for a in agents), agents

labels = CreateSessionMetadata.from_dict({"team": "infra"})
answer = create_session.sync_detailed(
    client=client, body=CreateSession(prompt="write the file", metadata=labels)
)
created = answer.parsed
assert isinstance(created, Created), created
sid = created.id
assert answer.headers["location"] == f"/v1/sessions/{sid}", answer.headers
assert created.status in (Phase.QUEUED, Phase.RUNNING), created.status

pending = wait(lambda: list_approvals.sync(sid, client=client), "an approval")
call = pending[0]
assert call.tool == "write", call
answered = answer_approval.sync(sid, call.call_id, client=client, body=AnswerIn(approve=True))
assert not isinstance(answered, Problem), answered

done = finished(sid)
assert done.status == "completed", done
assert done.result == "first answer", done.result
assert done.files_changed == ["approved.txt"], done.files_changed

# The stream is text (each event as ServerSentEvent describes): the raw body, not a JSON parse.
stream = session_events.sync_detailed(sid, client=client)
assert stream.status_code == 200, stream
events = stream.content.decode()
assert "event: session.finished" in events, events[-500:]

again = continue_session.sync(sid, client=client, body=MessageIn(prompt="and again"))
assert isinstance(again, Created), again
done = finished(sid)
assert done.result == "second answer", done.result

long = create_session.sync(client=client, body=CreateSession(prompt="sleep"))
assert isinstance(long, Created), long
wait(
    lambda: get_session.sync(long.id, client=client).phase == Phase.RUNNING,
    "the long session to run",
)
time.sleep(0.5)
cancelled = cancel_session.sync(long.id, client=client)
assert not isinstance(cancelled, Problem), cancelled
assert finished(long.id).status == "cancelled"

# Found again by its label; the list pages with its cursor.
mine = list_sessions.sync(client=client, label=["team=infra"])
assert isinstance(mine, SessionList), mine
assert [x.id for x in mine.sessions] == [sid], mine
assert mine.sessions[0].metadata.to_dict() == {"team": "infra"}, mine
page = list_sessions.sync(client=client, limit=1)
assert [x.id for x in page.sessions] == [long.id] and page.next_cursor, page
rest = list_sessions.sync(client=client, limit=1, cursor=page.next_cursor)
assert [x.id for x in rest.sessions] == [sid], rest
bad = list_sessions.sync(client=client, label=["no-equals-sign"])
assert isinstance(bad, Problem) and bad.status == 400, bad

deleted = delete_session.sync_detailed(sid, client=client)
assert deleted.status_code == 204, deleted
assert isinstance(get_session.sync(sid, client=client), Problem)

missing = get_session.sync("nope", client=client)
assert isinstance(missing, Problem) and missing.status == 404, missing

print("generated client: ok")
