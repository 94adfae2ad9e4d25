-- wrk: submit a trivial operation and wait for it (Prefer: wait), so each answer is one
-- operation carried from submission to completion.
wrk.method = "POST"
wrk.body = '{"kind":"sleep","input":{"ms":0}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Prefer"] = "wait=10"
