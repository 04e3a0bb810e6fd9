#!/usr/bin/env python3
"""Smoke test of the test OpenID provider, as a relying party would use it (stdlib only).

Starts server.mjs on an ephemeral loopback port, then runs the authorization code + PKCE
(S256) flow with state and nonce, following redirects by hand, exchanges the code at the
token endpoint (client_secret_basic), verifies the ID token (RS256 signature against the
JWKS, iss, aud, azp, exp, iat, nonce) and prints its claims. Then checks: PKCE is required,
a wrong code_verifier is refused, a code is single use, switching account by login_hint in
the same browser session, claim changes via the admin endpoint, and key rotation (the new
ID token carries the new kid, the JWKS publishes it).

Usage: python3 smoke.py   (run `npm ci` in this directory first)
"""

import base64
import hashlib
import html.parser
import http.cookiejar
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_ID = "omg-gateway"
CLIENT_SECRET = "smoke-secret-" + secrets.token_hex(8)
REDIRECT_URI = "http://127.0.0.1:9/oidc/callback"  # never contacted: we stop at the redirect
ADMIN_TOKEN = secrets.token_hex(16)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def start_provider():
    env = dict(os.environ, OIDC_CLIENT_ID=CLIENT_ID, OIDC_CLIENT_SECRET=CLIENT_SECRET,
               OIDC_REDIRECT_URIS=REDIRECT_URI, OIDC_ADMIN_TOKEN=ADMIN_TOKEN)
    proc = subprocess.Popen(["node", os.path.join(HERE, "server.mjs"), "--port", "0"],
                            stdout=subprocess.PIPE, env=env, text=True)
    line = proc.stdout.readline()  # blocks until READY (or EOF if it died)
    if not line.startswith("READY "):
        proc.kill()
        sys.exit(f"provider did not start: {line!r}")
    return proc, int(line.split()[1])


class AutoSubmitForm(html.parser.HTMLParser):
    """The provider's self-submitting form_post page: its action and hidden inputs."""

    def __init__(self):
        super().__init__()
        self.action, self.fields = None, {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action")
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")

    @classmethod
    def parse(cls, body):
        p = cls()
        p.feed(body.decode("utf-8", "replace"))
        return p if p.action else None


class Browser:
    """A user agent with its own cookie jar that does not follow redirects."""

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect())

    def get(self, url):
        try:
            with self.opener.open(url) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def post_form(self, url, fields):
        req = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode())
        try:
            with self.opener.open(req) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def authorize(self, auth_url, stop_prefix, max_hops=10):
        """Follow redirects (and auto-submitted forms, as a browser would) until one
        points at the client's redirect_uri."""
        url = auth_url
        for _ in range(max_hops):
            status, headers, body = self.get(url)
            form = AutoSubmitForm.parse(body) if status == 200 else None
            if form:  # account switch: the provider ends its old session first
                status, headers, body = self.post_form(form.action, form.fields)
            loc = headers.get("Location")
            if status not in (302, 303) or not loc:
                raise RuntimeError(f"no redirect from {url}: {status} {body[:300]!r}")
            url = urllib.parse.urljoin(url, loc)
            if url.startswith(stop_prefix):
                return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        raise RuntimeError("too many redirects")


