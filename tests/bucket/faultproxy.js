#!/usr/bin/env node
// faultproxy.js - an HTTP proxy for the bucket tests that sits in front of s3rver and
// misbehaves on purpose: answers a share of requests with 500 InternalError, delays others,
// drops some connections mid-request. One line per request goes to the log file:
// "<n> <METHOD> <url> <outcome>", so tests can count what the client sent.
// Usage: faultproxy.js UPSTREAM_PORT LOGFILE [fail=0.2] [drop=0] [delay_ms=0] [chunk_delay_ms=0]
//   delay_ms: each forwarded request waits uniform [0, delay_ms) first;
//   chunk_delay_ms: the response body is throttled, each chunk held that long.
// With SIGV4_SECRET set in the environment the proxy also verifies every request's AWS
// Signature Version 4 (s3rver checks only the access key id) and answers 403
// SignatureDoesNotMatch, logged as "sigv4-mismatch", when it does not verify.
// With HANG_RATE=p, a share p of requests is read and never answered (logged "hang").
// With GCS_HEADERS=1, x-amz-meta-crc32c in answers is replaced by GCS's own
// "x-goog-hash: crc32c=..." (and md5=...) headers.
// With LIST_MAX_KEYS=N, ListObjectsV2 requests are forwarded with max-keys=N added (after the
// signature check), so a few objects make the server paginate.
// Log line of a forwarded request: "<n> <METHOD> <url> <status> bytes=<content-length>
// port=<client port> range=<range>" (range stays last: tests read it as the last field).
// Prints "faultproxy listening on PORT" once ready. Headers (Host included) pass unchanged,
// so SigV4 signatures made for the proxy's address verify upstream.
'use strict';
const http = require('http');
const fs = require('fs');
const crypto = require('crypto');

const [upPort, logFile, failArg, dropArg, delayArg, chunkArg] = process.argv.slice(2);
const fail = Number(failArg || 0.2), drop = Number(dropArg || 0), delayMs = Number(delayArg || 0);
const chunkDelay = Number(chunkArg || 0);
const hang = Number(process.env.HANG_RATE || 0);
let n = 0;

function log(line) {
  fs.appendFileSync(logFile, line + '\n');
}

