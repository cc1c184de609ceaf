"""OAuth checks against switchboard in auth mode `oauth`, run by tests/interop/oauth/run.sh.

    checks.py flow URL ISSUER            the official Python SDK's OAuthClientProvider runs the
                                         whole flow headless (401 → protected resource metadata →
                                         authorization server metadata → dynamic registration →
                                         PKCE authorization code with a resource indicator →
                                         JWT access token), then lists and calls tools
    checks.py refused URL ISSUER         tokens for another audience, expired, signed by an
                                         unknown key, `alg: none`, short of a scope: each gets
                                         the right 401/403 with a usable WWW-Authenticate
    checks.py accepted URL ISSUER KID [RESOURCE]
                                         a fresh client-credentials token for RESOURCE (default
                                         URL), signed with KID, opens a session at URL: after a
                                         key rotation, without a restart

Prints one "PASS name: detail" / "FAIL name: detail" line per check; exits 1 on any FAIL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sys
import time
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2

OTHER_RESOURCE = "https://other.example/mcp"
REDIRECT_URI = "http://127.0.0.1:1/callback"  # never reached: the test follows the redirects itself
ACCEPT = "application/json, text/event-stream"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "oauth-checks", "version": "0"}},
}

failures = 0


def report(ok: bool, name: str, detail: str = "") -> bool:
    global failures
    if not ok:
        failures += 1
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def header_of(token: str) -> dict:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def client_token(issuer: str, client: str, resource: str, scope: str) -> str:
    response = httpx2.post(
        f"{issuer}/token",
        auth=(client, f"{client}-secret"),
        data={"grant_type": "client_credentials", "resource": resource, "scope": scope},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["access_token"]


def initialize(url: str, token: str) -> httpx2.Response:
    headers = {"Accept": ACCEPT, "Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    return httpx2.post(url, headers=headers, content=json.dumps(INITIALIZE), timeout=30)


def challenge_params(response: httpx2.Response) -> dict[str, str]:
    value = response.headers.get("www-authenticate", "")
    if not value.startswith("Bearer "):
        return {}
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


# --- the whole flow through the SDK ----------------------------------------------------


class Headless:
    """The SDK's redirect and callback handlers, without a browser: the authorization URL is
    followed over HTTP (the provider's interaction answers itself) up to the redirect URI."""

    def __init__(self) -> None:
        self.result = None
        self.hops: list[str] = []

    async def redirect(self, url: str) -> None:
        from mcp.shared.auth import AuthorizationCodeResult

        async with httpx2.AsyncClient(timeout=30) as http:
            for _ in range(20):
                response = await http.get(url, follow_redirects=False)
                location = response.headers.get("location")
                if not location:
                    raise RuntimeError(f"no redirect from {urlparse(url).path}: {response.status_code} {response.text[:300]}")
                location = urljoin(url, location)
                self.hops.append(urlparse(location).path)
                if location.startswith(REDIRECT_URI):
                    query = parse_qs(urlparse(location).query)
                    if "code" not in query:
                        raise RuntimeError(f"authorization refused: {query}")
                    self.result = AuthorizationCodeResult(
                        code=query["code"][0], state=query.get("state", [None])[0], iss=query.get("iss", [None])[0]
                    )
                    return
                url = location
        raise RuntimeError("too many redirects")

    async def callback(self):
        return self.result


class Memory:
    def __init__(self) -> None:
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens) -> None:
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client) -> None:
        self.client = client


async def flow(url: str, issuer: str) -> None:
    from mcp import Client
    from mcp.client.auth import OAuthClientProvider
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.auth import OAuthClientMetadata

    headless, storage = Headless(), Memory()
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="switchboard oauth checks",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=headless.redirect,
        callback_handler=headless.callback,
    )
    wire: list[tuple[str, str, int]] = []

    async def log(response: httpx2.Response) -> None:
        wire.append((response.request.method, response.request.url.path, response.status_code))

    http = httpx2.AsyncClient(auth=provider, timeout=60, follow_redirects=True, event_hooks={"response": [log]})
    async with http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            token = storage.tokens.access_token if storage.tokens else ""
            claims = claims_of(token) if token.count(".") == 2 else {}
            report(
                claims.get("aud") == url and claims.get("iss") == issuer and claims.get("sub") == "alice",
                "SDK OAuthClientProvider: the whole flow ran headless",
                f"registered {storage.client.client_id if storage.client else None}; JWT access token "
                f"aud={claims.get('aud')} sub={claims.get('sub')} scope={claims.get('scope')!r}; "
                f"redirects followed: {' → '.join(headless.hops)}",
            )
            steps = [f"{m} {p} {s}" for m, p, s in wire]
            report(
                any("401" in s and p.endswith("/mcp") for m, p, s in [(m, p, str(s)) for m, p, s in wire])
                and any("oauth-protected-resource" in p for _, p, _ in wire)
                and any(p == "/reg" for _, p, _ in wire)
                and any(p == "/token" for _, p, _ in wire),
                "SDK: 401 → resource metadata → registration → token",
                "; ".join(steps[:8]),
            )
            tools = await client.list_tools()
            names = sorted(t.name for t in tools.tools)
            report("echo" in names, "SDK: tools/list through nginx", ", ".join(names))
            result = await client.call_tool("echo", {"text": "authorized"})
            text = result.content[0].text if result.content else ""
            report("authorized" in text and not result.is_error, "SDK: tools/call echo", text[:80])
            summary = await client.call_tool("survey_summary", {"survey": "onboarding-2025"})
            report(not summary.is_error, "SDK: tools/call survey_summary (the demo's API key is the `sub` claim)",
                   (summary.content[0].text if summary.content else "")[:80])


