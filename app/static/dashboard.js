// Dashboard helpers, no framework (the page works without them):
// - files still being counted refresh by themselves;
// - the upload form takes several files (chosen, or dropped on the form) and sends each to
//   the API on its own, a few at a time, with a progress bar per file and its result in
//   place (accepted, or the refusal's reason in the page's language); the files and
//   activity cards are then refreshed from the server, written exactly as the page writes them.
(function () {
  "use strict";
  var lang = document.documentElement.lang || "en";
  var form = document.getElementById("upload-form");
  var panel = document.getElementById("files-panel");
  var messages = {};
  if (form && form.dataset.messages) {
    try { messages = JSON.parse(form.dataset.messages); } catch (e) { messages = {}; }
  }

  function t(key, fallback) {
    return Object.prototype.hasOwnProperty.call(messages, key) ? messages[key] : fallback;
  }

  // CLDR's grouping for each language (bn: 12,34,567) and Bengali digits for Bengali.
  var grouping = new Intl.NumberFormat(lang === "bn" ? "en-IN" : "en-US");
  function formatNumber(n) {
    var text = grouping.format(n);
    if (lang !== "bn") return text;
    return text.replace(/[0-9]/g, function (d) {
      return String.fromCharCode(0x09e6 + Number(d));
    });
  }

  // --- counts arriving -----------------------------------------------------------------

  function badge(status, error) {
    var span = document.createElement("span");
    span.className = "badge " + (status === "completed" ? "text-bg-success" : "text-bg-danger");
    span.textContent = t(status, status);
    if (error) span.title = error;
    return span;
  }

  function filesTable() { return document.getElementById("files"); }

  var polling = false;
  function refresh() {
    var table = filesTable();
    if (!table || !table.querySelector('tr[data-status="processing"]')) {
      polling = false;
      return;
    }
    polling = true;
    var url = "/api/files/?limit=" + table.dataset.limit + "&offset=" + table.dataset.offset;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (page) {
        if (!page) return;
        var current = filesTable();
        if (!current) return;
        page.items.forEach(function (f) {
          var row = current.querySelector('tr[data-file-id="' + f.id + '"]');
          if (!row || row.dataset.status !== "processing" || f.status === "processing") return;
          row.dataset.status = f.status;
          row.querySelector(".status").replaceChildren(badge(f.status, f.error));
          row.querySelector(".word-count").textContent =
            f.word_count === null ? "—" : formatNumber(f.word_count);
        });
      })
      .catch(function () {})
      .finally(function () { window.setTimeout(refresh, 1000); });
  }
  function startPolling() {
    if (!polling) window.setTimeout(refresh, 500);
  }
  startPolling();

  // The files and activity cards as the server writes them (after an upload was accepted):
  // this page fetched again, its two cards put in place.
  var reloading = null;
  var reloadAgain = false;
  function reloadPanels() {
    if (!panel) return;
    if (reloading) { reloadAgain = true; return; }
    reloading = fetch(window.location.pathname + window.location.search, {
      credentials: "same-origin",
      headers: { Accept: "text/html" }
    })
      .then(function (r) { return r.ok && !r.redirected ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["files-panel", "activity-panel"].forEach(function (id) {
          var fresh = doc.getElementById(id);
          var current = document.getElementById(id);
          if (!fresh || !current) return;
          current.replaceChildren.apply(current, Array.prototype.slice.call(fresh.childNodes));
        });
        startPolling();
      })
      .catch(function () {})
      .finally(function () {
        reloading = null;
        if (reloadAgain) { reloadAgain = false; reloadPanels(); }
      });
  }

  // --- uploads -------------------------------------------------------------------------

  if (!form) return;
  var input = document.getElementById("file");
  var results = document.getElementById("upload-results");
  var token = form.querySelector('input[name="csrf_token"]').value;
  var maxBytes = Number(form.dataset.maxBytes);
  var maxFiles = Number(form.dataset.maxFiles) || 10;
  var parallel = Number(form.dataset.parallel) || 2;
  var queue = [];
  var running = 0;

  function resultItem(file) {
    var li = document.createElement("li");
    li.className = "alert alert-secondary py-2 px-3 mb-2 upload-result";
    li.dataset.state = "waiting";
    var name = document.createElement("span");
    name.className = "fw-semibold upload-name";
    name.textContent = file.name;
    var outcome = document.createElement("span");
    outcome.className = "upload-outcome";
    outcome.textContent = t("waiting", "Waiting…");
    var progress = document.createElement("progress");
    progress.max = 100;
    progress.value = 0;
    li.append(name, ": ", outcome, progress);
    results.append(li);
    return li;
  }

  function finish(item, ok, text) {
    item.dataset.state = ok ? "accepted" : "refused";
    item.dataset.message = ok ? "success" : "danger";
    item.className = "alert py-2 px-3 mb-2 upload-result alert-" + (ok ? "success" : "danger");
    item.querySelector(".upload-outcome").textContent = text;
    var progress = item.querySelector("progress");
    if (ok) progress.value = 100; else progress.remove();
  }

  function refusal(xhr) {
    var code = null;
    try { code = JSON.parse(xhr.responseText).error; } catch (e) { code = null; }
    if (xhr.status === 401) return t("signed_out", "You are signed out.");
    if (code === "validation_error") return t("validation_error", "Choose a non-empty file.");
    return t(code || "", t("failed_generic", "The upload failed; please try again."));
  }

  function send(job) {
    running += 1;
    var item = job.item;
    item.dataset.state = "sending";
    item.querySelector(".upload-outcome").textContent = t("uploading", "Sending…");
    var body = new FormData();
    body.append("file", job.file, job.file.name);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/upload/");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRF-Token", token);
    xhr.upload.addEventListener("progress", function (event) {
      if (!event.lengthComputable) return;
      item.dataset.progressed = "true";
      item.querySelector("progress").value = Math.round((event.loaded / event.total) * 100);
    });
    xhr.addEventListener("loadend", function () {
      running -= 1;
      var retryAfter = Number(xhr.getResponseHeader("Retry-After")) || 1;
      if (xhr.status === 429 && job.retries < 5) {
        // Another tab holds this person's uploads in flight: try again a little later.
        job.retries += 1;
        item.dataset.state = "waiting";
        item.querySelector(".upload-outcome").textContent = t("waiting", "Waiting…");
        window.setTimeout(function () { queue.unshift(job); pump(); }, retryAfter * 1000);
      } else if (xhr.status === 202) {
        finish(item, true, t("accepted", "Uploaded."));
        reloadPanels();
      } else {
        finish(item, false, xhr.status === 0 ? t("failed_generic", "Failed.") : refusal(xhr));
      }
      pump();
    });
    xhr.send(body);
  }

  function pump() {
    while (running < parallel && queue.length) send(queue.shift());
  }

  function start(files) {
    if (!files || !files.length) return;
    input.classList.remove("is-invalid");
    // The page's earlier notices (after paying, after a previous upload) are old news now.
    var notices = document.getElementById("messages");
    if (notices) notices.replaceChildren();
    if (files.length > maxFiles) {
      input.classList.add("is-invalid");
      document.getElementById("file-feedback").textContent = t("too_many_files", "Too many files.");
      return;
    }
    Array.prototype.forEach.call(files, function (file) {
      var item = resultItem(file);
      if (file.size > maxBytes) {
        finish(item, false, t("file_too_large", "That file is larger than the upload limit."));
      } else if (file.size === 0) {
        finish(item, false, t("validation_error", "Choose a non-empty file to upload."));
      } else {
        queue.push({ file: file, item: item, retries: 0 });
      }
    });
    pump();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    start(input.files);
    form.reset();
  });

  ["dragenter", "dragover"].forEach(function (type) {
    form.addEventListener(type, function (event) {
      event.preventDefault();
      form.classList.add("drag-over");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    form.addEventListener(type, function () { form.classList.remove("drag-over"); });
  });
  form.addEventListener("drop", function (event) {
    event.preventDefault();
    start(event.dataTransfer && event.dataTransfer.files);
  });
})();
