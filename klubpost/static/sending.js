// Live sending progress on the campaign page: polls the progress endpoint.
(function () {
  "use strict";
  var card = document.getElementById("sending");
  if (!card || !document.getElementById("send-progress")) return;
  var live = { sending: true, paused: true };
  function set(id, value) {
    var el = document.getElementById(id);
    if (el) el.textContent = value === null || value === undefined ? "–" : value;
  }
  function poll() {
    fetch(card.dataset.progressUrl, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        var bar = document.getElementById("send-progress");
        bar.max = data.total || 1;
        bar.value = data.total - data.queued;
        set("fig-sent", data.sent);
        set("fig-failed", data.failed);
        set("fig-bounced", data.bounced);
        set("fig-skipped", data.skipped);
        set("fig-queued", data.queued);
        set("fig-rate", data.rate_per_s ? data.rate_per_s.toFixed(1) : null);
        set("fig-end", data.expected_end_local);
        if (data.status !== card.dataset.status) {
          window.location.reload();  // new state, new buttons
        } else if (live[data.status]) {
          window.setTimeout(poll, 2000);
        }
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  if (live[card.dataset.status]) window.setTimeout(poll, 2000);
})();
