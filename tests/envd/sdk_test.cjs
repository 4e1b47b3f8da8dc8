// Drives envd with the official E2B JS SDK in debug mode (it talks straight to
// localhost:49983). Usage: node sdk_test.cjs NODE_MODULES_DIR WORKDIR
// Prints PASS/FAIL lines (tests/shell/lib.sh format); exit status 1 when anything failed.
'use strict';
const path = require('path');
const { createRequire } = require('module');
const req = createRequire(path.join(process.argv[2], 'noop.js'));
const { Sandbox, CommandExitError } = req('e2b');
const dir = process.argv[3];
let failed = 0;
function pass(n) { console.log(`PASS sdk_${n}`); }
function fail(n, why) { console.log(`FAIL sdk_${n}: ${why}`); failed = 1; }
async function t(name, fn) {
  try {
    const r = await fn();
    if (r === true) pass(name); else fail(name, `got ${JSON.stringify(r)}`);
  } catch (e) {
    fail(name, `${e && e.constructor && e.constructor.name}: ${e && e.message}`);
  }
}

(async () => {
  const sbx = await Sandbox.create({ debug: true });
  await t('run_stdout_stderr', async () => {
    const r = await sbx.commands.run('echo out; echo err >&2');
    return r.exitCode === 0 && r.stdout === 'out\n' && r.stderr === 'err\n' || r;
  });
  await t('run_exit_code', async () => {
    try { await sbx.commands.run('echo before; exit 3'); return 'no error'; }
    catch (e) { return (e instanceof CommandExitError && e.exitCode === 3 && e.stdout === 'before\n') || String(e); }
  });
  await t('run_envs', async () => {
    const r = await sbx.commands.run('echo "$FOO-$USER"', { envs: { FOO: 'bar' } });
    return r.stdout === 'bar-root\n' || r.stdout;
  });
  await t('run_cwd', async () => {
    const r = await sbx.commands.run('pwd', { cwd: dir });
    return r.stdout === dir + '\n' || r.stdout;
  });
  await t('run_callbacks', async () => {
    let seen = '';
    await sbx.commands.run('for i in 1 2 3; do echo $i; done', { onStdout: (d) => { seen += d; } });
    return seen === '1\n2\n3\n' || seen;
  });
  await t('run_stdin', async () => {
    const h = await sbx.commands.run('head -n1', { background: true, stdin: true });
    await sbx.commands.sendStdin(h.pid, 'typed\n');
    const r = await h.wait();
    return r.stdout === 'typed\n' || r.stdout;
  });
  await t('run_close_stdin', async () => {
    const h = await sbx.commands.run('cat; echo end', { background: true, stdin: true });
    await sbx.commands.sendStdin(h.pid, 'abc');
    await sbx.commands.closeStdin(h.pid);
    const r = await h.wait();
    return r.stdout === 'abcend\n' || r.stdout;
  });
  await t('commands_connect', async () => {
    const h = await sbx.commands.run('sleep 0.5; echo later', { background: true });
    const again = await sbx.commands.connect(h.pid);
    const r = await again.wait();
    await h.wait().catch(() => {});
    return r.stdout === 'later\n' || r.stdout;
  });
  await t('background_list_kill', async () => {
    const h = await sbx.commands.run('sleep 30', { background: true });
    const list = await sbx.commands.list();
    const listed = list.some((p) => p.pid === h.pid);
    const killed = await h.kill();
    let code = null;
    try { await h.wait(); code = 0; } catch (e) { code = e.exitCode; }
    const after = (await sbx.commands.list()).some((p) => p.pid === h.pid);
    return (listed && killed && code === -1 && !after) || { listed, killed, code, after };
  });
  await t('kill_unknown_pid', async () => (await sbx.commands.kill(999999)) === false);
  const f = path.join(dir, 'sdk', 'sub', 'hello.txt');
  await t('files_write_read', async () => {
    const info = await sbx.files.write(f, 'hello from sdk');
    const back = await sbx.files.read(f);
    return (info.path === f && info.name === 'hello.txt' && back === 'hello from sdk') || { info, back };
  });
  await t('files_write_bytes', async () => {
    const data = new Uint8Array(300000).map((_, i) => (i * 7) & 255);
    await sbx.files.write(f + '.bin', data.buffer);
    const back = await sbx.files.read(f + '.bin', { format: 'bytes' });
    return (back.length === data.length && back.every((b, i) => b === data[i])) || back.length;
  });
  await t('files_write_read_gzip', async () => {
    const g = path.join(dir, 'sdk', 'gz.txt');
    await sbx.files.write(g, 'zipped '.repeat(1000), { gzip: true });
    const back = await sbx.files.read(g, { gzip: true });
    return back === 'zipped '.repeat(1000) || back.length;
  });
  await t('files_write_multi', async () => {
    const r = await sbx.files.write([{ path: path.join(dir, 'sdk', 'm1'), data: 'a' }, { path: path.join(dir, 'sdk', 'm2'), data: 'b' }]);
    return (r.length === 2 && (await sbx.files.read(path.join(dir, 'sdk', 'm2'))) === 'b') || r;
  });
  await t('files_list', async () => {
    const l = await sbx.files.list(path.join(dir, 'sdk', 'sub'));
    const e = l.find((x) => x.name === 'hello.txt');
    return (e && e.type === 'file' && e.size === 14 && e.path === f) || l;
  });
  await t('files_exists', async () => (await sbx.files.exists(f)) === true && (await sbx.files.exists(f + '.nope')) === false);
  await t('files_get_info', async () => {
    const i = await sbx.files.getInfo(path.join(dir, 'sdk'));
    return (i.type === 'dir' && i.name === 'sdk') || i;
  });
  await t('files_make_dir', async () => {
    const d = path.join(dir, 'sdk', 'newdir', 'deep');
    const a = await sbx.files.makeDir(d);
    const b = await sbx.files.makeDir(d);
    return (a === true && b === false) || { a, b };
  });
  await t('files_rename', async () => {
    const to = path.join(dir, 'sdk', 'renamed', 'hello2.txt');
    const i = await sbx.files.rename(f, to);
    return (i.path === to && (await sbx.files.read(to)) === 'hello from sdk' && !(await sbx.files.exists(f))) || i;
  });
  await t('files_remove', async () => {
    await sbx.files.remove(path.join(dir, 'sdk', 'renamed'));
    return (await sbx.files.exists(path.join(dir, 'sdk', 'renamed'))) === false;
  });
  await t('files_read_missing', async () => {
    try { await sbx.files.read(path.join(dir, 'nope')); return 'no error'; }
    catch (e) { return /NotFound/.test(e.constructor.name) || `${e.constructor.name}: ${e.message}`; }
  });
  await t('pty_interactive', async () => {
    let seen = '';
    const dec = new TextDecoder();
    const h = await sbx.pty.create({ cols: 80, rows: 24, cwd: dir, onData: (d) => { seen += dec.decode(d); } });
    await sbx.pty.resize(h.pid, { cols: 100, rows: 30 });
    await sbx.pty.sendInput(h.pid, new TextEncoder().encode('stty size; echo pty-$((6*7))\nexit\n'));
    const r = await h.wait().catch((e) => e);
    return (seen.includes('pty-42') && seen.includes('30 100') && r.exitCode === 0) || { seen, code: r.exitCode };
  });
  await t('watch_dir', async () => {
    const wdir = path.join(dir, 'watched');
    await sbx.files.makeDir(wdir);
    const events = [];
    const h = await sbx.files.watchDir(wdir, (ev) => events.push(ev), { recursive: true });
    await sbx.files.write(path.join(wdir, 'w.txt'), 'x');
    await sbx.files.makeDir(path.join(wdir, 'sub'));
    await new Promise((r) => setTimeout(r, 200));
    await sbx.files.write(path.join(wdir, 'sub', 'deep.txt'), 'y');
    await sbx.files.remove(path.join(wdir, 'w.txt'));
    for (let i = 0; i < 40 && !events.some((e) => e.name === 'w.txt' && e.type === 'remove'); i++)
      await new Promise((r) => setTimeout(r, 50));
    await h.stop();
    const has = (n, t) => events.some((e) => e.name === n && e.type === t);
    return (has('w.txt', 'create') && has('w.txt', 'write') && has('sub', 'create') &&
            has('sub/deep.txt', 'create') && has('w.txt', 'remove')) || events;
  });
  await t('is_running', async () => (await sbx.isRunning()) === true);
  process.exit(failed);
})().catch((e) => { console.log(`FAIL sdk: ${e && e.stack}`); process.exit(1); });
