// Dashboard helpers, no framework: refresh files still being counted, and check the file
// size before sending it (the server enforces the limit either way).
(function () {
  "use strict";
  var table = document.getElementById("files");

  function badge(status, error) {
    var span = document.createElement("span");
    span.className = "badge " + (status === "completed" ? "text-bg-success" : "text-bg-danger");
    span.textContent = status;
    if (error) span.title = error;
    return span;
  }

  function refresh() {
    if (!table || !table.querySelector('tr[data-status="processing"]')) return;
    var url = "/api/files/?limit=" + table.dataset.limit + "&offset=" + table.dataset.offset;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (page) {
        if (!page) return;
        page.items.forEach(function (f) {
          var row = table.querySelector('tr[data-file-id="' + f.id + '"]');
          if (!row || row.dataset.status !== "processing" || f.status === "processing") return;
          row.dataset.status = f.status;
          var cell = row.querySelector(".status");
          cell.replaceChildren(badge(f.status, f.error));
          row.querySelector(".word-count").textContent =
            f.word_count === null ? "—" : String(f.word_count);
        });
      })
      .catch(function () {})
      .finally(function () { window.setTimeout(refresh, 1000); });
  }
  window.setTimeout(refresh, 500);

  var form = document.getElementById("upload-form");
  if (form) {
    form.addEventListener("submit", function (event) {
      var input = document.getElementById("file");
      var max = Number(form.dataset.maxBytes);
      var file = input.files && input.files[0];
      if (file && file.size > max) {
        event.preventDefault();
        input.classList.add("is-invalid");
        document.getElementById("file-feedback").textContent =
          "That file is larger than the upload limit.";
      }
    });
  }
})();
