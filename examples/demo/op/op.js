// A real OpenID Provider for tokenrelay's demo and end-to-end tests, built on
// the certified node `oidc-provider` package. It is a development tool: any
// login and password are accepted by its built-in (devInteractions) pages.
//
// Settings come from flags (--port=0) or the environment (OP_PORT=0); flags win.
//
//   --host / OP_HOST                          listen address (default 127.0.0.1)
//   --port / OP_PORT                          port, 0 picks a free one (default 9000)
//   --client-id / OP_CLIENT_ID                (default tokenrelay)
//   --client-secret / OP_CLIENT_SECRET        (default tokenrelay-demo-secret)
//   --redirect-uris / OP_REDIRECT_URIS        comma separated (default http://localhost:8080/.auth/callback)
//   --post-logout-redirect-uris / OP_POST_LOGOUT_REDIRECT_URIS  comma separated (default http://localhost:8080/)
//   --backchannel-logout-uri / OP_BACKCHANNEL_LOGOUT_URI        (default none)
//   --resource / OP_RESOURCE                  audience of the JWT access tokens (default urn:tokenrelay:demo-api)
//   --access-ttl / ACCESS_TTL                 access token lifetime in seconds (default 30)
//   --refresh-ttl / REFRESH_TTL               refresh token lifetime in seconds (default 14 days)
//
// Besides the OpenID Provider endpoints it answers, for tests only:
//   GET  /__stats  JSON counters of token endpoint outcomes and logout events
//   POST /__reset  zeroes the counters
//   POST /__revoke?sub=<account>  revokes every grant of that account (its
//                  refresh and access tokens die), as an administrator
//                  would; answers {"grants": <how many>}
//   POST /__token_delay?ms=<n>  delays every token endpoint answer by n ms
//                  (0 turns it off), so concurrent refreshes overlap
//   GET  /__tokens?account=<id>  what the OP issued to that account: its
//        refresh tokens and authorization codes (values, oldest first) and
//        the sids of its sessions; the security tests need the values to
//        introspect them and to search logs for them
//   POST /__backchannel-logout?account=<id>&sid=<sid>  sends the client's
//        back-channel logout token for that account and sid now, as an
//        end-session would; 200 when the client answered 200/204, else 502
//
// When listening it prints "OP ready on <issuer>" on stdout.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: flags } = parseArgs({
  options: {
    host: { type: 'string' },
    port: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uris': { type: 'string' },
    'post-logout-redirect-uris': { type: 'string' },
    'backchannel-logout-uri': { type: 'string' },
    resource: { type: 'string' },
    'access-ttl': { type: 'string' },
    'refresh-ttl': { type: 'string' },
  },
  strict: true,
});

function setting(flag, env, fallback) {
  const v = flags[flag] ?? process.env[env];
  return v === undefined || v === '' ? fallback : v;
}

function list(v) {
  return v.split(',').map((s) => s.trim()).filter(Boolean);
}

function seconds(name, v) {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) {
    throw new Error(`op: ${name} must be a positive whole number of seconds, got ${JSON.stringify(v)}`);
  }
  return n;
}

const settings = {
  host: setting('host', 'OP_HOST', '127.0.0.1'),
  port: Number(setting('port', 'OP_PORT', '9000')),
  clientId: setting('client-id', 'OP_CLIENT_ID', 'tokenrelay'),
  clientSecret: setting('client-secret', 'OP_CLIENT_SECRET', 'tokenrelay-demo-secret'),
  redirectUris: list(setting('redirect-uris', 'OP_REDIRECT_URIS', 'http://localhost:8080/.auth/callback')),
  postLogoutRedirectUris: list(setting('post-logout-redirect-uris', 'OP_POST_LOGOUT_REDIRECT_URIS', 'http://localhost:8080/')),
  backchannelLogoutUri: setting('backchannel-logout-uri', 'OP_BACKCHANNEL_LOGOUT_URI', ''),
  resource: setting('resource', 'OP_RESOURCE', 'urn:tokenrelay:demo-api'),
  accessTTL: seconds('access-ttl', setting('access-ttl', 'ACCESS_TTL', '30')),
  refreshTTL: seconds('refresh-ttl', setting('refresh-ttl', 'REFRESH_TTL', String(14 * 24 * 3600))),
};

// Counters read by the end-to-end tests. Token values are never recorded.
const zeroStats = () => ({
  code_success: 0, // authorization_code grants that returned tokens
  code_error: 0,
  refresh_success: 0, // refresh_token grants that returned tokens
  refresh_error: 0, // refresh_token grants that failed, for any reason
  invalid_grant: 0, // token endpoint invalid_grant answers, any grant type
  refresh_reused: 0, // a rotated (already used) refresh token was presented
  refresh_consumed: 0, // refresh tokens rotated away
  revocations: 0, // successful calls to the revocation endpoint
  grants_revoked: 0, // grants revoked (logout revocation, reuse detection)
  introspections: 0,
  end_session: 0, // RP-initiated logouts completed
  backchannel_success: 0,
  backchannel_error: 0,
  server_error: 0,
});
let stats = zeroStats();

