// The status page's one script: fetch the live part every second and swap it in.
(() => {
  const live = document.getElementById('live'), conn = document.getElementById('conn');
  const all = new URLSearchParams(location.search).has('all');
  let n = 0, inflight = null;
  // One fetch at a time; a call while one is in flight gets that one's promise (the bench
  // awaits it to time a refresh: fetch, swap and layout).
  function refresh() {
    if (inflight) return inflight;
    const t = performance.now();
    inflight = (async () => {
      try {
        const r = await fetch('/?part=live' + (all ? '&all=1' : ''), {cache: 'no-store'});
        if (!r.ok) throw new Error('HTTP ' + r.status);
        live.innerHTML = await r.text();
        void live.offsetHeight;
        live.dataset.updates = ++n;
        live.dataset.renderMs = (performance.now() - t).toFixed(1);
        conn.textContent = '';
      } catch (e) {
        conn.textContent = 'testbed is not answering (stopped?), retrying';
      } finally {
        inflight = null;
      }
    })();
    return inflight;
  }
  window.testbedRefresh = refresh;
  setInterval(refresh, 1000);
})();
