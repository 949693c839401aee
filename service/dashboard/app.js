// Skald's dashboard: plain JS, no framework, no dependency, nothing from another origin.
//
// How it stays current without drowning at 1,000 events/s:
//  - the live feed (EventSource on /v1/events/stream) only records the last event id it
//    saw and marks the page dirty; no event is parsed;
//  - a dirty page re-queries the read models at most every REFRESH_MS, passing the last
//    id as min_position, so each refresh shows at least every event the feed announced
//    (read-your-writes); one refresh is in flight at a time;
//  - /metrics and /v1/projections are polled every POLL_MS for rates, lag and the
//    relay/sagas panel.
// The last position every panel reflects is exposed as <body data-applied>, the feed's
// last id as data-feed and the connection state as data-conn (the browser test reads
// them).
//
// Tokens: when the API answers 401 the page asks for one, keeps it in sessionStorage only
// (this tab), sends it as a Bearer header to fetch and as ?access_token= to EventSource
// (which cannot send headers).
'use strict';

(function () {
  const REFRESH_MS = 500; // at most one re-query of the models per this
  const POLL_MS = 1000; // metrics and projections
  const IDLE_REFRESH_MS = 10000; // re-query even without feed events (e.g. a missed one)
  const QUERY_WAIT_MS = 2000; // timeout_ms of a min_position query
  const LOW_STOCK = 10; // available units below which a product is highlighted
  const RECENT = 15; // recent orders shown
  const DAYS = 30; // days of sales in the chart
  const TOKEN_KEY = 'skald.token';

  const $ = (id) => document.getElementById(id);
  const body = document.body;

  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let feed = null; // the EventSource
  let feedRetryTimer = 0;
  let feedFailures = 0;
  let lastId = -1; // the last log position the feed announced (or the head at its start)
  let applied = -1; // the position every panel reflects
  let refreshing = false;
  let dirty = false;
  let lastRefreshAt = 0;
  let refreshTimer = 0;
  let asking = false; // the token dialog is open
  let prevMetrics = null; // {at, commands, errors} of the previous poll
  let prevRelay = null; // {at, sum, count} of the relay's delivery histogram, last poll
  let roleNotes = {};

  // ---- HTTP ------------------------------------------------------------------------

  class AuthNeeded extends Error {}

  // fetch with the token; JSON (or text) and the status. 401 opens the token dialog.
  async function api(path, opts) {
    const headers = Object.assign({}, (opts && opts.headers) || {});
    if (token) headers.Authorization = 'Bearer ' + token;
    const res = await fetch(path, Object.assign({}, opts, { headers, cache: 'no-store' }));
    if (res.status === 401) {
      askToken(token ? 'The server did not accept that token.' : '');
      throw new AuthNeeded('401');
    }
    const type = res.headers.get('Content-Type') || '';
    const data = type.includes('json') ? await res.json() : await res.text();
    return { status: res.status, data };
  }

  // ---- connection state ------------------------------------------------------------

  function setConn(state, text) {
    const el = $('conn');
    el.dataset.state = state;
    el.textContent = text || state;
    body.dataset.conn = state;
  }

  // ---- token dialog ----------------------------------------------------------------

  function askToken(message) {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    closeFeed();
    setConn('auth', 'token needed');
    $('login-error').hidden = !message;
    $('login-error').textContent = message || '';
    if (asking) return;
    asking = true;
    const dlg = $('login');
    if (!dlg.open) dlg.showModal();
    $('token').focus();
  }

  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('token').value.trim();
    if (!value) return;
    token = value;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token').value = '';
    $('login').close();
    asking = false;
    start();
  });

  // Escape would close the dialog and leave the page with nothing to show: keep it.
  $('login').addEventListener('cancel', (e) => e.preventDefault());

  $('logout').addEventListener('click', () => askToken(''));

  // ---- the live feed ---------------------------------------------------------------

  function closeFeed() {
    if (feed) feed.close();
    feed = null;
    clearTimeout(feedRetryTimer);
    feedRetryTimer = 0;
  }

  function openFeed() {
    closeFeed();
    const params = new URLSearchParams();
    // A new EventSource cannot send Last-Event-ID; from_position resumes where the last
    // one stopped. After failures it starts at the head instead (the log may be another
    // one), and the refresh on open brings every panel up to date either way.
    if (lastId >= 0 && feedFailures < 2) params.set('from_position', String(lastId + 1));
    if (token) params.set('access_token', token);
    const qs = params.toString();
    const es = new EventSource('/v1/events/stream' + (qs ? '?' + qs : ''));
    feed = es;
    es.onopen = () => {
      if (feed !== es) return;
      feedFailures = 0;
      setConn('live', 'live');
      // After a (re)connect: catch up with whatever happened while away.
      syncHead().then(() => requestRefresh(true));
    };
    es.onmessage = (e) => {
      const id = Number(e.lastEventId);
      if (Number.isFinite(id) && id > lastId) lastId = id;
      body.dataset.feed = String(lastId);
      requestRefresh(false);
    };
    es.addEventListener('overflow', () => {
      // The server gave up on a slow page; EventSource reconnects with Last-Event-ID.
      setConn('reconnecting', 'catching up');
    });
    es.onerror = () => {
      if (feed !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        // A refused (re)connect (401, 400, 503...): EventSource gives up; try again
        // ourselves, checking the token first through the API.
        feedFailures++;
        setConn('offline', 'offline: retrying');
        feed = null;
        feedRetryTimer = setTimeout(start, Math.min(5000, 500 * feedFailures));
      } else {
        setConn('reconnecting', 'reconnecting');
      }
    };
  }

  // The log's last position from /metrics: where the page must get to after a connect.
  async function syncHead() {
    try {
      const r = await api('/metrics');
      if (r.status !== 200) return;
      const m = parseMetrics(r.data);
      const head = (m.get('skald_log_head_position') || 0) - 1;
      $('head').textContent = String(head);
      if (head < lastId) {
        // Another log than before (a new data directory): start over from its head.
        applied = -1;
        body.dataset.applied = '-1';
      }
      lastId = head;
    } catch (e) {
      /* the poll shows it */
    }
  }

  // ---- refreshing the read models -------------------------------------------------

  // Re-query soon: now if the last refresh is REFRESH_MS old and none runs, else later.
  function requestRefresh(now) {
    dirty = true;
    if (refreshing || refreshTimer) return;
    const wait = now ? 0 : Math.max(0, lastRefreshAt + REFRESH_MS - Date.now());
    refreshTimer = setTimeout(() => {
      refreshTimer = 0;
      refresh();
    }, wait);
  }

  async function query(name, params, minPos) {
    const p = new URLSearchParams(params);
    if (minPos >= 0) {
      p.set('min_position', String(minPos));
      p.set('timeout_ms', String(QUERY_WAIT_MS));
    }
    return api('/v1/queries/' + name + '?' + p.toString());
  }

  async function refresh() {
    if (refreshing) return;
    refreshing = true;
    dirty = false;
    lastRefreshAt = Date.now();
    const target = lastId;
    try {
      const [counts, recent, stock, sales] = await Promise.all([
        query('order_counts', { limit: '10' }, target),
        query('orders', { limit: String(RECENT) }, target),
        query('inventory', { limit: '1000' }, target),
        query('sales_by_day', { limit: String(DAYS) }, target),
      ]);
      const answers = [counts, recent, stock, sales];
      const failed = answers.find((r) => r.status !== 200);
      if (counts.status === 200) renderCounts(counts.data.items);
      if (recent.status === 200) renderRecent(recent.data.items);
      if (stock.status === 200) renderInventory(stock.data.items);
      if (sales.status === 200) renderSales(sales.data.items);
      if (failed) {
        const code = failed.data && failed.data.code;
        // 504: a model has not got there yet; 503: no database yet; try again soon.
        $('updated').textContent = 'read models: ' + (code || failed.status);
        if (code === 'not_served') {
          $('updated').textContent = 'this process does not serve queries (--roles)';
        } else {
          dirty = true;
        }
      } else {
        const pos = Math.min(...answers.map((r) => r.data.position));
        if (pos > applied) applied = pos;
        body.dataset.applied = String(applied);
        $('applied').textContent = String(applied);
        $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      }
    } catch (e) {
      if (!(e instanceof AuthNeeded)) {
        $('updated').textContent = 'server unreachable';
        dirty = true;
      }
    } finally {
      refreshing = false;
      body.dataset.refreshes = String(Number(body.dataset.refreshes || 0) + 1);
      if (dirty && !asking) requestRefresh(false);
    }
  }

  // ---- rendering (textContent only: data never becomes markup) --------------------

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function money(cents) {
    return (cents / 100).toLocaleString('en-US', { style: 'currency', currency: 'USD' });
  }

  // Replaces a tbody's rows only when the data changed (cheap at 2 refreshes/s).
  function fillRows(tbody, items, row) {
    const key = JSON.stringify(items);
    if (tbody.dataset.key === key) return;
    tbody.dataset.key = key;
    const frag = document.createDocumentFragment();
    for (const item of items) frag.appendChild(row(item));
    tbody.replaceChildren(frag);
  }

  function renderCounts(items) {
    const by = { placed: 0, confirmed: 0, cancelled: 0 };
    let total = 0;
    for (const it of items) {
      by[it.status] = it.orders;
      total += it.orders;
    }
    for (const s of Object.keys(by)) $('count-' + s).textContent = String(by[s]);
    $('count-total').textContent = String(total);
  }

  function renderRecent(items) {
    fillRows($('recent'), items, (o) => {
      const tr = el('tr');
      tr.dataset.orderId = o.order_id;
      tr.appendChild(el('td', o.order_id, 'id'));
      tr.appendChild(el('td', o.customer_id, 'id'));
      tr.appendChild(el('td', o.status, 'status ' + o.status));
      const total = el('td', money(o.total_cents), 'num');
      total.dataset.cents = String(o.total_cents);
      tr.appendChild(total);
      tr.appendChild(el('td', o.placed_at.replace('T', ' ').slice(0, 19)));
      if (o.cancel_reason) tr.title = 'cancelled: ' + o.cancel_reason;
      return tr;
    });
  }

  function renderInventory(items) {
    $('low-count').textContent = String(items.filter((p) => p.available < LOW_STOCK).length);
    fillRows($('inventory'), items, (p) => {
      const tr = el('tr', null, p.available < LOW_STOCK ? 'low' : '');
      tr.dataset.sku = p.sku;
      tr.appendChild(el('td', p.sku));
      tr.appendChild(el('td', p.name));
      tr.appendChild(el('td', p.on_hand, 'num on-hand'));
      tr.appendChild(el('td', p.reserved, 'num reserved'));
      tr.appendChild(el('td', p.available, 'num available'));
      return tr;
    });
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k of Object.keys(attrs)) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // Revenue per day as SVG bars, oldest left; each bar carries its numbers.
  function renderSales(items) {
    const box = $('sales-chart');
    const key = JSON.stringify(items);
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    const days = items.slice().reverse();
    const W = 720, H = 200, L = 64, R = 20, B = 24, T = 8;
    const max = Math.max(1, ...days.map((d) => d.revenue_cents));
    const chart = svg('svg', { viewBox: `0 0 ${W} ${H}` });
    for (const f of [0, 0.5, 1]) {
      const y = T + (H - B - T) * (1 - f);
      chart.appendChild(svg('line', { x1: L, x2: W - R, y1: y, y2: y, class: 'grid' }));
      chart.appendChild(svg('text', { x: L - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' },
        money(max * f).replace(/\.\d\d$/, '')));
    }
    const slot = (W - L - R) / Math.max(days.length, 1);
    days.forEach((d, i) => {
      const h = ((H - B - T) * d.revenue_cents) / max;
      const bar = svg('rect', {
        x: L + i * slot + slot * 0.15, y: H - B - h, width: slot * 0.7, height: Math.max(h, 0),
        class: 'bar', 'data-day': d.day, 'data-orders': d.orders,
        'data-revenue-cents': d.revenue_cents,
      });
      bar.appendChild(svg('title', {}, `${d.day}: ${d.orders} orders, ${money(d.revenue_cents)}`));
      chart.appendChild(bar);
      if (days.length <= 10 || i % Math.ceil(days.length / 10) === 0) {
        chart.appendChild(svg('text', { x: L + i * slot + slot / 2, y: H - 6, class: 'axis',
          'text-anchor': 'middle' }, d.day.slice(5)));
      }
    });
    if (!days.length) {
      chart.appendChild(svg('text', { x: W / 2, y: H / 2, class: 'axis', 'text-anchor': 'middle' },
        'no confirmed orders yet'));
    }
    box.replaceChildren(chart);
  }

  // ---- metrics: rates, relay and sagas ---------------------------------------------

  // Prometheus text -> Map of "name{labels}" and of bare names (summed over labels).
  function parseMetrics(text) {
    const m = new Map();
    for (const line of text.split('\n')) {
      if (!line || line[0] === '#') continue;
      const sp = line.lastIndexOf(' ');
      const key = line.slice(0, sp);
      const v = Number(line.slice(sp + 1));
      if (!Number.isFinite(v)) continue;
      m.set(key, v);
      const brace = key.indexOf('{');
      if (brace > 0) {
        const name = key.slice(0, brace);
        m.set(name, (m.get(name) || 0) + v);
      }
    }
    return m;
  }

  function sumWhere(m, name, pred) {
    let s = 0;
    for (const [k, v] of m) if (k.startsWith(name + '{') && pred(k)) s += v;
    return s;
  }

  function hasPrefix(m, prefix) {
    for (const k of m.keys()) if (k.startsWith(prefix)) return true;
    return false;
  }

  function renderMetrics(m) {
    const now = performance.now();
    const commands = m.get('skald_commands_total') || 0;
    const errors = sumWhere(m, 'skald_commands_total',
      (k) => k.includes('outcome="error"') || k.includes('outcome="overloaded"'));
    if (prevMetrics && commands >= prevMetrics.commands) {
      const dt = (now - prevMetrics.at) / 1000;
      $('cmd-rate').textContent = ((commands - prevMetrics.commands) / dt).toFixed(0);
      $('err-rate').textContent = ((errors - prevMetrics.errors) / dt).toFixed(1);
    } // a restarted server's counters start again at 0: wait for the next poll
    prevMetrics = { at: now, commands, errors };
    $('err-total').textContent = String(errors);
    $('err-total').parentElement.classList.toggle('bad', errors > 0);
    const head = (m.get('skald_log_head_position') || 0) - 1;
    $('head').textContent = String(Math.max(head, applied)); // the feed may be ahead of a poll

    renderRelay(m, now);
    const sagas = $('sagas');
    if (hasPrefix(m, 'skald_saga')) {
      sagas.dataset.state = 'running';
      sagas.textContent = `running: at position ${m.get('skald_saga_checkpoint_position') || 0}, ` +
        `retries ${m.get('skald_saga_retries_total') || 0}, ` +
        `compensations ${m.get('skald_saga_compensations_total') || 0}, ` +
        `timeouts ${m.get('skald_saga_timeouts_total') || 0}`;
      const n = (name, state) => m.get(`${name}{state="${state}"}`) || 0;
      $('saga-states').textContent =
        `in flight: running ${n('skald_sagas', 'running')}, ` +
        `compensating ${n('skald_sagas', 'compensating')}, stuck ${n('skald_sagas', 'stuck')}; ` +
        `ended: completed ${n('skald_sagas_ended_total', 'completed')}, ` +
        `compensated ${n('skald_sagas_ended_total', 'compensated')}, ` +
        `aborted ${n('skald_sagas_ended_total', 'aborted')}`;
      const steps = m.get('skald_saga_step_seconds_count') || 0;
      $('saga-steps').textContent = steps === 0 ? 'no step finished yet'
        : `${steps} forward steps, p50 <= ${stepQuantile(m, 0.5)}, p99 <= ${stepQuantile(m, 0.99)}`;
    } else {
      sagas.dataset.state = 'not-running';
      sagas.textContent = 'not running';
      $('saga-states').textContent = '-';
      $('saga-steps').textContent = '-';
    }
  }

  // The upper bound of the histogram bucket that holds quantile q of the saga steps, as text.
  function stepQuantile(m, q) {
    const le = histogramQuantile(m, 'skald_saga_step_seconds', q);
    if (le === null) return '-';
    if (!Number.isFinite(le)) return 'more than 30 s';
    return le < 1 ? `${Math.round(le * 1000)} ms` : `${le} s`;
  }

  // ---- the Kafka relay panel (from its /metrics, docs/kafka.md "Metrics") -------------

  // The value of label `label` in the first key of metric `name`, or ''.
  function labelOf(m, name, label) {
    for (const k of m.keys()) {
      if (!k.startsWith(name + '{')) continue;
      const hit = new RegExp(label + '="([^"]*)"').exec(k);
      return hit ? hit[1] : '';
    }
    return '';
  }

  // The upper bound of the bucket that holds quantile q of a cumulative histogram.
  function histogramQuantile(m, name, q) {
    const count = m.get(name + '_count') || 0;
    if (count === 0) return null;
    const buckets = [];
    for (const [k, v] of m) {
      const le = /^[^{]+_bucket\{.*le="([^"]+)"/.exec(k);
      if (k.startsWith(name + '_bucket{') && le) buckets.push([Number(le[1]), v]);
    }
    buckets.sort((a, b) => a[0] - b[0]);
    for (const [le, cum] of buckets) if (cum >= q * count) return le;
    return Infinity;
  }

  const ms = (s) => (s * 1000).toFixed(s < 0.01 ? 2 : 1) + ' ms';

  function renderRelay(m, now) {
    const relay = $('relay');
    const ids = ['relay-published', 'relay-lag-events', 'relay-lag-seconds', 'relay-in-flight',
      'relay-errors', 'relay-restarts', 'relay-latency'];
    if (!hasPrefix(m, 'skald_relay_')) {
      relay.dataset.state = 'not-running';
      relay.textContent = 'not running';
      $('relay-topic').textContent = '(off: no --kafka-brokers)';
      for (const id of ids) $(id).textContent = '-';
      prevRelay = null;
      return;
    }
    const state = labelOf(m, 'skald_relay_up', 'state') || 'unknown';
    relay.dataset.state = state === 'running' ? 'running' : 'degraded';
    relay.textContent = state;
    $('relay-topic').textContent = labelOf(m, 'skald_relay_up', 'topic');
    $('relay-published').textContent = String(m.get('skald_relay_published_position') || 0);
    $('relay-lag-events').textContent = String(m.get('skald_relay_lag_events') || 0);
    $('relay-lag-seconds').textContent = (m.get('skald_relay_lag_seconds') || 0).toFixed(1);
    $('relay-in-flight').textContent = String(m.get('skald_relay_in_flight') || 0);
    const errors = m.get('skald_relay_errors_total') || 0;
    $('relay-errors').textContent = String(errors);
    $('relay-errors').classList.toggle('bad', errors > 0);
    $('relay-restarts').textContent = String(m.get('skald_relay_restarts_total') || 0);
    // mean delivery latency over the last poll (or since start), and p99 since start
    const sum = m.get('skald_relay_delivery_seconds_sum') || 0;
    const count = m.get('skald_relay_delivery_seconds_count') || 0;
    let text = 'no delivery yet';
    if (count > 0) {
      const recent = prevRelay && count > prevRelay.count;
      const mean = recent ? (sum - prevRelay.sum) / (count - prevRelay.count) : sum / count;
      const p99 = histogramQuantile(m, 'skald_relay_delivery_seconds', 0.99);
      text = `mean ${ms(mean)} ${recent ? 'last second' : 'since start'}, p99 ` +
        (Number.isFinite(p99) ? `<= ${ms(p99)}` : 'over the last bucket');
    }
    $('relay-latency').textContent = text;
    prevRelay = { at: now, sum, count };
  }

  // ---- projections -------------------------------------------------------------------

  async function rebuild(name, button) {
    button.disabled = true;
    try {
      const r = await api('/v1/projections/' + encodeURIComponent(name) + '/rebuild',
        { method: 'POST' });
      $('projections-note').textContent = r.status === 202 ? `rebuilding ${name}`
        : r.status === 403 ? 'a rebuild needs an admin token'
          : `rebuild of ${name}: ${(r.data && r.data.code) || r.status}`;
    } catch (e) {
      /* 401: the dialog is open */
    } finally {
      button.disabled = false;
    }
  }

  function renderProjections(r) {
    const tbody = $('projections');
    if (r.status !== 200) {
      tbody.replaceChildren();
      delete tbody.dataset.key;
      $('projections-note').textContent = r.data && r.data.code === 'not_served'
        ? 'not running in this process' : 'unavailable';
      return;
    }
    if ($('projections-note').textContent.startsWith('not running')) {
      $('projections-note').textContent = '';
    }
    fillRows(tbody, r.data.projections, (p) => {
      const tr = el('tr', null, p.state);
      tr.dataset.name = p.name;
      tr.appendChild(el('td', p.name));
      const st = el('td', p.state + (p.rebuild ? ` (gen ${p.rebuild.generation} at ${p.rebuild.position})` : ''),
        'state ' + p.state);
      if (p.last_error) st.title = p.last_error.message;
      tr.appendChild(st);
      tr.appendChild(el('td', p.position, 'num'));
      tr.appendChild(el('td', `${p.lag_events} (${Number(p.lag_seconds).toFixed(1)} s)`, 'num lag'));
      tr.appendChild(el('td', Math.round(p.events_per_s), 'num'));
      const td = el('td');
      const b = el('button', 'rebuild', 'rebuild');
      b.type = 'button';
      b.title = 'admin: build this read model again from position 0';
      b.addEventListener('click', () => rebuild(p.name, b));
      td.appendChild(b);
      tr.appendChild(td);
      return tr;
    });
  }

  async function poll() {
    try {
      const [metrics, projections] = await Promise.all([api('/metrics'), api('/v1/projections')]);
      if (metrics.status === 200) renderMetrics(parseMetrics(metrics.data));
      renderProjections(projections);
      if (!feed && !asking && !feedRetryTimer) start();
    } catch (e) {
      if (!(e instanceof AuthNeeded)) {
        if (body.dataset.conn !== 'auth') setConn('offline', 'server unreachable');
        prevMetrics = null;
      }
    }
  }

  // ---- start -------------------------------------------------------------------------

  // Checks the token with one query (401 opens the dialog), then follows the feed.
  async function start() {
    clearTimeout(feedRetryTimer);
    feedRetryTimer = 0;
    if (asking) return;
    try {
      const r = await api('/v1/projections');
      $('logout').hidden = !token;
      renderProjections(r);
      openFeed();
      poll();
    } catch (e) {
      if (!(e instanceof AuthNeeded)) {
        setConn('offline', 'server unreachable');
        feedFailures++;
        feedRetryTimer = setTimeout(start, Math.min(5000, 500 * feedFailures));
      }
    }
  }

  setConn('connecting', 'connecting');
  body.dataset.applied = '-1';
  start();
  setInterval(() => { if (!asking) poll(); }, POLL_MS);
  setInterval(() => { if (!asking && feed) requestRefresh(false); }, IDLE_REFRESH_MS);
})();
