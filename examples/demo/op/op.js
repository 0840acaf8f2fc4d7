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
// Test-only features for per-route tokens, all off by default (the demo does
// not need them):
//
//   --resources=a,b                more resource servers (RFC 8707) besides --resource;
//                                  a login may ask for several, a refresh picks one
//   --client-credentials           the client may use the client_credentials grant
//   --token-exchange               the client may use RFC 8693 token exchange of an
//                                  access token this OP issued for one of a resource
//   --pkjwt-client-id=<id>         a second client that authenticates with
//   --pkjwt-jwks=<file>            private_key_jwt, its public keys in the JWKS file
//   --dpop-nonce                   DPoP proofs must carry the OP's nonce
//   --require-par                  authorization requests must be pushed (RFC 9126)
//   --unbounded-store              keep every object (grants, sessions, tokens) until
//                                  it expires, instead of oidc-provider's LRU of 1000
//                                  objects, which storms of hundreds of sessions outgrow
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
//   GET  /__traceparents  the W3C traceparent headers of the last 100
//        token endpoint requests (null for one without), oldest first
//   POST /__backchannel-logout?account=<id>&sid=<sid>  sends the client's
//        back-channel logout token for that account and sid now, as an
//        end-session would; 200 when the client answered 200/204, else 502
//
// Accounts: any login and password are accepted. A few accounts have claims of
// their own, for the policy tests (see accounts below); any other login gets
// <login>@example.test, verified. Every login gets acr urn:tokenrelay:loa:1
// and amr [pwd], except that an account marked mfa gets urn:tokenrelay:loa:2
// and amr [pwd, otp] when the authorization request asks for loa:2 in
// acr_values; a session whose acr does not meet the acr_values asked for is
// sent through the login form again (step-up). The ID token always carries
// acr, amr and auth_time.
//
// When listening it prints "OP ready on <issuer>" on stdout.

import {
  createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import { createLocalJWKSet, jwtVerify } from 'jose';
import Provider, { interactionPolicy } from 'oidc-provider';
// Token exchange is not built in: its grant proves DPoP as the built-in
// grants do, with oidc-provider's own helper.
import validateDpop, { checkDpopReplay } from 'oidc-provider/lib/helpers/validate_dpop.js';

const tokenExchangeGrant = 'urn:ietf:params:oauth:grant-type:token-exchange';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';

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
    resources: { type: 'string' },
    'client-credentials': { type: 'boolean' },
    'token-exchange': { type: 'boolean' },
    'pkjwt-client-id': { type: 'string' },
    'pkjwt-jwks': { type: 'string' },
    'dpop-nonce': { type: 'boolean' },
    'require-par': { type: 'boolean' },
    'unbounded-store': { type: 'boolean' },
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
  clientCredentials: flags['client-credentials'] === true,
  tokenExchange: flags['token-exchange'] === true,
  pkjwtClientId: flags['pkjwt-client-id'] ?? '',
  pkjwtJwks: flags['pkjwt-jwks'] ?? '',
  dpopNonce: flags['dpop-nonce'] === true,
  requirePAR: flags['require-par'] === true,
  unboundedStore: flags['unbounded-store'] === true,
};
settings.resources = [settings.resource, ...list(flags.resources ?? '').filter((r) => r !== settings.resource)];

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
  client_credentials: 0, // client_credentials grants that returned a token
  token_exchange: 0, // token exchanges that returned a token
  par: 0, // pushed authorization requests accepted
  auth_pushed: 0, // authorization requests that came as a request_uri
  auth_plain: 0, // authorization requests that carried their parameters
  token_errors: {}, // token endpoint error answers by error code
});
let stats = zeroStats();

// Grant ids by account id, for POST /__revoke. Filled as refresh tokens are
// issued; ids only, never token values.
const grantsByAccount = new Map();

// A fresh signing key per start: tests must fetch the JWKS, never pin a key.
// The key is generated as PEM and read back before it is exported as a JWK:
// Node 20 can deadlock when a garbage collection during the JWK export of a
// key straight from generateKeyPairSync destroys the generation job, which
// takes the lock the export holds (the OP then hangs before listening).
const signingKey = {
  ...createPrivateKey(generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  }).privateKey).export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'),
  use: 'sig',
  alg: 'RS256',
};

