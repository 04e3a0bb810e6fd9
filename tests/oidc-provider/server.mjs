// A real OpenID provider (panva/oidc-provider 9.x) for the gateway's OIDC tests.
//
// Listens on plain HTTP on 127.0.0.1 only; issuer is http://127.0.0.1:<port>.
// Usage:  node server.mjs [--port N] [--config file.json]
//   port:   --port, else $OIDC_PORT, else 0 (ephemeral; the real port is printed).
//   config: JSON file (see README.md); without it the client comes from
//           $OIDC_CLIENT_ID / $OIDC_CLIENT_SECRET / $OIDC_REDIRECT_URIS (comma separated)
//           and the built-in accounts below are used.
// Prints "READY <port>" on stdout once it accepts connections. $OIDC_DEBUG=1 logs on stderr
// why requests failed.
//
// Sign-in is non-interactive (devInteractions disabled): the interaction route logs in
// the account named by the `login_hint` authorization parameter, else by the
// `oidc_test_account` cookie on the provider's origin. Consent is granted implicitly
// (loadExistingGrant), so one authorization round trip suffices.
//
// Test-only admin endpoints (JSON; if $OIDC_ADMIN_TOKEN is set they need
// `Authorization: Bearer <token>`):
//   POST /__test/rotate            new signing key; body {"keep_old": true|false} (default
//                                  true: old key stays in the JWKS but no longer signs)
//   PUT  /__test/accounts/<id>     set (replace) an account's claims; creates it if missing
//   PATCH /__test/accounts/<id>    merge top-level claims into an account
//   POST /__test/ttl               body {"IdToken": secs, "AccessToken": secs}
//   GET  /__test/state             current kids, accounts and ttls

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { interactionPolicy } from 'oidc-provider';
// Internal module (no "exports" map; version pinned by the lock): its factory gives one
// in-memory store that every Provider instance shares, so sessions, codes and tokens
// survive the provider rebuild that a key rotation does.
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const SHARED_ADAPTER = createMemoryAdapter();

const DEFAULT_ACCOUNTS = {
  alice: {
    email: 'alice@example.test',
    email_verified: true,
    name: 'Alice Admin',
    groups: ['platform', 'team-a'],
    realm_access: { roles: ['omg-admin', 'omg-user'] },
  },
  bob: {
    email: 'bob@example.test',
    email_verified: true,
    name: 'Bob User',
    groups: ['team-b'],
    realm_access: { roles: ['omg-user'] },
  },
  mallory: {
    email: 'mallory@example.test',
    email_verified: false,
    name: 'Mallory NoRole',
    groups: [],
    realm_access: { roles: ['something-else'] },
  },
};

const CLAIMS = {
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: ['name'],
  groups: ['groups'],
  roles: ['realm_access'],
};

function fail(message) {
  process.stderr.write(`oidc test provider: ${message}\n`);
  process.exit(2);
}

