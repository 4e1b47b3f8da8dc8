#!/usr/bin/env node
// faultproxy.js - an HTTP proxy for the bucket tests that sits in front of s3rver and
// misbehaves on purpose: answers a share of requests with 500 InternalError, delays others,
// drops some connections mid-request. One line per request goes to the log file:
// "<n> <METHOD> <url> <outcome>", so tests can count what the client sent.
// Usage: faultproxy.js UPSTREAM_PORT LOGFILE [fail=0.2] [drop=0] [delay_ms=0] [chunk_delay_ms=0]
//   delay_ms: each forwarded request waits uniform [0, delay_ms) first;
//   chunk_delay_ms: the response body is throttled, each chunk held that long.
// Log line of a forwarded request: "<n> <METHOD> <url> <status> bytes=<content-length> range=<range>".
// Prints "faultproxy listening on PORT" once ready. Headers (Host included) pass unchanged,
// so SigV4 signatures made for the proxy's address verify upstream.
'use strict';
const http = require('http');
const fs = require('fs');

const [upPort, logFile, failArg, dropArg, delayArg, chunkArg] = process.argv.slice(2);
const fail = Number(failArg || 0.2), drop = Number(dropArg || 0), delayMs = Number(delayArg || 0);
const chunkDelay = Number(chunkArg || 0);
let n = 0;

function log(line) {
  fs.appendFileSync(logFile, line + '\n');
}

const server = http.createServer((req, res) => {
  const id = ++n;
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
  const forward = () => {
    const up = http.request({ host: '127.0.0.1', port: Number(upPort), method: req.method,
                              path: req.url, headers: req.headers }, (ur) => {
      log(`${id} ${req.method} ${req.url} ${ur.statusCode} bytes=${ur.headers['content-length'] || '-'} range=${req.headers.range || '-'}`);
      res.writeHead(ur.statusCode, ur.headers);
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
server.keepAliveTimeout = 30000;
server.listen(0, '127.0.0.1', () => {
  console.log(`faultproxy listening on ${server.address().port}`);
});