// The authentication context classes this OP gives: a password, or a
// password and a second factor.
const ACR_PASSWORD = 'urn:tokenrelay:loa:1';
const ACR_MFA = 'urn:tokenrelay:loa:2';

// Test accounts with claims of their own: different emails (one at another
// domain, one unverified claiming an admin's address), groups (a list, or a
// single string as some providers send), a department, and whether the
// account can give the MFA acr.
const accounts = {
  ada: { email: 'ada@example.test', email_verified: true, groups: ['staff', 'admins'], department: 'eng', mfa: true },
  ben: { email: 'ben@example.test', email_verified: true, groups: ['staff'], department: 'sales' },
  cyd: { email: 'cyd@partner.example', email_verified: true, groups: 'contractors' },
  eve: { email: 'admin@example.test', email_verified: false, groups: ['admins'] },
};

const claimsOf = (accountId) => {
  const a = accounts[accountId] ?? {};
  return {
    sub: accountId,
    name: accountId,
    preferred_username: accountId,
    email: a.email ?? `${accountId}@example.test`,
    email_verified: a.email_verified ?? true,
    groups: a.groups,
    department: a.department,
  };
};

// loginResult is what the login form gives accountId: the MFA acr only to
// an account that has it and only when the request asks for it.
function loginResult(accountId, params) {
  const asked = (params.acr_values ?? '').split(' ').filter(Boolean);
  const strong = asked.includes(ACR_MFA) && accounts[accountId]?.mfa === true;
  return {
    accountId,
    acr: strong ? ACR_MFA : ACR_PASSWORD,
    amr: strong ? ['pwd', 'otp'] : ['pwd'],
  };
}

// interactions: the default policy, and a login prompt when the current
// login's acr is none of the acr_values asked for (oidc-provider treats
// acr_values as voluntary and would not ask otherwise). Once the login form
// has been submitted the request goes on with whatever acr it gave.
function interactions() {
  const policy = interactionPolicy.base();
  policy.get('login').checks.add(new interactionPolicy.Check(
    'acr_step_up',
    'the current login does not meet the requested acr_values',
    (ctx) => {
      const asked = (ctx.oidc.params.acr_values ?? '').split(' ').filter(Boolean);
      if (asked.length === 0 || ctx.oidc.result?.login || asked.includes(ctx.oidc.acr)) {
        return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      }
      return interactionPolicy.Check.REQUEST_PROMPT;
    },
  ));
  return { policy };
}

// MapAdapter is a storage adapter (--unbounded-store) that keeps every
// object until it expires: oidc-provider's own memory adapter is an LRU of
// 1000 objects, and a storm of hundreds of sessions would evict grants and
// refresh tokens still in use.
const mapStore = new Map();
class MapAdapter {
  constructor(name) { this.name = name; }

  key(id) { return `${this.name}:${id}`; }

  get(key) {
    const e = mapStore.get(key);
    if (!e) return undefined;
    if (e.expiresAt && e.expiresAt <= Date.now()) {
      mapStore.delete(key);
      return undefined;
    }
    return e.value;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : 0;
    mapStore.set(this.key(id), { value: payload, expiresAt });
    if (payload.grantId) {
      const g = `grant:${payload.grantId}`;
      if (!mapStore.has(g)) mapStore.set(g, { value: new Set(), expiresAt: 0 });
      mapStore.get(g).value.add(this.key(id));
    }
    if (payload.uid) mapStore.set(`uid:${this.name}:${payload.uid}`, { value: id, expiresAt });
    if (payload.userCode) mapStore.set(`userCode:${payload.userCode}`, { value: id, expiresAt });
  }

  async find(id) { return this.get(this.key(id)); }