function loadSettings() {
  const { values } = parseArgs({
    options: { port: { type: 'string' }, config: { type: 'string' } },
  });
  const file = values.config ?? process.env.OIDC_CONFIG;
  const cfg = file ? JSON.parse(fs.readFileSync(file, 'utf8')) : {};
  const port = Number(values.port ?? cfg.port ?? process.env.OIDC_PORT ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad port ${port}`);
  let clients = cfg.clients;
  if (!clients) {
    const id = process.env.OIDC_CLIENT_ID;
    const secret = process.env.OIDC_CLIENT_SECRET;
    const redirects = process.env.OIDC_REDIRECT_URIS;
    if (!id || !secret || !redirects) {
      fail('give clients in --config, or OIDC_CLIENT_ID, OIDC_CLIENT_SECRET and OIDC_REDIRECT_URIS');
    }
    clients = [{ client_id: id, client_secret: secret, redirect_uris: redirects.split(',') }];
  }
  return {
    port,
    clients: clients.map((c) => ({
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...c,
    })),
    accounts: new Map(Object.entries(cfg.accounts ?? DEFAULT_ACCOUNTS)),
    ttl: { IdToken: 300, AccessToken: 300, ...(cfg.ttl ?? {}) },
    adminToken: process.env.OIDC_ADMIN_TOKEN || cfg.admin_token || null,
  };
}

function newSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };
}

// Log in again when the hinted account differs from the one of the provider session,
// so a test can switch accounts without clearing the provider's cookies.
function buildPolicy() {
  const policy = interactionPolicy.base();
  const { Check } = interactionPolicy;
  policy.get('login').checks.add(
    new Check('login_hint_mismatch', 'login_hint names another account', (ctx) => {
      const hint = ctx.oidc.params.login_hint;
      return hint && hint !== ctx.oidc.session.accountId
        ? Check.REQUEST_PROMPT
        : Check.NO_NEED_TO_PROMPT;
    }),
  );
  return policy;
}

async function loadExistingGrant(ctx) {
  const { client, session, params } = ctx.oidc;
  const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
  const grant = grantId
    ? await ctx.oidc.provider.Grant.find(grantId)
    : new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
  if (!grant) return undefined;
  grant.addOIDCScope(String(params.scope ?? 'openid'));
  await grant.save();
  return grant;
}

function buildProvider(issuer, settings, state) {
  const provider = new Provider(issuer, {
    adapter: SHARED_ADAPTER,
    clients: settings.clients,
    claims: CLAIMS,
    // Put scope claims in the ID token too (default: only at userinfo in code flow).
    conformIdTokenClaims: false,
    cookies: { keys: state.cookieKeys },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      // Needed for an account switch in one provider session: the provider ends the old
      // session through an auto-submitted form to end_session_confirm.
      rpInitiatedLogout: { enabled: true },
    },
    pkce: { required: () => true },
    interactions: {
      policy: buildPolicy(),
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    loadExistingGrant,
    jwks: { keys: state.keys },
    ttl: {
      IdToken: () => settings.ttl.IdToken,
      AccessToken: () => settings.ttl.AccessToken,
      AuthorizationCode: 60,
      Interaction: 300,
      Session: 3600,
      Grant: 3600,
    },
    findAccount: (_ctx, sub) => {
      if (!settings.accounts.has(sub)) return undefined;
      return {
        accountId: sub,
        claims: () => ({ sub, ...settings.accounts.get(sub) }),
      };
    },
    renderError: (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  // Why a request failed (error responses only carry a generic description).
  provider.on('server_error', (_ctx, err) => logErr('server_error', err));
  if (process.env.OIDC_DEBUG) {
    for (const ev of ['grant.error', 'authorization.error', 'userinfo.error', 'jwks.error']) {
      provider.on(ev, (_ctx, err) => logErr(ev, err));
    }
  }
  return provider;
}

function logErr(event, err) {
  const cause = err.cause ? ` (cause: ${err.cause.message ?? err.cause})` : '';
  process.stderr.write(`oidc test provider: ${event}: ${err.error_detail ?? err.message}${cause}\n`);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (c) => {
      size += c.length;
      if (size > 1 << 20) reject(new Error('body too large'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function cookie(req, name) {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return undefined;
}

async function handleInteraction(req, res, state, settings) {
  const provider = state.provider;
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name !== 'login') {
    // Consent is granted by loadExistingGrant; nothing else is expected here.
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: `test provider cannot handle prompt ${details.prompt.name}`,
    });
    return;
  }
  const accountId = details.params.login_hint || cookie(req, 'oidc_test_account');
  if (!accountId || !settings.accounts.has(accountId)) {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: `unknown test account ${JSON.stringify(accountId ?? null)}`,
    });
    return;
  }
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId } },
    { mergeWithLastSubmission: false },
  );
}

async function handleAdmin(req, res, url, state, settings, issuer) {
  if (settings.adminToken && req.headers.authorization !== `Bearer ${settings.adminToken}`) {
    sendJson(res, 401, { error: 'admin token required' });
    return;
  }
  const raw = req.method === 'GET' ? '' : await readBody(req);
  let body;
  try {
    body = raw ? JSON.parse(raw) : {};
  } catch (err) {
    sendJson(res, 400, { error: `body is not JSON: ${err.message}` });
    return;
  }
  const acct = url.pathname.match(/^\/__test\/accounts\/([^/]+)$/);
  if (req.method === 'POST' && url.pathname === '/__test/rotate') {
    const key = newSigningKey();
    // oidc-provider signs with the first key of the alg; the old one only stays published.
    state.keys = body.keep_old === false ? [key] : [key, ...state.keys];
    state.provider = buildProvider(issuer, settings, state);
    state.handler = state.provider.callback();
    sendJson(res, 200, { kid: key.kid, kids: state.keys.map((k) => k.kid) });
  } else if (acct && (req.method === 'PUT' || req.method === 'PATCH')) {
    const id = decodeURIComponent(acct[1]);
    const base = req.method === 'PATCH' ? settings.accounts.get(id) ?? {} : {};
    settings.accounts.set(id, { ...base, ...body });
    sendJson(res, 200, { id, claims: settings.accounts.get(id) });
  } else if (req.method === 'POST' && url.pathname === '/__test/ttl') {
    for (const k of ['IdToken', 'AccessToken']) {
      if (body[k] !== undefined) settings.ttl[k] = Number(body[k]);
    }
    sendJson(res, 200, settings.ttl);
  } else if (req.method === 'GET' && url.pathname === '/__test/state') {
    sendJson(res, 200, {
      kids: state.keys.map((k) => k.kid),
      accounts: Object.fromEntries(settings.accounts),
      ttl: settings.ttl,
    });
  } else {
    sendJson(res, 404, { error: `no test endpoint ${req.method} ${url.pathname}` });
  }
}

function main() {
  const settings = loadSettings();
  const state = {
    keys: [newSigningKey()],
    cookieKeys: [crypto.randomBytes(32).toString('base64url')],
    provider: null,
    handler: null,
  };
  let issuer;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, issuer);
    const route = url.pathname.startsWith('/__test/')
      ? handleAdmin(req, res, url, state, settings, issuer)
      : url.pathname.startsWith('/interaction/')
        ? handleInteraction(req, res, state, settings)
        : Promise.resolve(state.handler(req, res));
    route.catch((err) => {
      process.stderr.write(`oidc test provider: ${req.method} ${url.pathname}: ${err.stack}\n`);
      if (!res.headersSent) sendJson(res, 500, { error: String(err.message ?? err) });
      else res.end();
    });
  });
  server.listen(settings.port, '127.0.0.1', () => {
    const { port } = server.address();
    issuer = `http://127.0.0.1:${port}`;
    state.provider = buildProvider(issuer, settings, state);
    state.handler = state.provider.callback();
    process.stdout.write(`READY ${port}\n`);
  });
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
}

main();
