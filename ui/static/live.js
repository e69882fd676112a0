// OMERTAOS console: the live parts. Everything comes from omertad's event
// stream (GET /api/v1/events, server-sent events) and the agents' log
// streams, forwarded by the console with the session's cookie. Text from
// the streams is put in the page with textContent only, never as markup.
(function () {
  'use strict';

  var body = document.body;
  var mode = body.dataset.live;
  var liveID = body.dataset.liveId || '';
  var statusEl = document.getElementById('live-status');

  function say(text) { if (statusEl) statusEl.textContent = text; }

  function stateClass(s) {
    switch (String(s).toLowerCase()) {
      case 'running': case 'succeeded': return 'good';
      case 'pending': case 'backoff': case 'deleting': return 'warn';
      case 'crash-loop': case 'failed': case 'timed_out': case 'unknown': return 'bad';
    }
    return 'neutral';
  }

  function setBadge(el, state) {
    if (!el) return;
    el.textContent = state;
    el.dataset.state = state;
    el.className = 'badge ' + stateClass(state);
  }

  function fmtBytes(n) {
    var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n.toFixed(0)) + ' ' + u[i];
  }

  // --- charts: a polyline per series in an SVG of viewBox 600x160 ---------
  var SVGNS = 'http://www.w3.org/2000/svg';
  var POINTS = 120;

  // The scale's top is told in HTML (the caption), not inside the SVG,
  // which is stretched to its box.
  function Chart(id, fmt) {
    this.svg = document.getElementById(id);
    this.fmt = fmt;
    this.values = [];
    this.label = document.getElementById(id + '-max');
    if (!this.svg) return;
    this.line = document.createElementNS(SVGNS, 'polyline');
    this.line.setAttribute('class', 'series');
    var base = document.createElementNS(SVGNS, 'line');
    base.setAttribute('x1', '0'); base.setAttribute('x2', '600');
    base.setAttribute('y1', '159'); base.setAttribute('y2', '159');
    base.setAttribute('class', 'grid');
    this.svg.appendChild(base);
    this.svg.appendChild(this.line);
  }

  Chart.prototype.push = function (v) {
    if (!this.svg) return;
    this.values.push(v);
    if (this.values.length > POINTS) this.values.shift();
    var max = 0;
    this.values.forEach(function (x) { if (x > max) max = x; });
    if (max <= 0) max = 1;
    var step = 600 / (POINTS - 1), off = POINTS - this.values.length;
    var pts = this.values.map(function (x, i) {
      return ((off + i) * step).toFixed(1) + ',' + (158 - (x / max) * 140).toFixed(1);
    });
    this.line.setAttribute('points', pts.join(' '));
    if (this.label) this.label.textContent = 'top of the scale ' + this.fmt(max);
  };

  var cpu = new Chart('chart-cpu', function (v) { return v.toFixed(1) + ' %'; });
  var mem = new Chart('chart-mem', fmtBytes);
  var cpuNow = document.getElementById('cpu-now');
  var memNow = document.getElementById('mem-now');

  // The dashboard sums the latest reading of every agent once a tick; an
  // agent's page plots each of its readings.
  var latest = {};
  function onTelemetry(ev) {
    var t = ev.data || {};
    if (mode === 'agent') {
      cpu.push(t.cpu_percent || 0);
      mem.push(t.memory_bytes || 0);
      if (cpuNow) cpuNow.textContent = (t.cpu_percent || 0).toFixed(1) + ' %';
      if (memNow) memNow.textContent = fmtBytes(t.memory_bytes || 0) + (t.memory_limit ? ' of ' + fmtBytes(t.memory_limit) : '');
      return;
    }
    latest[ev.agent || t.container] = { cpu: t.cpu_percent || 0, mem: t.memory_bytes || 0, at: Date.now() };
  }
  if (mode === 'dashboard') {
    setInterval(function () {
      var c = 0, m = 0, now = Date.now();
      Object.keys(latest).forEach(function (k) {
        if (now - latest[k].at > 60000) { delete latest[k]; return; }
        c += latest[k].cpu; m += latest[k].mem;
      });
      cpu.push(c); mem.push(m);
      if (cpuNow) cpuNow.textContent = c.toFixed(1) + ' %';
      if (memNow) memNow.textContent = fmtBytes(m);
    }, 2000);
  }

  // --- recent events (dashboard) -------------------------------------------
  var eventList = document.getElementById('event-list');
  function addEvent(ev) {
    if (!eventList || ev.type === 'telemetry') return;
    var empty = document.getElementById('event-empty');
    if (empty) empty.remove();
    var li = document.createElement('li');
    var at = ev.at ? new Date(ev.at) : new Date();
    var d = ev.data || {};
    var what = ev.type;
    if (ev.type === 'agent.state') what = 'agent ' + ev.agent + ': ' + d.state + (d.reason ? ' (' + d.reason + ')' : '');
    else if (ev.type === 'agent.deleted') what = 'agent ' + ev.agent + ' deleted';
    else if (ev.type === 'task') what = 'task ' + ev.task + ' on ' + ev.agent + ': ' + d.state;
    var time = document.createElement('time');
    time.dateTime = at.toISOString();
    time.textContent = at.toLocaleTimeString();
    li.appendChild(time);
    li.appendChild(document.createTextNode(' ' + what));
    eventList.insertBefore(li, eventList.firstChild);
    while (eventList.children.length > 20) eventList.removeChild(eventList.lastChild);
  }

  // --- agents list and agent page: state badges ----------------------------
  var stateSeq = 0; // agent.state events seen, for refreshStates
  function onAgentState(ev) {
    stateSeq++;
    showState(ev.agent, ev.data || {});
  }

  function showState(agent, d) {
    if (mode === 'agents') {
      var row = document.querySelector('tr[data-agent-id="' + CSS.escape(agent) + '"]');
      if (row) setBadge(row.querySelector('[data-testid="agent-state"]'), d.state);
      else say('A new agent appeared (' + agent + '): reload to see it.');
    } else if (mode === 'dashboard') {
      scheduleSummary();
    } else if (mode === 'agent' && agent === liveID) {
      setBadge(document.getElementById('agent-state'), d.state);
      var reason = document.getElementById('agent-reason');
      if (reason) reason.textContent = d.reason || '';
      var desired = document.getElementById('agent-desired');
      if (desired && d.desired) desired.textContent = d.desired;
      if (d.desired) showActions(d.desired);
    }
  }

  // A stream tells only what happens once it is open: a change between
  // the page's rendering and the stream's start, or while it reconnects,
  // would never show (a page left at "pending" for an agent long running).
  // So each time the stream opens the page asks for the states once; an
  // event that came while it asked is newer, and the answer is dropped.
  function refreshStates() {
    if (mode === 'dashboard') { scheduleSummary(); return; }
    var url = mode === 'agents' ? '/api/v1/agents' : (mode === 'agent' && liveID ? '/api/v1/agents/' + encodeURIComponent(liveID) : '');
    if (!url) return;
    var seq = stateSeq;
    fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(function (v) {
        if (seq !== stateSeq) return;
        (mode === 'agents' ? v.agents || [] : [v]).forEach(function (a) {
          if (a && a.status && a.status.state) showState(a.id, { state: a.status.state, reason: a.status.reason, desired: a.desired });
        });
      })
      .catch(function () {});
  }

  // The agent page's actions follow the desired state: Enable for a
  // disabled agent, Restart and Disable otherwise.
  function showActions(desired) {
    document.querySelectorAll('[data-testid=agent-actions] form').forEach(function (f) {
      if (f.dataset.whenDesired) f.hidden = f.dataset.whenDesired !== desired;
      else if (f.dataset.unlessDesired) f.hidden = f.dataset.unlessDesired === desired;
    });
  }

  // --- dashboard: agents by state and the deploy KPI -----------------------
  // A state change (a deploy's outcome among them) asks omertad for the
  // counts again, at most once a second, rather than counting in here.
  var summaryTimer = null;
  function scheduleSummary() {
    if (mode !== 'dashboard' || summaryTimer) return;
    summaryTimer = setTimeout(refreshSummary, 1000);
  }
  function refreshSummary() {
    fetch('/api/v1/summary/agents', { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(showSummary)
      .catch(function () {})
      .then(function () { summaryTimer = null; });
  }
  function showSummary(s) {
    var total = document.getElementById('agents-total');
    var list = document.getElementById('agent-states');
    if (total && list) {
      total.textContent = String(s.total);
      while (list.firstChild) list.removeChild(list.firstChild);
      var by = s.by_state || {};
      Object.keys(by).sort().forEach(function (st) {
        var li = document.createElement('li');
        var badge = document.createElement('span');
        setBadge(badge, st);
        var n = document.createElement('span');
        n.dataset.stateCount = st;
        n.textContent = String(by[st]);
        li.appendChild(badge);
        li.appendChild(document.createTextNode(' '));
        li.appendChild(n);
        list.appendChild(li);
      });
    } else if (s.total > 0) {
      say('Agents were deployed: reload to see them.');
    }
    var d = s.deploys_7d || {};
    var has = typeof d.rate === 'number';
    var rate = document.getElementById('deploy-rate');
    if (rate) rate.textContent = has ? (d.rate * 100).toFixed(1) + ' %' : 'no deploys';
    var verdict = document.getElementById('deploy-verdict');
    if (verdict) {
      var met = has && d.rate >= s.target;
      verdict.textContent = !has ? 'nothing to measure' : (met ? 'meets the target' : 'below the target');
      verdict.className = 'badge ' + (!has ? 'neutral' : (met ? 'good' : 'bad'));
    }
    var counts = document.getElementById('deploy-counts');
    if (counts) counts.textContent = d.succeeded + ' of ' + d.attempted;
  }

  // --- tasks: follow one task until it ends --------------------------------
  // The watched task's row in the list of recent tasks shows what its
  // result shows.
  function showTaskRow(t) {
    var row = document.querySelector('tr[data-testid=task-row][data-task-id="' + CSS.escape(t.id) + '"]');
    if (!row) return;
    setBadge(row.querySelector('[data-testid=task-row-state]'), t.state);
    var fin = row.querySelector('[data-field=finished]');
    if (fin && t.finished_at) fin.textContent = utc(t.finished_at);
  }
  function utc(at) { return new Date(at).toISOString().replace('T', ' ').replace(/\..*/, ' UTC'); }

  function refreshTask() {
    return fetch('/api/v1/tasks/' + encodeURIComponent(liveID), { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(function (t) {
        var box = document.getElementById('task-result');
        if (box) box.dataset.state = t.state;
        setBadge(document.getElementById('task-state'), t.state);
        var out = document.getElementById('task-output');
        if (out) out.textContent = t.output !== undefined ? JSON.stringify(t.output, null, 2) : (t.output_text || '');
        var fin = document.getElementById('task-finished');
        if (fin && t.finished_at) fin.textContent = utc(t.finished_at);
        var st = document.getElementById('task-started');
        if (st && t.started_at) st.textContent = utc(t.started_at);
        showTaskRow(t);
        if (t.error) {
          var e = document.getElementById('task-error');
          if (!e) { e = document.createElement('p'); e.id = 'task-error'; e.className = 'error'; out.parentNode.insertBefore(e, out); }
          e.textContent = t.error;
        }
        var final = ['PENDING', 'RUNNING'].indexOf(t.state) < 0;
        if (final) say('The task has ended.');
        return final;
      });
  }

  // --- reconnecting ----------------------------------------------------------
  // An EventSource retries by itself only a connection that dropped. One
  // whose answer was an error (503 when too many streams are open, 502
  // while omertad is away) is CLOSED for good, and the page would stay
  // dead: retry rises from 2 s to at most 30 s between attempts, and
  // starts again from 2 s once a stream opens.
  function Retry(start) { this.start = start; this.ms = 0; this.timer = null; }
  Retry.prototype.reset = function () { this.ms = 0; };
  // later runs f after the next wait, unless a retry is already waiting;
  // it returns the wait in seconds.
  Retry.prototype.later = function (f) {
    this.ms = this.ms ? Math.min(this.ms * 2, 30000) : this.start;
    if (!this.timer) {
      var self = this;
      this.timer = setTimeout(function () { self.timer = null; f(); }, this.ms);
    }
    return Math.round(this.ms / 1000);
  };

  // --- the event stream ----------------------------------------------------
  var types = { dashboard: 'agent.state,agent.deleted,task,telemetry', agents: 'agent.state,agent.deleted', agent: 'agent.state,telemetry', task: 'task' }[mode];
  var es = null;
  var esRetry = new Retry(2000);
  function subscribe() {
    if (paused || !types || typeof EventSource === 'undefined') return;
    var q = '?types=' + encodeURIComponent(types);
    if ((mode === 'agent') && liveID) q += '&agent=' + encodeURIComponent(liveID);
    if (mode === 'task' && liveID) q += '&task=' + encodeURIComponent(liveID);
    es = new EventSource('/api/v1/events' + q);
    es.onopen = function () {
      esRetry.reset();
      say(mode === 'task' ? 'Following the task live.' : 'Live.');
      if (mode === 'task') refreshTask().then(function (fin) { if (fin) es.close(); }).catch(function () {});
      else refreshStates();
    };
    es.onerror = function () {
      if (es.readyState !== EventSource.CLOSED) { say('Live updates paused: reconnecting to omertad…'); return; }
      var s = esRetry.later(subscribe);
      say('Live updates paused: trying again in ' + s + ' s…');
    };
    function parse(m) { try { return JSON.parse(m.data); } catch (e) { return null; } }
    es.addEventListener('telemetry', function (m) { var ev = parse(m); if (ev) onTelemetry(ev); });
    es.addEventListener('agent.state', function (m) { var ev = parse(m); if (ev) { onAgentState(ev); addEvent(ev); } });
    es.addEventListener('agent.deleted', function (m) { var ev = parse(m); if (ev) { addEvent(ev); scheduleSummary(); } });
    es.addEventListener('task', function (m) {
      var ev = parse(m);
      if (!ev) return;
      addEvent(ev);
      if (mode === 'task') refreshTask().then(function (fin) { if (fin) es.close(); }).catch(function () {});
    });
    es.addEventListener('lagged', function () { es.close(); say('Fell behind the event stream; catching up…'); setTimeout(subscribe, 1000); });
    es.addEventListener('shutdown', function () {
      es.close();
      esRetry.later(subscribe);
      say('omertad is stopping; live updates resume when it is back.');
    });
  }

  // --- an agent's log ------------------------------------------------------
  var MAXLOG = 200000;
  var logRetry = new Retry(2000);
  var ls = null, logEnded = false;
  function followLogs() {
    var pre = document.getElementById('logs');
    if (paused || logEnded || !pre || !liveID || typeof EventSource === 'undefined') return;
    var logStatus = document.getElementById('logs-status');
    ls = new EventSource('/api/v1/agents/' + encodeURIComponent(liveID) + '/logs?follow=true&tail=100');
    var fresh = true;
    ls.onopen = function () { logRetry.reset(); if (logStatus) logStatus.textContent = 'Following the log live.'; };
    ls.onerror = function () {
      fresh = true; // the next stream starts again from the tail
      var msg = 'Log paused: reconnecting…';
      if (ls.readyState === EventSource.CLOSED) msg = 'Log paused: trying again in ' + logRetry.later(followLogs) + ' s…';
      if (logStatus) logStatus.textContent = msg;
    };
    ls.addEventListener('log', function (m) {
      var text;
      try { text = JSON.parse(m.data); } catch (e) { return; }
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      if (fresh) { pre.textContent = ''; fresh = false; }
      var all = pre.textContent + text;
      if (all.length > MAXLOG) all = all.slice(all.length - MAXLOG);
      pre.textContent = all;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    });
    ls.addEventListener('log.end', function () {
      ls.close();
      logEnded = true;
      if (logStatus) logStatus.textContent = 'This log ended (the agent was recreated or stopped). Reload to follow the current one.';
    });
  }

  // --- a hidden page holds no stream ----------------------------------------
  // A browser opens at most six HTTP/1.1 connections to the console and
  // each stream holds one while it runs: an agent's page holds two, so a
  // few such tabs left open behind others took every connection, and the
  // page in front waited for ever for its own. A page hidden for HIDDEN_MS
  // (another tab in front, a minimised window) closes its streams; shown
  // again, it opens them and catches up (the event stream's open asks for
  // the current states, the log starts again from its tail).
  var HIDDEN_MS = 5000;
  var paused = false, hideTimer = null;
  function pause() {
    hideTimer = null;
    paused = true;
    if (es) { es.close(); es = null; }
    if (ls) { ls.close(); ls = null; }
    say('Live updates paused while this page is hidden.');
    var logStatus = document.getElementById('logs-status');
    if (logStatus && !logEnded) logStatus.textContent = 'Log paused while this page is hidden.';
  }
  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'hidden') {
      if (!hideTimer && !paused) hideTimer = setTimeout(pause, HIDDEN_MS);
      return;
    }
    if (hideTimer) { clearTimeout(hideTimer); hideTimer = null; }
    if (!paused) return;
    paused = false;
    esRetry.reset(); logRetry.reset();
    subscribe();
    if (mode === 'agent') followLogs();
  });

  document.addEventListener('DOMContentLoaded', function () {
    subscribe();
    if (mode === 'agent') followLogs();
  });
})();