  async findByUid(uid) {
    const id = this.get(`uid:${this.name}:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = this.get(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = this.get(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { mapStore.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    const g = mapStore.get(`grant:${grantId}`);
    if (!g) return;
    for (const key of g.value) mapStore.delete(key);
    mapStore.delete(`grant:${grantId}`);
  }
}

function configuration() {
  const grantTypes = ['authorization_code', 'refresh_token'];
  if (settings.clientCredentials) grantTypes.push('client_credentials');
  if (settings.tokenExchange) grantTypes.push(tokenExchangeGrant);
  const client = {
    client_id: settings.clientId,
    client_secret: settings.clientSecret,
    // client_secret_post is accepted too: oidc-provider lets a client that
    // has a secret authenticate with either of the two secret methods.
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: grantTypes,
    response_types: ['code'],
    redirect_uris: settings.redirectUris,
    post_logout_redirect_uris: settings.postLogoutRedirectUris,
  };
  if (settings.backchannelLogoutUri) {
    client.backchannel_logout_uri = settings.backchannelLogoutUri;
    client.backchannel_logout_session_required = true;
  }
  const clients = [client];
  if (settings.pkjwtClientId) {
    // The same client, but proving itself with signed assertions (RFC 7523)
    // of the key whose public half is in the JWKS file.
    const { client_secret: _secret, ...rest } = client;
    clients.push({
      ...rest,
      client_id: settings.pkjwtClientId,
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: JSON.parse(readFileSync(settings.pkjwtJwks, 'utf8')),
    });
  }

  return {
    clients,
    adapter: settings.unboundedStore ? MapAdapter : undefined,
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
      // acr, amr and auth_time with every ID token, as most providers do.
      openid: ['sub', 'acr', 'amr', 'auth_time'],
      profile: ['name', 'preferred_username', 'groups', 'department'],
      email: ['email', 'email_verified'],
    },
    acrValues: [ACR_PASSWORD, ACR_MFA],
    interactions: interactions(),
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
      clientCredentials: { enabled: settings.clientCredentials },
      dPoP: settings.dpopNonce
        ? { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true }
        : { enabled: true },
      pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: settings.requirePAR },
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
      // With --resources, a login may ask for several resources; a token
      // request names one, or gets --resource's.
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => {
          if (!oneOf) return settings.resource;
          if (!Array.isArray(oneOf)) return oneOf;
          return oneOf.includes(settings.resource) ? settings.resource : oneOf[0];
        },
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => resourceServerInfo(resource),
      },
    },
  };
}

// resourceServerInfo describes a resource server this OP issues JWT access
// tokens for, or refuses one it does not know.
function resourceServerInfo(resource) {
  if (!settings.resources.includes(resource)) {
    throw new Provider.errors.InvalidTarget();
  }
  return {
    scope: 'api:read',
    audience: resource,
    accessTokenTTL: settings.accessTTL,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
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
    case 'client_credentials': stats.client_credentials += 1; break;
    case tokenExchangeGrant: stats.token_exchange += 1; break;
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

if (settings.tokenExchange) {
  provider.registerGrantType(tokenExchangeGrant, exchangeToken, [
    'subject_token', 'subject_token_type', 'requested_token_type', 'resource', 'scope',
  ]);
}

// The OP's own public keys, to verify the access tokens it issued.
const ownKeys = createLocalJWKSet({
  keys: [{ ...createPublicKey({ key: signingKey, format: 'jwk' }).export({ format: 'jwk' }), kid: signingKey.kid, alg: 'RS256' }],
});

// exchangeToken is RFC 8693 token exchange, for tests: an access token this
// OP issued to the same client (the subject) is traded for one of the
// requested resource, for the same user, bound to the request's DPoP key
// when it is proved.
async function exchangeToken(ctx) {
  const { params, client } = ctx.oidc;
  if (params.subject_token_type !== accessTokenType) {
    throw new Provider.errors.InvalidRequest(`subject_token_type must be ${accessTokenType}`);
  }
  if (params.requested_token_type && params.requested_token_type !== accessTokenType) {
    throw new Provider.errors.InvalidRequest(`requested_token_type must be ${accessTokenType}`);
  }
  let subject;
  try {
    ({ payload: subject } = await jwtVerify(params.subject_token, ownKeys, { issuer, typ: 'at+jwt' }));
  } catch (err) {
    throw new Provider.errors.InvalidGrant(`subject_token is not a valid access token of this OP: ${err.message}`);
  }
  if (subject.client_id !== client.clientId) {
    throw new Provider.errors.InvalidGrant('subject_token was issued to another client');
  }
  const resource = params.resource ?? settings.resource;
  const info = resourceServerInfo(resource);
  const dPoP = await validateDpop(provider, ctx);
  const at = new provider.AccessToken({
    accountId: subject.sub,
    client,
    gty: tokenExchangeGrant,
    scope: info.scope,
  });
  at.resourceServer = new provider.ResourceServer(resource, info);
  if (dPoP) {
    await checkDpopReplay(provider, ctx, dPoP, client.clientId);
    at.setThumbprint('jkt', dPoP.thumbprint);
  }
  const value = await at.save();
  ctx.body = {
    access_token: value,
    issued_token_type: accessTokenType,
    token_type: at.tokenType,
    expires_in: at.expiration,
    scope: at.scope,
  };
}

// The traceparent of recent token endpoint requests, for GET /__traceparents.
const traceparents = [];

// Count the endpoints that emit no success event of their own.
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/token') {
    traceparents.push(ctx.get('traceparent') || null);
    if (traceparents.length > 100) traceparents.shift();
  }
  if (tokenDelayMs > 0 && ctx.method === 'POST' && ctx.path === '/token') {
    await new Promise((resolve) => { setTimeout(resolve, tokenDelayMs); });
  }
  if (ctx.method === 'GET' && ctx.path === '/auth') {
    if (ctx.query.request_uri) stats.auth_pushed += 1; else stats.auth_plain += 1;
  }
  await next();
  if (ctx.path === '/token' && ctx.status >= 400) {
    const code = ctx.body?.error ?? String(ctx.status);
    stats.token_errors[code] = (stats.token_errors[code] ?? 0) + 1;
  }
  if (ctx.path === '/request' && ctx.status === 201) stats.par += 1;
  if (ctx.status !== 200) return;
  if (ctx.oidc?.route === 'revocation') stats.revocations += 1;
  if (ctx.oidc?.route === 'introspection') stats.introspections += 1;
});

// submitLogin answers the login form's POST itself, to give the login its
// acr and amr (the built-in development form gives none). Other prompts
// (consent) go to oidc-provider's own handler; it reports whether it
// answered.
async function submitLogin(req, res) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch {
    return false; // oidc-provider's handler renders the error
  }
  if (details.prompt.name !== 'login') return false;
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const form = new URLSearchParams(Buffer.concat(chunks).toString());
  const accountId = form.get('login');
  if (!accountId) {
    res.writeHead(400);
    res.end('login required');
    return true;
  }
  await provider.interactionFinished(req, res, { login: loginResult(accountId, details.params) }, { mergeWithLastSubmission: false });
  return true;
}

const providerHandler = provider.callback();
server.on('request', (req, res) => {
  const path = req.url.split('?')[0];
  if (req.method === 'POST' && /^\/interaction\/[^/]+$/.test(path)) {
    submitLogin(req, res).then((answered) => {
      if (!answered) providerHandler(req, res);
    }, (err) => {
      console.log(`op: login form failed: ${err?.stack ?? err}`);
      res.writeHead(500);
      res.end();
    });
    return;
  }
  if (path === '/__stats' && req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(stats));
    return;
  }
  if (path === '/__traceparents' && req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(traceparents));
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

if (settings.resources.length > 1 || settings.clientCredentials || settings.tokenExchange || settings.pkjwtClientId
  || settings.dpopNonce || settings.requirePAR || settings.unboundedStore) {
  console.log(`op: test features: resources ${settings.resources.join(' ')}; client_credentials ${settings.clientCredentials}; token exchange ${settings.tokenExchange}; private_key_jwt client ${settings.pkjwtClientId || 'none'}; DPoP nonce ${settings.dpopNonce}; PAR required ${settings.requirePAR}; unbounded store ${settings.unboundedStore}`);
}
console.log(`op: client ${settings.clientId}, redirect URIs ${settings.redirectUris.join(' ')}, access tokens ${settings.accessTTL}s for ${settings.resource}`);
console.log(`OP ready on ${issuer}`);
