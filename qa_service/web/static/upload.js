// Upload page: send each chosen file in its own request, showing its bytes going up, then follow the
// calls' status from the server. What was being sent is kept in this browser's storage: after a
// reload the page names the files whose sending was cut off, so they can be sent again. The calls
// received are listed by the server (the calls this key uploaded), reload or not.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) { return; }
  var list = document.getElementById("sending");
  var rows = document.getElementById("upload-rows");
  var STORE = "qa-upload-sending";
  var polling = null;

  function remembered() {
    try { return JSON.parse(localStorage.getItem(STORE) || "[]"); } catch (e) { return []; }
  }
  function remember(items) {
    try { localStorage.setItem(STORE, JSON.stringify(items)); } catch (e) { /* private mode: no memory */ }
  }

  function item(name) {
    var li = document.createElement("li");
    var label = document.createElement("span");
    label.className = "file";
    label.textContent = name;
    var bar = document.createElement("progress");
    bar.max = 100; bar.value = 0;
    bar.setAttribute("aria-label", "Sending " + name);
    var state = document.createElement("span");
    state.className = "state small";
    li.appendChild(label); li.appendChild(bar); li.appendChild(state);
    list.appendChild(li);
    return { li: li, bar: bar, state: state };
  }

  function badge(status) {
    var b = document.createElement("span");
    b.className = "badge status-" + status;
    b.textContent = status;
    return b;
  }

  function say(entry, text, kind) {
    entry.state.textContent = text;
    entry.li.className = kind || "";
  }

  // Files cut off by a reload last time.
  remembered().forEach(function (name) {
    var entry = item(name);
    entry.bar.remove();
    say(entry, " interrupted by a reload before it was received: send it again", "refused");
  });
  remember([]);

  function sendOne(file, fields, pending) {
    return new Promise(function (done) {
      var entry = item(file.name);
      var data = new FormData();
      fields.forEach(function (pair) { data.append(pair[0], pair[1]); });
      data.append("files", file, file.name);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", "/upload");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) {
          entry.bar.value = Math.round(e.loaded / e.total * 100);
          say(entry, " " + entry.bar.value + "%");
        }
      };
      xhr.onload = function () {
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = {}; }
        entry.bar.value = 100;
        if (xhr.status === 200 || xhr.status === 202) {
          say(entry, body.again ? " received before" : " received", "ok");
        } else {
          say(entry, " not stored: " + (body.error || body.detail || ("error " + xhr.status)), "refused");
        }
        pending.splice(pending.indexOf(file.name), 1);
        remember(pending);
        done();
      };
      xhr.onerror = function () {
        say(entry, " not sent: the connection failed", "refused");
        pending.splice(pending.indexOf(file.name), 1);
        remember(pending);
        done();
      };
      xhr.send(data);
    });
  }

  form.addEventListener("submit", function (event) {
    var input = document.getElementById("files");
    if (!input.files.length) { return; }
    event.preventDefault();
    var fields = [];
    new FormData(form).forEach(function (value, name) {
      if (name !== "files") { fields.push([name, value]); }
    });
    var files = Array.prototype.slice.call(input.files);
    var pending = files.map(function (f) { return f.name; });
    remember(pending);
    var button = document.getElementById("send");
    button.disabled = true;
    // One at a time: each file's bar moves on its own and the server is not flooded.
    files.reduce(function (chain, file) {
      return chain.then(function () { return sendOne(file, fields, pending); }).then(refresh);
    }, Promise.resolve()).then(function () {
      button.disabled = false;
      form.reset();
      watch();
    });
  });

  function row(call) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-call", call.call_id);
    var cells = [call.received_at.slice(0, 16).replace("T", " "), null, call.agent_id, call.call_date, null];
    cells.forEach(function (text, i) {
      var td = document.createElement("td");
      if (i === 1) {
        var a = document.createElement("a");
        a.className = "call-link";
        a.href = "/calls/" + call.call_id;
        a.textContent = call.external_id || call.call_id.slice(0, 8);
        td.appendChild(a);
      } else if (i === 4) {
        td.className = "status";
      } else {
        td.textContent = text;
      }
      tr.appendChild(td);
    });
    return tr;
  }

  function update(tr, call) {
    tr.setAttribute("data-status", call.status);
    var td = tr.querySelector("td.status");
    td.textContent = "";
    td.appendChild(badge(call.status));
    if (call.failure_reason) {
      var why = document.createElement("span");
      why.className = "muted small";
      why.textContent = " " + call.failure_reason;
      td.appendChild(why);
    }
  }

  function refresh() {
    return fetch("/upload/recent", { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (calls) {
        var none = rows.querySelector("tr.none");
        if (none && calls.length) { none.remove(); }
        calls.slice().reverse().forEach(function (call) {
          var tr = rows.querySelector('tr[data-call="' + call.call_id + '"]');
          if (!tr) { tr = row(call); rows.insertBefore(tr, rows.firstChild); }
          update(tr, call);
        });
        return calls;
      })
      .catch(function () { return []; });
  }

  function busy() {
    return rows.querySelector('tr[data-status="queued"], tr[data-status="processing"]') !== null;
  }

  function watch() {
    if (polling || !busy()) { return; }
    polling = setInterval(function () {
      refresh().then(function () {
        if (!busy()) { clearInterval(polling); polling = null; }
      });
    }, 3000);
  }
  watch();
})();
