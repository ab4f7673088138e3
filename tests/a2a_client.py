"""An agent platform's side of A2A, written with the official Python SDK (`a2a-sdk` 1.x): it
finds `deputy serve`'s Agent Card, then drives tasks over the JSON-RPC binding and prints what
it saw as one JSON object. tests/a2a.rs checks it against the workspace and the mock.

Usage: python a2a_client.py BASE_URL TOKEN

The steps (each names the mock's route by its first words):
  task:     a streamed task with a write, read to the end (status updates, then the answer as
            an artifact, then completed);
  ask:      a task that stops at input-required (an `ask` rule), answered with a message,
            streamed to the end;
  resume:   a streamed task left after its first event, then subscribed to again and read to
            the end;
  cancel:   a task started without waiting, cancelled while its command runs;
  more:     the first task continued by its context id;
  list/get: the tasks listed, one fetched.
"""

import asyncio
import json
import sys
import uuid

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskState,
)
from google.protobuf import json_format, struct_pb2


def message(text=None, data=None, task_id=None, context_id=None):
    parts = []
    if text is not None:
        parts.append(Part(text=text))
    if data is not None:
        value = struct_pb2.Value()
        json_format.ParseDict(data, value)
        parts.append(Part(data=value))
    return Message(
        message_id=str(uuid.uuid4()),
        role=Role.ROLE_USER,
        parts=parts,
        task_id=task_id or "",
        context_id=context_id or "",
    )


def describe(event):
    """One streamed event, as the test reads it."""
    which = event.WhichOneof("payload")
    if which == "task":
        return {"kind": "task", "id": event.task.id, "state": TaskState.Name(event.task.status.state)}
    if which == "status_update":
        u = event.status_update
        text = " ".join(p.text for p in u.status.message.parts if p.text)
        return {"kind": "status", "state": TaskState.Name(u.status.state), "text": text}
    if which == "artifact_update":
        a = event.artifact_update.artifact
        return {"kind": "artifact", "text": "".join(p.text for p in a.parts if p.text)}
    if which == "message":
        return {"kind": "message"}
    return {"kind": which}


async def read_all(stream):
    return [describe(e) async for e in stream]


async def main(base, token):
    seen = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        card = await A2ACardResolver(http, base).get_agent_card()
        seen["card"] = json.loads(json_format.MessageToJson(card))
        streaming = ClientFactory(ClientConfig(streaming=True, httpx_client=http)).create(card)
        polling = ClientFactory(ClientConfig(streaming=False, polling=True, httpx_client=http)).create(card)
        blocking = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)

        # A task, streamed to the end.
        events = await read_all(streaming.send_message(SendMessageRequest(message=message("task: write hello"))))
        seen["task"] = events
        first = events[0]["id"]

        # input-required, answered.
        answer = [e async for e in blocking.send_message(SendMessageRequest(message=message("ask: write approved")))]
        t = answer[0].task
        seen["ask"] = {
            "state": TaskState.Name(t.status.state),
            "question": " ".join(p.text for p in t.status.message.parts if p.text),
        }
        seen["ask"]["events"] = await read_all(
            streaming.send_message(SendMessageRequest(message=message(data={"approve": True}, task_id=t.id)))
        )

        # A stream left early, then subscribed to again.
        stream = streaming.send_message(SendMessageRequest(message=message("resume: slow answer")))
        early = describe(await stream.__anext__())
        await stream.aclose()
        seen["resume"] = {
            "early": early,
            "again": await read_all(streaming.subscribe(SubscribeToTaskRequest(id=early["id"]))),
        }

        # Cancelled while its command runs.
        started = [e async for e in polling.send_message(SendMessageRequest(message=message("cancel: run long")))]
        cancel_id = started[0].task.id
        for _ in range(100):
            t = await polling.get_task(GetTaskRequest(id=cancel_id))
            if t.metadata.fields.get("usage") is not None or t.status.state == TaskState.TASK_STATE_WORKING:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        cancelled = await polling.cancel_task(CancelTaskRequest(id=cancel_id))
        seen["cancel"] = {"id": cancel_id, "state": TaskState.Name(cancelled.status.state)}

        # The first task continued by its context.
        more = [e async for e in blocking.send_message(SendMessageRequest(message=message("more: and again", context_id=first)))]
        t = more[0].task
        seen["more"] = {
            "id": t.id,
            "state": TaskState.Name(t.status.state),
            "answer": "".join(p.text for a in t.artifacts for p in a.parts if p.text),
        }

        listed = await polling.list_tasks(ListTasksRequest(page_size=10))
        seen["list"] = [{"id": t.id, "state": TaskState.Name(t.status.state)} for t in listed.tasks]
        got = await polling.get_task(GetTaskRequest(id=first))
        seen["get"] = {"id": got.id, "state": TaskState.Name(got.status.state), "agent": got.metadata.fields["agent"].string_value}

        # Another token's task does not exist for this one.
        try:
            async with httpx.AsyncClient(headers={"Authorization": "Bearer other-token"}, timeout=30) as other_http:
                other = ClientFactory(ClientConfig(streaming=False, httpx_client=other_http)).create(card)
                await other.get_task(GetTaskRequest(id=first))
            seen["other"] = "visible"
        except Exception as e:  # the SDK's TaskNotFoundError
            seen["other"] = type(e).__name__
    print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
