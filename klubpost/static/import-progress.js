// Polls an import's status and moves the progress bar; reloads for the report.
(function () {
  "use strict";
  var bar = document.getElementById("import-progress");
  if (!bar || bar.dataset.finished === "yes") return;
  var statusText = document.getElementById("import-status");
  var done = document.getElementById("rows-done");
  var total = document.getElementById("rows-total");

  function poll() {
    fetch(bar.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (job) {
        if (!job) return setTimeout(poll, 5000);
        bar.max = Math.max(job.total_rows, 1);
        bar.value = job.processed_rows;
        statusText.textContent = job.label;
        done.textContent = String(job.processed_rows);
        total.textContent = String(job.total_rows);
        if (job.finished) window.location.reload();
        else setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 1000);
})();