// Grant ids by account id, for POST /__revoke. Filled as refresh tokens are
// issued; ids only, never token values.
const grantsByAccount = new Map();

// A fresh signing key per start: tests must fetch the JWKS, never pin a key.
const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'),
  use: 'sig',
  alg: 'RS256',
};

const claimsOf = (accountId) => ({
  sub: accountId,
  name: accountId,
  preferred_username: accountId,
  email: `${accountId}@example.test`,
  email_verified: true,
});

function configuration() {
  const client = {
    client_id: settings.clientId,
    client_secret: settings.clientSecret,
    // client_secret_post is accepted too: oidc-provider lets a client that
    // has a secret authenticate with either of the two secret methods.
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: settings.redirectUris,
    post_logout_redirect_uris: settings.postLogoutRedirectUris,
  };
  if (settings.backchannelLogoutUri) {
    client.backchannel_logout_uri = settings.backchannelLogoutUri;
    client.backchannel_logout_session_required = true;
  }

  return {
    clients: [client],
    // oidc-provider's outgoing requests (back-channel logout tokens) refuse
    // special-use addresses, loopback included, as SSRF protection. The demo
    // OP's only outgoing call is to tokenrelay's back-channel logout URI on
    // this machine, so its requests use the plain fetch.
    fetch: (url, options) => {
      const { dispatcher: _ssrfGuard, ...rest } = options;
      return fetch(url, rest);
    },
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'api:read'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    // Put the profile and email claims into the ID token: the access tokens
    // are JWTs for the API (resource indicators), which the userinfo
    // endpoint does not accept, so the ID token is where the relying party
    // learns them.
    conformIdTokenClaims: false,
    findAccount: async (_ctx, id) => ({
      accountId: id,
      claims: async () => claimsOf(id),
    }),
    // Every refresh returns a new refresh token and kills the old one; using
    // a killed one is answered invalid_grant and revokes the whole grant.
    rotateRefreshToken: true,
    ttl: {
      AccessToken: settings.accessTTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 3600,
      Session: settings.refreshTTL,
      Grant: settings.refreshTTL,
      RefreshToken: settings.refreshTTL,
    },
    features: {
      devInteractions: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // The default page loads web fonts from the internet; this one is
        // self-contained, with the "yes" button inside the form, as a
        // browser (or the test's form-filling client) expects.
        logoutSource: async (ctx, form) => {
          const buttons = '<button autofocus type="submit" name="logout" value="yes">Yes, sign me out</button>\n'
            + '<button type="submit">No, stay signed in</button>\n</form>';
          ctx.type = 'html';
          ctx.body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign out</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 30rem; margin: 3rem auto">
<h1>Sign out of the demo OpenID Provider?</h1>
${form.replace('</form>', buttons)}
</body></html>`;
        },
      },
      // Access tokens are JWTs signed by the OP for one resource (the API),
      // requested or not: the API verifies them against the OP's JWKS.
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? settings.resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => {
          if (resource !== settings.resource) {
            throw new Provider.errors.InvalidTarget();
          }
          return {
            scope: 'api:read',
            audience: settings.resource,
            accessTokenTTL: settings.accessTTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  };
}

function grantType(ctx) {
  return ctx.oidc?.params?.grant_type ?? ctx.request?.body?.grant_type;
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(settings.port, settings.host, () => resolve(server.address().port));
  });
}

const server = createServer();
const port = await listen(server);
const hostForURL = settings.host.includes(':') ? `[${settings.host}]` : settings.host;
const issuer = `http://${hostForURL}:${port}`;

const provider = new Provider(issuer, configuration());

provider.on('grant.success', (ctx) => {
  switch (grantType(ctx)) {
    case 'authorization_code': stats.code_success += 1; break;
    case 'refresh_token': stats.refresh_success += 1; break;
    default:
  }
});
provider.on('grant.error', (ctx, err) => {
  const gty = grantType(ctx);
  if (gty === 'authorization_code') stats.code_error += 1;
  if (gty === 'refresh_token') stats.refresh_error += 1;
  if (err?.error === 'invalid_grant') stats.invalid_grant += 1;
  if (err?.error_detail === 'refresh token already used') stats.refresh_reused += 1;
  console.log(`op: token endpoint error grant_type=${gty} error=${err?.error} detail=${err?.error_detail ?? ''}`);
});
// Per account, for GET /__tokens (tests only; the demo OP is a dev tool).
const issued = new Map();
function issuedTo(accountId) {
  if (!issued.has(accountId)) issued.set(accountId, { refresh_tokens: [], codes: [], sids: [] });
  return issued.get(accountId);
}
provider.on('refresh_token.saved', (token) => {
  const rec = issuedTo(token.accountId);
  if (!rec.refresh_tokens.includes(token.jti)) rec.refresh_tokens.push(token.jti);
});
provider.on('authorization_code.saved', (code) => {
  const rec = issuedTo(code.accountId);
  rec.codes.push(code.jti);
  if (code.sid && !rec.sids.includes(code.sid)) rec.sids.push(code.sid);
});

provider.on('refresh_token.consumed', () => { stats.refresh_consumed += 1; });
provider.on('refresh_token.saved', (token) => {
  if (!token.accountId || !token.grantId) return;
  if (!grantsByAccount.has(token.accountId)) grantsByAccount.set(token.accountId, new Set());
  grantsByAccount.get(token.accountId).add(token.grantId);
});

// revokeAccount ends every grant of accountId at the OP: its refresh and
// access tokens are revoked and the grant destroyed, so the next refresh is
// answered invalid_grant.
async function revokeAccount(accountId) {
  const ids = [...(grantsByAccount.get(accountId) ?? [])];
  grantsByAccount.delete(accountId);
  for (const id of ids) {
    await provider.RefreshToken.revokeByGrantId(id);
    await provider.AccessToken.revokeByGrantId(id);
    await provider.Grant.adapter.destroy(id);
    stats.grants_revoked += 1;
  }
  return ids.length;
}
provider.on('grant.revoked', () => { stats.grants_revoked += 1; });
provider.on('end_session.success', () => { stats.end_session += 1; });
provider.on('backchannel.success', () => { stats.backchannel_success += 1; });
provider.on('backchannel.error', (_ctx, err) => {
  stats.backchannel_error += 1;
  console.log(`op: back-channel logout failed: ${err?.message}`);
});
provider.on('server_error', (_ctx, err) => {
  stats.server_error += 1;
  console.log(`op: server error: ${err?.stack ?? err}`);
});

// Set by POST /__token_delay.
let tokenDelayMs = 0;

// Count the endpoints that emit no success event of their own.
provider.use(async (ctx, next) => {
  if (tokenDelayMs > 0 && ctx.method === 'POST' && ctx.path === '/token') {
    await new Promise((resolve) => { setTimeout(resolve, tokenDelayMs); });
  }
  await next();
  if (ctx.status !== 200) return;
  if (ctx.oidc?.route === 'revocation') stats.revocations += 1;
  if (ctx.oidc?.route === 'introspection') stats.introspections += 1;
});

const providerHandler = provider.callback();
server.on('request', (req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/__stats' && req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(stats));
    return;
  }
  if (path === '/__reset' && req.method === 'POST') {
    stats = zeroStats();
    res.writeHead(204);
    res.end();
    return;
  }
  if (path === '/__token_delay' && req.method === 'POST') {
    const ms = Number(new URL(req.url, issuer).searchParams.get('ms'));
    if (!Number.isInteger(ms) || ms < 0 || ms > 60000) {
      res.writeHead(400);
      res.end();
      return;
    }
    tokenDelayMs = ms;
    res.writeHead(204);
    res.end();
    return;
  }
  if (path === '/__revoke' && req.method === 'POST') {
    const sub = new URL(req.url, issuer).searchParams.get('sub') ?? '';
    revokeAccount(sub).then((n) => {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify({ grants: n }));
    }, (err) => {
      console.log(`op: revoke failed: ${err?.stack ?? err}`);
      res.writeHead(500);
      res.end();
    });
    return;
  }
  if (path === '/__tokens' && req.method === 'GET') {
    const account = new URL(req.url, issuer).searchParams.get('account') ?? '';
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(issued.get(account) ?? { refresh_tokens: [], codes: [], sids: [] }));
    return;
  }
  if (path === '/__backchannel-logout' && req.method === 'POST') {
    backchannelLogout(new URL(req.url, issuer).searchParams, res);
    return;
  }
  providerHandler(req, res);
});

async function backchannelLogout(params, res) {
  const account = params.get('account');
  const sid = params.get('sid');
  try {
    if (!account || !sid) throw new Error('account and sid are required');
    const client = await provider.Client.find(settings.clientId);
    if (!client?.backchannelLogoutUri) throw new Error('the client has no backchannel_logout_uri');
    await client.backchannelLogout(account, sid);
    stats.backchannel_success += 1;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  } catch (err) {
    stats.backchannel_error += 1;
    console.log(`op: back-channel logout failed: ${err?.message}`);
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: String(err?.message ?? err) }));
  }
}

function shutdown(signal) {
  console.log(`op: ${signal}, stopping`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

console.log(`op: client ${settings.clientId}, redirect URIs ${settings.redirectUris.join(' ')}, access tokens ${settings.accessTTL}s for ${settings.resource}`);
console.log(`OP ready on ${issuer}`);