def http_json(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def admin(base, method, path, body=None):
    data = json.dumps(body or {}).encode()
    return http_json(method, base + path, data, {
        "Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})[1]


def rs256_verify(signing_input, sig, jwk):
    """RSASSA-PKCS1-v1_5 with SHA-256, by hand (stdlib has no RSA)."""
    n = int.from_bytes(b64url_decode(jwk["n"]), "big")
    e = int.from_bytes(b64url_decode(jwk["e"]), "big")
    k = (n.bit_length() + 7) // 8
    em = pow(int.from_bytes(sig, "big"), e, n).to_bytes(k, "big")
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
    digest = hashlib.sha256(signing_input).digest()
    expected = b"\x00\x01" + b"\xff" * (k - 3 - len(digest_info) - 32) + b"\x00"
    return em == expected + digest_info + digest


def verify_id_token(id_token, meta, nonce):
    h64, p64, s64 = id_token.split(".")
    header, claims = json.loads(b64url_decode(h64)), json.loads(b64url_decode(p64))
    jwks = http_json("GET", meta["jwks_uri"])[1]
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert header["alg"] == "RS256", header
    assert rs256_verify(f"{h64}.{p64}".encode(), b64url_decode(s64), key), "bad signature"
    now = time.time()
    assert claims["iss"] == meta["issuer"], claims
    assert claims["aud"] == CLIENT_ID or CLIENT_ID in claims["aud"], claims
    assert claims.get("azp", CLIENT_ID) == CLIENT_ID, claims
    assert claims["exp"] > now and claims["iat"] <= now + 5, claims
    assert claims["nonce"] == nonce, claims
    return header, claims


def sign_in(browser, meta, account, pkce=True, scope="openid email profile groups roles"):
    verifier = b64url(secrets.token_bytes(32))
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
              "scope": scope, "state": state, "nonce": nonce, "login_hint": account}
    if pkce:
        params["code_challenge"] = b64url(hashlib.sha256(verifier.encode()).digest())
        params["code_challenge_method"] = "S256"
    cb = browser.authorize(meta["authorization_endpoint"] + "?" + urllib.parse.urlencode(params),
                           REDIRECT_URI)
    return cb, state, nonce, verifier


def exchange(meta, code, verifier):
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    form = urllib.parse.urlencode({"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": REDIRECT_URI,
                                   "code_verifier": verifier}).encode()
    return http_json("POST", meta["token_endpoint"], form, {
        "Authorization": f"Basic {basic}",
        "Content-Type": "application/x-www-form-urlencoded"})


def full_flow(browser, meta, account):
    cb, state, nonce, verifier = sign_in(browser, meta, account)
    assert cb.get("state") == state and "code" in cb, cb
    assert cb.get("iss") == meta["issuer"], cb  # RFC 9207 iss in the authorization response
    status, tokens = exchange(meta, cb["code"], verifier)
    assert status == 200, tokens
    header, claims = verify_id_token(tokens["id_token"], meta, nonce)
    return header, claims, tokens, cb, verifier


def main():
    proc, port = start_provider()
    try:
        base = f"http://127.0.0.1:{port}"
        meta = http_json("GET", base + "/.well-known/openid-configuration")[1]
        print(f"provider up: issuer={meta['issuer']} "
              f"pkce={meta['code_challenge_methods_supported']}")

        browser = Browser()
        header, claims, tokens, cb, verifier = full_flow(browser, meta, "alice")
        print(f"1. code+PKCE sign-in as alice: kid={header['kid']}")
        print("   ID token claims:", json.dumps(claims, indent=None, sort_keys=True))
        status, info = http_json("GET", meta["userinfo_endpoint"], headers={
            "Authorization": f"Bearer {tokens['access_token']}"})
        print(f"   userinfo {status}: {json.dumps(info, sort_keys=True)}")

        status, err = exchange(meta, cb["code"], verifier)
        print(f"2. code replay refused: {status} {err['error']}")
        assert status == 400 and err["error"] == "invalid_grant"

        cb, _, _, _ = sign_in(browser, meta, "bob")
        status, err = exchange(meta, cb["code"], b64url(secrets.token_bytes(32)))
        print(f"3. wrong code_verifier refused: {status} {err['error']}")
        assert status == 400 and err["error"] == "invalid_grant"

        cb, _, _, _ = sign_in(Browser(), meta, "alice", pkce=False)
        print(f"4. no code_challenge refused: {cb['error']}: {cb['error_description']}")
        assert cb["error"] == "invalid_request"

        _, claims, _, _, _ = full_flow(browser, meta, "bob")
        print(f"5. same browser, login_hint=bob: sub={claims['sub']} "
              f"roles={claims['realm_access']['roles']}")
        assert claims["sub"] == "bob"

        admin(base, "PATCH", "/__test/accounts/bob",
              {"realm_access": {"roles": ["omg-user", "omg-admin"]}, "groups": ["team-a"]})
        _, claims, _, _, _ = full_flow(browser, meta, "bob")
        print(f"6. after PATCH /__test/accounts/bob: roles={claims['realm_access']['roles']} "
              f"groups={claims['groups']}")
        assert "omg-admin" in claims["realm_access"]["roles"]

        old_kid = header["kid"]
        cb, _, nonce, verifier = sign_in(browser, meta, "bob")  # code issued before rotation
        rot = admin(base, "POST", "/__test/rotate", {"keep_old": False})
        header, claims, _, _, _ = full_flow(Browser(), meta, "alice")
        jwks = http_json("GET", meta["jwks_uri"])[1]
        print(f"7. after POST /__test/rotate: old kid={old_kid} new kid={rot['kid']} "
              f"token kid={header['kid']} jwks kids={[k['kid'] for k in jwks['keys']]}")
        assert header["kid"] == rot["kid"] and old_kid not in rot["kids"]
        status, tokens = exchange(meta, cb["code"], verifier)
        header, _ = verify_id_token(tokens["id_token"], meta, nonce)
        print(f"   code issued before the rotation still exchanges: {status}, kid={header['kid']}")
        assert header["kid"] == rot["kid"]

        cb, _, _, _ = sign_in(Browser(), meta, "nobody")
        print(f"8. unknown account: {cb['error']}: {cb['error_description']}")
        assert cb["error"] == "access_denied"
        print("SMOKE OK")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
