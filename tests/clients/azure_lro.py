#!/usr/bin/env python3
"""azure-core's generic long-running-operation poller against a live keel.

Azure's SDKs poll any service that answers `202` with `Operation-Location`; this drives
`LROPoller` with `LROBasePolling`, as a new user would try it, through a succeeded, a failed and
a canceled operation, and checks that each reaches its final state, as the poller sees it, within
a second of the operation ending (keel answers `Retry-After: 1` while an operation runs).

Usage: azure_lro.py http://127.0.0.1:PORT
"""

import datetime
import sys
import threading
import time

from azure.core import PipelineClient
from azure.core.exceptions import HttpResponseError
from azure.core.polling import LROPoller
from azure.core.polling.base_polling import LROBasePolling
from azure.core.rest import HttpRequest

BASE = sys.argv[1].rstrip("/")
CLIENT = PipelineClient(base_url=BASE)
# Each operation ends this long after its submission: well before the poller's first poll, which
# follows the 202's `Retry-After: 1`.
RUN_MS = 300
# The operation's end, as the poller sees it, comes within this of its `finished_at`.
WITHIN_SECONDS = 1.0


def send(method, path, body=None):
    request = HttpRequest(method, f"{BASE}{path}", json=body)
    return CLIENT.send_request(request, _return_pipeline_response=True)


def start(body):
    """Submits `body` and returns a poller on it, as an SDK's begin_* method would."""
    initial = send("POST", "/v1/operations", body)
    response = initial.http_response
    assert response.status_code == 202, (response.status_code, response.text())
    location = response.headers["operation-location"]
    assert location.startswith("http://") or location.startswith("https://"), f"not absolute: {location}"
    poller = LROPoller(CLIENT, initial, lambda pipeline: pipeline.http_response.json(), LROBasePolling())
    return poller, response.json()["id"]


def finished_at(operation_id):
    operation = send("GET", f"/v1/operations/{operation_id}").http_response.json()
    assert operation["done"], operation
    return datetime.datetime.fromisoformat(operation["finished_at"].replace("Z", "+00:00")).timestamp(), operation


def wait_for(poller):
    """Waits for the poller as a caller does; returns (its result or the error it raised, when it ended)."""
    try:
        outcome = poller.result(timeout=30)
    except HttpResponseError as error:
        outcome = error
    assert poller.done(), "the poller gave up before the operation's end"
    return outcome, time.time()


def check(name, poller, operation_id, expected_status):
    outcome, seen_at = wait_for(poller)
    ended_at, operation = finished_at(operation_id)
    assert operation["status"] == expected_status, (name, operation)
    assert poller.status().lower() == expected_status, (name, poller.status())
    lag = seen_at - ended_at
    assert lag <= WITHIN_SECONDS, f"{name}: the poller saw the end {lag:.2f} s after it"
    print(f"{name}: {poller.status()} seen {lag:.2f} s after the operation ended")
    return outcome


def main():
    poller, operation_id = start({"kind": "sleep", "input": {"ms": RUN_MS}})
    outcome = check("succeeded", poller, operation_id, "succeeded")
    assert not isinstance(outcome, Exception), outcome
    assert outcome["result"]["slept_ms"] == RUN_MS, outcome

    poller, operation_id = start({"kind": "fail", "input": {"after_ms": RUN_MS, "message": "on purpose"}})
    outcome = check("failed", poller, operation_id, "failed")
    assert isinstance(outcome, HttpResponseError), outcome

    poller, operation_id = start({"kind": "sleep", "input": {"ms": 60_000}})
    cancel = threading.Timer(RUN_MS / 1000, lambda: send("POST", f"/v1/operations/{operation_id}/cancel"))
    cancel.start()
    outcome = check("canceled", poller, operation_id, "canceled")
    cancel.join()
    assert isinstance(outcome, HttpResponseError), outcome
    print("azure-core LROPoller: every operation reached its final state")


if __name__ == "__main__":
    main()
