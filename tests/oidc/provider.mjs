// A real OpenID Connect provider for boxcut's browser tests: panva's oidc-provider (the version pinned in
// package.json), on loopback, over plain HTTP, with everything in memory. tests/browser.py starts it; run it by hand
// with
//
//   OIDC_REDIRECT_URIS=http://127.0.0.1:8000/console/callback node tests/oidc/provider.mjs 9000
//
// Port: argv[2], else $OIDC_PORT, else 0 (the OS picks a free one: no race between choosing a port and binding it).
// The issuer is `http://127.0.0.1:<port>`; once it listens it prints one line, `ready http://127.0.0.1:<port>`
// (the issuer), on stdout. SIGTERM or SIGINT stops it.
//
// One confidential client, from the environment:
//   OIDC_CLIENT_ID                  default "boxcut-console"
//   OIDC_CLIENT_SECRET              default "boxcut-console-secret"
//   OIDC_REDIRECT_URIS              required: the redirect URIs, separated by spaces or commas
//   OIDC_POST_LOGOUT_REDIRECT_URIS  optional: for RP-initiated logout (end_session_endpoint)
//   OIDC_TOKEN_AUTH_METHOD          default "client_secret_basic" (or "client_secret_post")
// Response type `code` only, PKCE required (S256, the only method oidc-provider 9 offers), scopes
// `openid profile email groups`. Claims: profile = name, preferred_username, groups; email = email, email_verified;
// groups = groups (a scope of its own too, for clients that ask for it by name). `conformIdTokenClaims: false`
// puts the claims of the granted scopes in the ID token itself (by default oidc-provider, following Core 1.0
// section 5.4, returns them only from the userinfo endpoint when an access token is issued, as in the code flow).
//
// Accounts (in memory; `sub` is the login name):
//   alice   name "Alice Approver", email alice@example.test, groups ["boxcut-approvers"]
//   victor  name "Victor Viewer",  email victor@example.test, groups ["boxcut-viewers"]
//
// Sign-in: NOT oidc-provider's devInteractions but a minimal page of this file's own, with no password and no
// consent screen:
//   GET  /interaction/<uid>         a form: <input id="login" name="login"> and <button type="submit" id="sign-in">
//                                   ("Sign in"), plus <button id="cancel"> (aborts: the client gets
//                                   error=access_denied)
//   POST /interaction/<uid>/login   a known login name finishes the login; an unknown one shows the form again with
//                                   <p id="error" role="alert">unknown user: NAME</p> (status 401)
// Consent is granted at once (loadExistingGrant below: the client is first-party), so after "Sign in" the browser
// goes straight back to the redirect URI with ?code=...&state=...&iss=...
// With Playwright: page.fill("#login", "alice"); page.click("#sign-in").
//
// No page here loads anything from outside loopback (oidc-provider's default error and logout pages import a web
// font; they are replaced below).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import { Provider } from 'oidc-provider';

const ACCOUNTS = {
  alice: {
    name: 'Alice Approver',
    preferred_username: 'alice',
    email: 'alice@example.test',
    email_verified: true,
    groups: ['boxcut-approvers'],
  },
  victor: {
    name: 'Victor Viewer',
    preferred_username: 'victor',
    email: 'victor@example.test',
    email_verified: true,
    groups: ['boxcut-viewers'],
  },
};

function list(value) {
  return (value || '').split(/[\s,]+/).filter(Boolean);
}

