// A partner's client for the coalition partner API in Node.js (>= 18), using only public packages.
//
// Enrols a member, earns bonus points, redeems some of them and reads the balance. Every request
// is signed with RFC 9421 HTTP Message Signatures by the npm package `http-message-signatures`,
// with an Ed25519 key held by node:crypto; Content-Digest (RFC 9530) is computed here.
//
//   npm install
//   node partner.mjs http://127.0.0.1:8790 cafe-1 ../../keys/cafe-1.private.pem
//
// The partner needs the earn and redeem roles and a bonus cap of at least 100 points.

import { createHash, createPrivateKey, randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { httpbis } from 'http-message-signatures';

// What the server requires to be signed; POST also covers the body's digest, type and key.
const COMPONENTS = ['@method', '@authority', '@path', '@query'];
const POST_COMPONENTS = [...COMPONENTS, 'content-digest', 'content-type', 'idempotency-key'];

// RFC 9530: sha-256 of the exact body bytes, as a structured-field byte sequence.
export function contentDigest(body) {
  return `sha-256=:${createHash('sha256').update(body).digest('base64')}:`;
}

export class Partner {
  constructor(baseUrl, keyid, privateKeyPem) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    const privateKey = createPrivateKey(privateKeyPem); // PKCS#8 PEM of an Ed25519 key
    if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error('need an Ed25519 key');
    // The library calls key.sign(signatureBase) and puts id and alg into the parameters.
    this.key = { id: keyid, alg: 'ed25519', sign: async (data) => sign(null, data, privateKey) };
  }

  async request(method, path, body, { idempotencyKey } = {}) {
    const headers = {};
    let raw;
    if (method === 'POST') {
      // The exact bytes sent are the bytes digested: serialise once, send this string.
      raw = JSON.stringify(body ?? {});
      headers['content-type'] = 'application/json';
      headers['content-digest'] = contentDigest(Buffer.from(raw, 'utf8'));
      // One key per business operation; reuse it (and the same body) when retrying.
      headers['idempotency-key'] = idempotencyKey ?? `pos-${randomBytes(12).toString('hex')}`;
    }
    const now = new Date();
    const signed = await httpbis.signMessage(
      {
        key: this.key,
        name: 'sig1',
        fields: method === 'POST' ? POST_COMPONENTS : COMPONENTS,
        params: ['created', 'keyid', 'nonce', 'alg', 'expires'],
        paramValues: {
          created: now,
          expires: new Date(now.getTime() + 60_000),
          nonce: randomBytes(16).toString('hex'), // a fresh nonce on every request
        },
      },
      { method, url: this.baseUrl + path, headers },
    );
    const response = await fetch(this.baseUrl + path, {
      method,
      headers: signed.headers,
      body: raw,
      signal: AbortSignal.timeout(10_000),
    });
    const replayed = response.headers.get('idempotent-replayed') ? ' (replayed)' : '';
    const json = await response.json();
    console.log(`${method} ${path} -> ${response.status}${replayed}`);
    console.log(JSON.stringify(json, null, 2));
    if (!response.ok) throw new Error(`${method} ${path} failed: ${json.type}: ${json.detail}`);
    return json;
  }
}

async function main([baseUrl, keyid, pemPath]) {
  if (!pemPath) {
    console.error('usage: node partner.mjs BASE_URL KEYID PRIVATE_KEY_PEM');
    process.exit(2);
  }
  const partner = new Partner(baseUrl, keyid, readFileSync(pemPath));
  const order = randomBytes(4).toString('hex');

  const { member_id: memberId } = await partner.request('POST', '/v1/members', {
    partner_member_ref: `guest-${order}`,
  });

  const earn = { member_id: memberId, order_ref: `signup-${order}`, points: 100, reason: 'sign-up bonus' };
  const earnKey = `earn-${order}-signup`;
  await partner.request('POST', '/v1/earn', earn, { idempotencyKey: earnKey });
  // A retry with the same key and body (e.g. after a timeout) is answered from the first
  // result, with Idempotent-Replayed: true; no second earn is posted.
  await partner.request('POST', '/v1/earn', earn, { idempotencyKey: earnKey });

  await partner.request('POST', '/v1/redemptions', {
    member_id: memberId, order_ref: `order-${order}`, points: 40, mode: 'capture',
  });

  const balance = await partner.request('GET', `/v1/members/${encodeURIComponent(memberId)}`);
  if (balance.available_points !== 60) throw new Error(`expected 60 points, got ${balance.available_points}`);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((error) => {
    console.error(error.message);
    process.exit(1);
  });
}