# --- refused tokens ------------------------------------------------------------------


def refused(url: str, issuer: str) -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    good = client_token(issuer, "checks", url, "mcp who:use")
    response = initialize(url, good)
    report(response.status_code == 200, "a client-credentials token for this resource is accepted", str(response.status_code))
    template = claims_of(good)

    def forged(headers: dict, claims: dict, key) -> str:
        return jwt.encode(claims, key, algorithm=headers.get("alg", "RS256"), headers=headers)

    rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unknown_key = forged({"alg": "RS256", "kid": "rogue", "typ": "at+jwt"}, dict(template, sub="mallory"), rogue)
    alg_none = f"{b64(json.dumps({'alg': 'none', 'typ': 'at+jwt'}).encode())}.{b64(json.dumps(template).encode())}."
    other = client_token(issuer, "checks", OTHER_RESOURCE, "mcp who:use")
    short = client_token(issuer, "short", url, "mcp who:use")
    unscoped = client_token(issuer, "checks", url, "profile")
    time.sleep(max(0, claims_of(short)["exp"] - time.time()) + 2.5)  # past exp and the 1 s leeway
    cases = [
        ("a token for another audience", other, 401, "invalid_token", "aud"),
        ("an expired token", short, 401, "invalid_token", "expired"),
        ("a token signed by an unknown key", unknown_key, 401, "invalid_token", "key"),
        ("alg: none", alg_none, 401, "invalid_token", "none"),
        ("a token without the required scope", unscoped, 403, "insufficient_scope", "mcp"),
    ]
    for name, token, status, error, hint in cases:
        response = initialize(url, token)
        params = challenge_params(response)
        metadata_ok = False
        if params.get("resource_metadata"):
            document = httpx2.get(params["resource_metadata"], timeout=10)
            metadata_ok = document.status_code == 200 and document.json().get("resource") == url \
                and issuer in document.json().get("authorization_servers", [])
        described = hint in (params.get("error_description", "") + " " + params.get("scope", ""))
        report(
            response.status_code == status and params.get("error") == error and metadata_ok and described,
            f"{name}: {status} {error}",
            f"HTTP {response.status_code}; WWW-Authenticate: {response.headers.get('www-authenticate', '(none)')[:220]}",
        )
    response = httpx2.post(url, headers={"Accept": ACCEPT, "Content-Type": "application/json"},
                           content=json.dumps(INITIALIZE), timeout=30)
    params = challenge_params(response)
    report(response.status_code == 401 and "resource_metadata" in params and "error" not in params,
           "no token: 401 with resource_metadata (no error code, RFC 6750)", response.headers.get("www-authenticate", ""))


def accepted(url: str, issuer: str, kid: str, resource: str) -> None:
    token = client_token(issuer, "checks", resource, "mcp who:use")
    response = initialize(url, token)
    report(
        header_of(token).get("kid") == kid and response.status_code == 200,
        f"a token signed with key {kid} is accepted at {url}",
        f"token kid {header_of(token).get('kid')}; HTTP {response.status_code} {response.text[:120] if response.status_code != 200 else ''}",
    )


def main() -> int:
    command, url, issuer = sys.argv[1], sys.argv[2], sys.argv[3]
    try:
        if command == "flow":
            asyncio.run(flow(url, issuer))
        elif command == "refused":
            refused(url, issuer)
        elif command == "accepted":
            accepted(url, issuer, sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else url)
        else:
            raise SystemExit(f"unknown command {command}")
    except Exception as e:  # a crash is a FAIL line of its own
        report(False, f"{command} crashed", f"{type(e).__name__}: {e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
