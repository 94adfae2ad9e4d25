#!/usr/bin/env python3
"""A local stand-in for an identity provider, to try `auth.mode = "jwt"` without one: an RSA key,
its JWKS, and RS256 tokens signed with it. Needs only Python and openssl.

    python3 scripts/dev_token.py init [DIR]      # DIR/key.pem (private) and DIR/jwks.json (public)
    python3 scripts/dev_token.py token [DIR] --sub alice [--scope "operations:read operations:write"]
        [--issuer https://dev-idp.local/] [--audience keel] [--ttl 3600]

DIR is `dev-idp` by default. The token goes to standard output. This is for development: a real
deployment takes its keys from the provider's JWKS URL (docs/reference/access-control.md).
"""

import argparse
import base64
import json
import subprocess
import sys
import time
from pathlib import Path

ISSUER = "https://dev-idp.local/"
AUDIENCE = "keel"
KID = "dev-1"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwks(key):
    """The JWKS of the RSA key in `key` (a PEM file): its modulus, its exponent, its kid."""
    modulus = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-noout", "-modulus"], check=True, capture_output=True, text=True
    ).stdout.strip().split("=", 1)[1]
    return {"keys": [{"kty": "RSA", "kid": KID, "alg": "RS256", "use": "sig", "n": b64(bytes.fromhex(modulus)),
                      "e": "AQAB"}]}


def token(key, claims, kid=KID):
    """`claims` as an RS256 JWT signed by openssl with the key in `key`."""
    header = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    message = f"{header}.{b64(json.dumps(claims).encode())}".encode()
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(key)], input=message, check=True, capture_output=True
    ).stdout
    return f"{message.decode()}.{b64(signature)}"


def claims(sub, scope, issuer=ISSUER, audience=AUDIENCE, ttl=3600):
    now = int(time.time())
    return {"sub": sub, "scope": scope, "iss": issuer, "aud": audience, "iat": now, "nbf": now, "exp": now + ttl}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="make a key and its JWKS")
    init.add_argument("dir", nargs="?", default="dev-idp")
    make = commands.add_parser("token", help="print a token")
    make.add_argument("dir", nargs="?", default="dev-idp")
    make.add_argument("--sub", required=True)
    make.add_argument("--scope", default="operations:read operations:write")
    make.add_argument("--issuer", default=ISSUER)
    make.add_argument("--audience", default=AUDIENCE)
    make.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    args = parser.parse_args()
    folder = Path(args.dir)
    key = folder / "key.pem"
    if args.command == "init":
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        key.chmod(0o600)
        (folder / "jwks.json").write_text(json.dumps(jwks(key), indent=2) + "\n")
        print(f"wrote {key} (keep it) and {folder / 'jwks.json'} (give it to keel: auth.jwt.jwks_file)",
              file=sys.stderr)
    else:
        print(token(key, claims(args.sub, args.scope, args.issuer, args.audience, args.ttl)))


if __name__ == "__main__":
    main()
