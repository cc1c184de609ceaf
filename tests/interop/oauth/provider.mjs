// The test authorization server of tests/interop/oauth/run.sh: oidc-provider (OpenID
// Certified) on loopback with dynamic client registration, PKCE (S256, required),
// resource indicators (RFC 8707) issuing JWT access tokens for the gateway's resource,
// client credentials and introspection. Its interaction (login, consent) is answered at
// once for the account `alice`, so a client can run the whole authorization code flow
// headless by following redirects.
//
//   node provider.mjs PORT RESOURCE KEYS_JSON
//
// RESOURCE is the gateway's canonical URL; tokens may also be asked for OTHER_RESOURCE
// (a token for another audience). KEYS_JSON is a file holding {"keys": [private JWKs]}: the
// first signs, all are published (rotation = restart with a new first key). Static clients:
// `checks`, `short` and `long` (client credentials: 300 s, 2 s and 1 h tokens), `gateway`
// (introspection).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import Provider, { errors } from 'oidc-provider';

const [port, resource, keysFile] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const OTHER_RESOURCE = 'https://other.example/mcp';
const RESOURCE_SCOPES = 'mcp who:use profile';
const jwks = JSON.parse(readFileSync(keysFile, 'utf8'));

const provider = new Provider(issuer, {
  jwks,
  clients: [
    { client_id: 'checks', client_secret: 'checks-secret', grant_types: ['client_credentials'],
      redirect_uris: [], response_types: [], scope: RESOURCE_SCOPES },
    { client_id: 'short', client_secret: 'short-secret', grant_types: ['client_credentials'],
      redirect_uris: [], response_types: [], scope: RESOURCE_SCOPES },
    { client_id: 'long', client_secret: 'long-secret', grant_types: ['client_credentials'],
      redirect_uris: [], response_types: [], scope: RESOURCE_SCOPES },
    { client_id: 'gateway', client_secret: 'gateway-secret', grant_types: [],
      redirect_uris: [], response_types: [] },
  ],
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator, client) => {
        if (indicator !== resource && indicator !== OTHER_RESOURCE) throw new errors.InvalidTarget();
        return {
          scope: RESOURCE_SCOPES,
          audience: indicator,
          accessTokenTTL: { short: 2, long: 3600 }[client.clientId] ?? 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', ...RESOURCE_SCOPES.split(' ')],
  claims: { openid: ['sub'], email: ['email'] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.com` }),
  }),
  extraTokenClaims: async (ctx, token) => (token.accountId ? { email: `${token.accountId}@example.com` } : undefined),
  ttl: { AccessToken: 300, AuthorizationCode: 60, Grant: 3600, Interaction: 300, Session: 3600 },
});
provider.proxy = false;

// The interaction: log `alice` in and grant whatever the client asked for.
async function interact(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: 'alice' } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interact(req, res).catch((e) => {
      res.statusCode = 500;
      res.end(`interaction failed: ${e}`);
    });
    return;
  }
  callback(req, res);
}).listen(Number(port), '127.0.0.1', () => console.log(`oidc-provider ${issuer} for ${resource}`));