const port = Number(process.argv[2] ?? process.env.OIDC_PORT ?? 0);
const redirectUris = list(process.env.OIDC_REDIRECT_URIS);
if (redirectUris.length === 0) {
  console.error('provider.mjs: set OIDC_REDIRECT_URIS (the client\'s redirect URIs, space- or comma-separated)');
  process.exit(2);
}
const client = {
  client_id: process.env.OIDC_CLIENT_ID || 'boxcut-console',
  client_secret: process.env.OIDC_CLIENT_SECRET || 'boxcut-console-secret',
  redirect_uris: redirectUris,
  post_logout_redirect_uris: list(process.env.OIDC_POST_LOGOUT_REDIRECT_URIS),
  response_types: ['code'],
  grant_types: ['authorization_code'],
  token_endpoint_auth_method: process.env.OIDC_TOKEN_AUTH_METHOD || 'client_secret_basic',
};

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body{font-family:sans-serif;max-width:26em;margin:3em auto}input,button{font-size:1em;margin:.3em 0}
#error{color:#b00}</style></head>
<body><h1>${escape(title)}</h1>${body}</body></html>`;
}

function loginForm(uid, clientId, error = '', login = '') {
  return page('Sign in to the test provider', `
<p>Client: <code>${escape(clientId)}</code>. Accounts: <code>alice</code>, <code>victor</code> (no password).</p>
${error ? `<p id="error" role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
  <label for="login">Login name</label><br>
  <input id="login" name="login" type="text" required autofocus value="${escape(login)}"><br>
  <button id="sign-in" type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${escape(uid)}/abort">
  <button id="cancel" type="submit">Cancel</button>
</form>`);
}

// An RSA signing key of this run's own (ID tokens are RS256), rather than oidc-provider's development keystore.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `test-${randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256' };

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [client],
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    responseTypes: ['code'],
    pkce: { required: () => true },
    scopes: ['openid', 'profile', 'email', 'groups'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username', 'groups'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.body = page('Sign out of the test provider', `${form}
<button id="sign-out" type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button id="stay" type="submit" form="op.logoutForm">No, stay signed in</button>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('Signed out', '<p id="signed-out">You are signed out of the test provider.</p>');
        },
      },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, sub) {
      const account = ACCOUNTS[sub];
      if (!account) return undefined;
      return { accountId: sub, async claims() { return { sub, ...account }; } };
    },
    // Consent without a screen: the one client is first-party; every scope and claim it asks for is granted.
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
      const grant = (grantId && await oidc.provider.Grant.find(grantId))
        || new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
      grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
      grant.addOIDCClaims([...oidc.requestParamClaims]);
      await grant.save();
      return grant;
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', `<pre id="oidc-error">${escape(JSON.stringify(out, null, 2))}</pre>`);
    },
    ttl: {
      AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, Interaction: 3600, Session: 86400, Grant: 86400,
    },
    clientBasedCORS: () => false,
  });

  const callback = provider.callback();

  async function form(req) {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
  }

  function html(res, status, body) {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(body);
  }

  async function interaction(req, res, uid, action) {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) throw new Error('interaction mismatch');
    const clientId = details.params.client_id;
    if (req.method === 'GET' && !action) {
      // Only the login prompt reaches here: consent is granted by loadExistingGrant.
      return html(res, 200, loginForm(uid, clientId, '', details.params.login_hint || ''));
    }
    if (req.method === 'POST' && action === 'login') {
      const login = ((await form(req)).get('login') || '').trim();
      if (!ACCOUNTS[login]) return html(res, 401, loginForm(uid, clientId, `unknown user: ${login}`, login));
      return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    }
    if (req.method === 'POST' && action === 'abort') {
      return provider.interactionFinished(req, res, {
        error: 'access_denied', error_description: 'the user cancelled the sign-in',
      }, { mergeWithLastSubmission: false });
    }
    return html(res, 405, page('Method not allowed', ''));
  }

  server.on('request', (req, res) => {
    const match = /^\/interaction\/([\w-]+)(?:\/(login|abort))?\/?(?:\?.*)?$/.exec(req.url);
    if (!match) return callback(req, res);
    return interaction(req, res, match[1], match[2]).catch((error) => {
      console.error(`interaction: ${error}`);
      if (!res.headersSent) html(res, 400, page('Sign-in failed', `<p id="error" role="alert">${escape(error.message)}</p>`));
    });
  });

  console.log(`ready ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
