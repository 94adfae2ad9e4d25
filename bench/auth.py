#!/usr/bin/env python3
"""What access control costs a request, counted by callgrind as bench/instructions.py counts:
instructions per authenticated `GET /v1/operations/{id}` (an operation that exists), with auth
off, with an API key, with an API key and rate limits on, and with a JWT (RS256, the usual
identity provider's, and HS256, each verified afresh; and one remembered, as keel does by
default for a token it has verified). Run by `make bench`.

The RS256 token is made as docs/reference/access-control.md's example makes one (scripts/dev_token.py, with the tests'
key, tests/fixtures/jwt-test-rsa.pem); the HS256 one here, with the standard library.

    python3 bench/auth.py
"""

import hashlib
import hmac
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from instructions import ROOT, count, free_port

KEY = "bench-key-" + "0123456789abcdef" * 3
RSA_KEY = ROOT / "tests" / "fixtures" / "jwt-test-rsa.pem"
HMAC_SECRET = b"bench-hmac-secret-0123456789abcdef"

sys.path.insert(0, str(ROOT / "scripts"))
import dev_token  # noqa: E402  (scripts/dev_token.py: the local identity provider of docs/reference/access-control.md)


def hs256(claims):
    header = dev_token.b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "hs-1"}).encode())
    message = f"{header}.{dev_token.b64(json.dumps(claims).encode())}"
    return f"{message}.{dev_token.b64(hmac.new(HMAC_SECRET, message.encode(), hashlib.sha256).digest())}"


def submitted_operation(headers):
    """`prepare` for count(): submits one operation, returns its path."""

    def prepare(connection):
        body = json.dumps({"kind": "sleep", "input": {"ms": 0}})
        connection.request("POST", "/v1/operations", body=body, headers={**headers, "content-type": "application/json"})
        response = connection.getresponse()
        operation = json.loads(response.read())
        if response.status != 202:
            raise RuntimeError(f"submit answered {response.status}: {operation}")
        return f"/v1/operations/{operation['id']}"

    return prepare


def main():
    subprocess.run(["cargo", "build", "--profile", "profiling", "--locked", "--bin", "keel"], cwd=ROOT, check=True)
    binary = [str(ROOT / "target" / "profiling" / "keel")]
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
        config.write(
            '[auth]\nmode = "api_key"\n[[auth.api_keys]]\nid = "bench"\n'
            f'sha256 = "{digest}"\nscopes = ["operations:read", "operations:write"]\n'
            "[metrics]\nport = 0\n"
        )
    key_set = dev_token.jwks(RSA_KEY)
    key_set["keys"].append({"kty": "oct", "kid": "hs-1", "alg": "HS256", "k": dev_token.b64(HMAC_SECRET)})
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as key_set_file:
        json.dump(key_set, key_set_file)
    jwt_settings = {
        "APP_AUTH__MODE": "jwt", "APP_METRICS__PORT": "0", "APP_AUTH__JWT__ISSUER": dev_token.ISSUER,
        "APP_AUTH__JWT__AUDIENCE": dev_token.AUDIENCE, "APP_AUTH__JWT__JWKS_FILE": key_set_file.name,
    }
    claims = dev_token.claims("bench", "operations:read operations:write", ttl=86400)
    rs256 = {"authorization": f"Bearer {dev_token.token(RSA_KEY, claims)}"}
    hs256_token = {"authorization": f"Bearer {hs256(claims)}"}
    keyed = {"authorization": f"Bearer {KEY}"}
    runs = [
        ("auth off", {"APP_AUTH__ALLOW_ANONYMOUS": "true"}, {}),
        ("API key", {"APP_CONFIG_FILE": config.name}, keyed),
        # Buckets too large to run dry: what is counted is the check, never a refusal.
        ("API key and rate limits", {
            "APP_CONFIG_FILE": config.name, "APP_RATE_LIMIT__ENABLED": "true",
            "APP_RATE_LIMIT__READS_PER_SECOND": "1000000", "APP_RATE_LIMIT__READS_BURST": "1000000",
        }, keyed),
        ("JWT, RS256, verified each time", {**jwt_settings, "APP_AUTH__JWT__VERIFIED_TOKENS": "0"}, rs256),
        ("JWT, HS256, verified each time", {**jwt_settings, "APP_AUTH__JWT__VERIFIED_TOKENS": "0"}, hs256_token),
        # The same token again and again, as a caller sends it: remembered after the first.
        ("JWT, remembered", jwt_settings, rs256),
    ]
    figures = []
    for label, settings, headers in runs:
        port = free_port()
        env = {
            "APP_ENV": "production", "APP_RATE_LIMIT__ENABLED": "false", "APP_SERVER__HOST": "127.0.0.1",
            "APP_SERVER__PORT": str(port), "PORT_FOR_BENCH": str(port), **settings,
        }
        figures.append((label, count("keel-auth", binary, env, submitted_operation(headers), headers)))
    Path(config.name).unlink()
    Path(key_set_file.name).unlink()
    base = figures[0][1]
    print("instructions per GET /v1/operations/{id}:")
    for label, figure in figures:
        extra = f" (+{figure - base:,.0f}, +{(figure - base) / base:.1%})" if figure != base else ""
        print(f"  {label}: {figure:,.0f}{extra}")


if __name__ == "__main__":
    sys.exit(main())
