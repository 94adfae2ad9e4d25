"""schemathesis hooks for `make fuzz` (loaded through SCHEMATHESIS_HOOKS).

`positive_data_acceptance` (every check runs, `--checks all`) expects a schema-valid request to
be accepted. Three answers of `POST /v1/operations` refuse schema-valid requests on purpose,
for facts no schema can state:
- `422 idempotency-key-reused` and `410 operation-gone`: what an earlier request did with the
  same `Idempotency-Key` (used it with another body; its operation was deleted), as the IETF
  Idempotency-Key draft asks;
- `422 schedule-too-far`: `not_before` more than 366 days from now, a limit relative to the
  clock.
This check is the built-in one except for those three problem types; any other refusal of
valid data (a kind's `validate` stricter than its schema, say) still fails.
"""

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

STATE_DEPENDENT = {(422, "idempotency-key-reused"), (410, "operation-gone"), (422, "schedule-too-far")}


@schemathesis.check
def positive_data_acceptance_but_idempotency(ctx, response, case):
    if case.operation.method.upper() == "POST" and case.operation.path == "/v1/operations":
        try:
            problem_type = response.json().get("type")
        except Exception:  # noqa: BLE001 - not JSON: the built-in check judges it
            problem_type = None
        if (response.status_code, problem_type) in STATE_DEPENDENT:
            return None
    return positive_data_acceptance(ctx, response, case)
