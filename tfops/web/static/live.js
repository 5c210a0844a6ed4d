// tfops status page: live updates without a reload. No inline script (CSP script-src 'self').
// Every few seconds ask /ui/changes for the store's change mark; when it moves, fetch this page
// again and swap each [data-live] region for the new one. Without JavaScript the page is the same,
// only static: reload to see changes.
(function () {
  "use strict";
  var PERIOD_MS = 2000;
  var mark = null;
  var busy = false;

  function swapRegions(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    document.querySelectorAll("[data-live]").forEach(function (region) {
      var name = region.getAttribute("data-live");
      var next = fresh.querySelector('[data-live="' + CSS.escape(name) + '"]');
      if (next && next.innerHTML !== region.innerHTML) {
        region.innerHTML = next.innerHTML;
      }
    });
    document.documentElement.setAttribute("data-live-updated", String(Date.now()));
  }

  function refresh() {
    return fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok || response.redirected) { return null; }
        return response.text();
      })
      .then(function (html) { if (html) { swapRegions(html); } });
  }

  function poll() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch("/ui/changes", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (!body) { return null; }
        var changed = mark !== null && body.mark !== mark;
        mark = body.mark;
        return changed ? refresh() : null;
      })
      .catch(function () { /* the daemon restarting: try again next time */ })
      .then(function () { busy = false; });
  }

  if (document.querySelector("[data-live]")) {
    mark = document.body.getAttribute("data-mark");  // the store as this page was rendered
    poll();
    window.setInterval(poll, PERIOD_MS);
  }
})();