// SigV4 percent-encoding: everything but unreserved characters (and '/' in paths)
function sigEncode(str, keepSlash) {
  return Array.from(Buffer.from(str, 'utf8')).map((b) => {
    const ch = String.fromCharCode(b);
    if (/[A-Za-z0-9\-._~]/.test(ch) || (keepSlash && ch === '/')) return ch;
    return '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }).join('');
}

function hmac(key, data) {
  return crypto.createHmac('sha256', key).update(data, 'utf8').digest();
}

// Recompute the signature from scratch (decode what was sent, re-encode canonically) so that
// a client sending a non-canonical path or query fails here as it would on AWS.
function sigv4Verify(req, secret) {
  const auth = req.headers.authorization || '';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return 'malformed Authorization header';
  const [, , date, region, service, signedHeaders, signature] = m;
  const amzDate = req.headers['x-amz-date'];
  if (!amzDate || !amzDate.startsWith(date)) return 'bad x-amz-date';
  const names = signedHeaders.split(';');
  if (!names.includes('host') || !names.includes('x-amz-content-sha256')) return 'host or payload hash not signed';
  const qpos = req.url.indexOf('?');
  const rawPath = qpos < 0 ? req.url : req.url.slice(0, qpos);
  const rawQuery = qpos < 0 ? '' : req.url.slice(qpos + 1);
  const path = sigEncode(decodeURIComponent(rawPath), true);
  const query = rawQuery === '' ? '' : rawQuery.split('&').map((kv) => {
    const eq = kv.indexOf('=');
    const k = decodeURIComponent(eq < 0 ? kv : kv.slice(0, eq));
    const v = eq < 0 ? '' : decodeURIComponent(kv.slice(eq + 1).replace(/\+/g, '%2B'));
    return [sigEncode(k, false), sigEncode(v, false)];
  }).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`).join('&');
  const headers = names.map((h) => {
    const v = req.headers[h];
    if (v === undefined) return null;
    return `${h}:${String(v).trim().replace(/\s+/g, ' ')}\n`;
  });
  if (headers.includes(null)) return 'a signed header is missing: ' + names.filter((h) => req.headers[h] === undefined).join(',');
  const canonical = [req.method, path, query, headers.join(''), signedHeaders,
    req.headers['x-amz-content-sha256']].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope,
    crypto.createHash('sha256').update(canonical, 'utf8').digest('hex')].join('\n');
  const key = hmac(hmac(hmac(hmac('AWS4' + secret, date), region), service), 'aws4_request');
  const want = crypto.createHmac('sha256', key).update(toSign, 'utf8').digest('hex');
  return want === signature ? null : 'signature mismatch';
}

const sigSecret = process.env.SIGV4_SECRET || '';

const server = http.createServer((req, res) => {
  const id = ++n;
  if (sigSecret) {
    const why = sigv4Verify(req, sigSecret);
    if (why) {
      req.resume();
      req.on('end', () => {
        log(`${id} ${req.method} ${req.url} sigv4-mismatch ${why}`);
        const body = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code>' +
          `<Message>faultproxy: ${why}</Message></Error>`;
        res.writeHead(403, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
      });
      return;
    }
  }
  const r = Math.random();
  if (r < fail) {
    // drain the body first so the client sees a clean 500, as S3 would send it
    req.resume();
    req.on('end', () => {
      log(`${id} ${req.method} ${req.url} 500`);
      const body = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>' +
        '<Message>injected by faultproxy</Message></Error>';
      res.writeHead(500, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    });
    return;
  }
  if (r < fail + drop) {
    log(`${id} ${req.method} ${req.url} drop`);
    req.socket.destroy();
    return;
  }
  if (r < fail + drop + hang) {
    // take the request and never answer: the client's timeout has to notice
    log(`${id} ${req.method} ${req.url} hang`);
    req.resume();
    return;
  }
  const forward = () => {
    let path = req.url;
    if (process.env.LIST_MAX_KEYS && /[?&]list-type=2(&|$)/.test(path)) path += `&max-keys=${process.env.LIST_MAX_KEYS}`;
    const up = http.request({ host: '127.0.0.1', port: Number(upPort), method: req.method,
                              path, headers: req.headers }, (ur) => {
      log(`${id} ${req.method} ${req.url} ${ur.statusCode} bytes=${ur.headers['content-length'] || '-'} port=${req.socket.remotePort} range=${req.headers.range || '-'}`);
      const headers = { ...ur.headers };
      if (process.env.GCS_HEADERS && headers['x-amz-meta-crc32c']) {
        // answer the way GCS does: its own checksum headers, no x-amz-meta-*
        const v = headers['x-amz-meta-crc32c'];
        delete headers['x-amz-meta-crc32c'];
        headers['x-goog-hash'] = [`crc32c=${v}`, 'md5=1B2M2Y8AsgTpgAmY7PhCfg=='];
      }
      res.writeHead(ur.statusCode, headers);
      if (chunkDelay > 0) {
        ur.on('data', (chunk) => {
          ur.pause();
          res.write(chunk);
          setTimeout(() => ur.resume(), chunkDelay);
        });
        ur.on('end', () => res.end());
      } else {
        ur.pipe(res);
      }
    });
    up.on('error', (e) => {
      log(`${id} ${req.method} ${req.url} upstream-error ${e.code}`);
      req.socket.destroy();
    });
    req.pipe(up);
  };
  if (delayMs > 0) {
    req.pause();
    setTimeout(() => { req.resume(); forward(); }, Math.floor(Math.random() * delayMs));
  } else {
    forward();
  }
});
// one line per TCP connection in LOGFILE.conns, so tests can see connection reuse
server.on('connection', () => fs.appendFileSync(logFile + '.conns', 'connection\n'));
server.keepAliveTimeout = 30000;
server.listen(0, '127.0.0.1', () => {
  console.log(`faultproxy listening on ${server.address().port}`);
});
